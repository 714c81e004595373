"""Every kind of job a worker runs: the built-in ones and the app's own (`CONVEYOR_KINDS`).

Each kind is declared once with the public kind API (`conveyor.job`, `conveyor.Pipeline`),
the built-ins in their own packages beside their stages, those of the built-in schedules
in pipelines/schedule.py. The worker runs
`pipelines(settings)`; whoever creates jobs in a worker process (callbacks, the scheduler)
reads the same declarations as `specs(settings)`, plain values the core takes without
importing a kind's code. The API reads what workers publish (`descriptions`).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Iterable, Sequence

from conveyor.kinds import Pipeline
from pipelines.analytics.export import EXPORT_PIPELINE
from pipelines.documents.pipeline import DOCUMENT_PIPELINE
from pipelines.notifications.pipeline import CALLBACK_PIPELINE, NOTIFICATION_PIPELINE
from pipelines.schedule import KINDS as SCHEDULED
from pipelines.videos.pipeline import VIDEO_PIPELINE
from service.config import Settings
from service.jobs import Kinds

BUILT_IN = (DOCUMENT_PIPELINE, VIDEO_PIPELINE, NOTIFICATION_PIPELINE, CALLBACK_PIPELINE, EXPORT_PIPELINE, *SCHEDULED)


class KindsNotLoaded(Exception):
    """A module named in CONVEYOR_KINDS cannot be used; the worker must not start."""


class Registry:
    """Kinds by name; a name is declared once."""

    def __init__(self, kinds: Iterable[Pipeline] = ()) -> None:
        self._kinds: dict[str, Pipeline] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: Pipeline) -> Pipeline:
        """Add `kind` (returned, so this can decorate a declaration); a second declaration
        of the same name is refused, naming it."""
        known = self._kinds.get(kind.name)
        if known is not None and known is not kind:
            raise ValueError(f"the kind {kind.name!r} is declared twice")
        if not kind.stages:
            raise ValueError(f"the kind {kind.name!r} has no stage")
        self._kinds[kind.name] = kind
        return kind

    def pipelines(self, settings: Settings) -> tuple[Pipeline, ...]:
        """The kinds a worker runs, with the values the settings decide fixed (timeouts are
        fixed when arq's functions are made, so they are read here, not when a job runs)."""
        return tuple(kind.configured(settings) for kind in self._kinds.values())

    def specs(self, settings: Settings) -> Kinds:
        """Every kind's tries, timeout and queue under these settings, by name."""
        return {name: kind.spec(settings) for name, kind in self._kinds.items()}


def declared_in(module_name: str) -> list[Pipeline]:
    """The kinds a module declares at its top level; importing it is what declares them."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # whatever the import raised, the worker must say which module
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        raise KindsNotLoaded(f"CONVEYOR_KINDS: the module {module_name!r} failed to import: {last}") from exc
    return [value for value in vars(module).values() if isinstance(value, Pipeline)]


def registry(settings: Settings, *, built_in: Sequence[Pipeline] = BUILT_IN) -> Registry:
    """The built-in kinds and those of the modules in CONVEYOR_KINDS, which are looked for
    in the working directory too, as `arq` and `uvicorn` look for theirs."""
    if settings.conveyor_kinds and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    kinds = Registry(built_in)
    for module_name in settings.conveyor_kinds:
        for kind in declared_in(module_name):
            try:
                kinds.register(kind)
            except ValueError as exc:
                raise KindsNotLoaded(f"CONVEYOR_KINDS: {module_name!r}: {exc}") from None
    return kinds


def pipelines(settings: Settings) -> tuple[Pipeline, ...]:
    return registry(settings).pipelines(settings)


def specs(settings: Settings) -> Kinds:
    return registry(settings).specs(settings)


def built_in_specs(settings: Settings) -> Kinds:
    """The built-in kinds' specs, for the API's upload routes: the API never imports the
    app's kinds (their specs come from what the workers publish)."""
    return Registry(BUILT_IN).specs(settings)
