"""Conveyor's public Python package: what an app imports to declare its own kinds of job
and to hand work to a Conveyor service.

`conveyor.client` talks to the HTTP API; the kind API (`conveyor.job`, `conveyor.Pipeline`)
is what workers started with `CONVEYOR_KINDS` import.
"""
