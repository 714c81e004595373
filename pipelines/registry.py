"""Every kind of job Conveyor runs: the one list the worker, the API and `conveyor up` read.

Each kind is declared once, beside its stages (a `Pipeline` in its own package), with its
tries, timeout, queue and what its jobs share in a worker process. The worker runs
`pipelines(settings)`; whoever creates jobs (the API, callbacks, the scheduler) reads the
same declarations as `specs(settings)`, plain values the core takes without importing a
kind's code. A kind declared outside this repository is added with `KINDS.register`.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.analytics.export import EXPORT_PIPELINE
from pipelines.documents.pipeline import DOCUMENT_PIPELINE
from pipelines.notifications.pipeline import CALLBACK_PIPELINE, NOTIFICATION_PIPELINE
from pipelines.pipeline import Pipeline
from pipelines.videos.pipeline import VIDEO_PIPELINE
from service.config import Settings
from service.jobs import Kinds


class Registry:
    """Kinds by name; a name is declared once."""

    def __init__(self, kinds: Iterable[Pipeline] = ()) -> None:
        self._kinds: dict[str, Pipeline] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: Pipeline) -> Pipeline:
        """Add `kind` (returned, so this can decorate a declaration); a second declaration
        of the same name is refused, naming it."""
        known = self._kinds.get(kind.kind)
        if known is not None and known is not kind:
            raise ValueError(f"the kind {kind.kind!r} is declared twice")
        self._kinds[kind.kind] = kind
        return kind

    def pipelines(self, settings: Settings) -> tuple[Pipeline, ...]:
        """The kinds a worker runs, with the values the settings decide fixed (timeouts are
        fixed when arq's functions are made, so they are read here, not when a job runs)."""
        return tuple(kind.configured(settings) for kind in self._kinds.values())

    def specs(self, settings: Settings) -> Kinds:
        """Every kind's tries, timeout and queue under these settings, by name."""
        return {name: kind.spec(settings) for name, kind in self._kinds.items()}


KINDS = Registry((DOCUMENT_PIPELINE, VIDEO_PIPELINE, NOTIFICATION_PIPELINE, CALLBACK_PIPELINE, EXPORT_PIPELINE))


def pipelines(settings: Settings) -> tuple[Pipeline, ...]:
    return KINDS.pipelines(settings)


def specs(settings: Settings) -> Kinds:
    return KINDS.specs(settings)
