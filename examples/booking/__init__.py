"""A hotel-booking site on Starlette whose background work runs on Conveyor (README.md)."""
