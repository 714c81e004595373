"""What a stage is handed besides its input: the job it works for and the worker it runs in.

`Context` is the interface a stage may rely on; the worker's runner implements it
(`pipelines/runner.py`). The last four members are what the built-in kinds use and any
kind may: the kind's `shared` value, a scratch directory, the deployment's settings and
the worker's open connections.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Protocol


class Context(Protocol):
    job_id: uuid.UUID
    attempt: int  # 1 on the first try
    outputs: dict[str, Any]  # the finished stages' outputs, by stage name
    saved: dict | None  # what this stage kept with `save` in an earlier attempt, or None

    @property
    def tenant(self) -> str:
        """The tenant's name."""
        ...

    @property
    def metadata(self) -> dict:
        """The job's metadata, as its creator gave it."""
        ...

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """How far the running stage is (0..1); the Job's `progress` and its events show it."""
        ...

    async def save(self, data: dict) -> None:
        """Keep the running stage's partial work: a later attempt finds it in `saved`."""
        ...

    @property
    def shared(self) -> Any:
        """The value the kind's `shared` made when this worker started (a client, a pool)."""
        ...

    def workdir(self) -> Path:
        """A private scratch directory, removed when the attempt ends, however it ends."""
        ...

    @property
    def settings(self) -> Any:
        """The deployment's settings (service/config.py)."""
        ...

    @property
    def resources(self) -> Any:
        """The worker's open connections: `db` (the ledger), `storage`, `http`, `redis`."""
        ...
