"""Conveyor's public Python package: what an app imports to declare its own kinds of job
and to hand work to a Conveyor service.

`conveyor.job` and `conveyor.Pipeline` declare kinds (workers started with `CONVEYOR_KINDS`
import the modules that do); `conveyor.client` talks to the HTTP API. The names below are
imported on first use, so `import conveyor.client` on an app host stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.context import Context
    from conveyor.kinds import Pipeline, Stage, job
    from conveyor.outcomes import Fail, Retry, Skip

__all__ = ["Context", "Fail", "Pipeline", "Retry", "Skip", "Stage", "job"]

_HOMES = {
    "Context": "conveyor.context",
    "Pipeline": "conveyor.kinds",
    "Stage": "conveyor.kinds",
    "job": "conveyor.kinds",
    "Fail": "conveyor.outcomes",
    "Retry": "conveyor.outcomes",
    "Skip": "conveyor.outcomes",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
