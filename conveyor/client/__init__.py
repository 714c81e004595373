"""The Python client of a Conveyor service."""
