"""Benchmarks comparing Conveyor with the job queues it is measured against (`python -m bench`)."""
