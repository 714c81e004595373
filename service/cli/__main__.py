"""`python -m service.cli`, the same as the `conveyor` console script."""

from service.cli import app

app(prog_name="conveyor")
