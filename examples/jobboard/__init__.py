"""A job board on Flask whose background work runs on Conveyor (README.md)."""
