"""The registry of kinds: each kind's rules declared once, read alike by every job creator."""

import uuid

import pytest

from conveyor.kinds import Pipeline, Stage
from pipelines import registry, schedule
from pipelines.resources import Resources
from service import jobs
from service.config import load_settings


async def _nothing(run, input) -> dict:
    return {}


def test_every_built_in_kind_is_registered_with_its_rules():
    specs = registry.specs(load_settings())
    scheduled = {f"conveyor.{builtin.name}": 1 for builtin in schedule.BUILT_INS}  # the next tick is the retry
    assert {name: spec.tries for name, spec in specs.items()} == {
        "document": 5,
        "video": 3,
        "notification": 10,
        "callback": 10,
        "export": 3,
        **scheduled,
    }
    assert [pipeline.name for pipeline in registry.pipelines(load_settings())] == list(specs)


def test_settings_decide_what_the_deployment_owns():
    settings = load_settings(
        video_timeout_seconds=42,
        webhook_retry_schedule="1,2,3,4,5,6,7,8,9,10,11,12",
        kind_queues="export=conveyor:slow",
        queue_name="main",
    )
    specs = registry.specs(settings)
    assert specs["video"].timeout == 42
    [video] = [pipeline for pipeline in registry.pipelines(settings) if pipeline.name == "video"]
    assert video.timeout == 42  # what the worker's arq function and the runner enforce
    assert specs["notification"].tries == 13  # the first try and one per webhook retry delay
    assert specs["export"].queue == "conveyor:slow" and specs["document"].queue == "main"


def test_a_kind_of_its_own_plugs_in_and_is_declared_once():
    kinds = registry.Registry()
    greet = kinds.register(Pipeline("greet", (Stage("greet", _nothing),), timeout=60, tries=3, queue="apps"))
    kinds.register(greet)  # the same declaration again (a module imported twice) is no second kind
    spec = kinds.specs(load_settings())["greet"]
    assert spec == jobs.KindSpec("greet", tries=3, timeout=60, queue="apps")
    with pytest.raises(ValueError, match="'greet' is declared twice"):
        kinds.register(Pipeline("greet", (Stage("other", _nothing),)))


def test_a_new_job_takes_its_tries_and_queue_from_its_kind():
    kind = jobs.KindSpec("greet", tries=3, timeout=60, queue="apps")
    job = jobs.new_job(kind, tenant_id=uuid.uuid4(), payload={"name": "Ada"})
    assert (job.kind, job.max_tries, job.queue) == ("greet", 3, "apps")


class _Slots:
    """What a kind's jobs share, counting how often it is made and closed."""

    made = 0

    def __init__(self, settings, redis) -> None:
        type(self).made += 1
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_what_a_kinds_jobs_share_is_made_once_a_process_and_closed_with_it():
    kind = Pipeline("greet", (Stage("greet", _nothing),), shared=_Slots)
    resources = Resources(
        settings=load_settings(), db=None, redis=None, storage=None, http=None, webhooks=None, limiter=None, kinds={}
    )
    first = resources.open_shared(kind)
    assert resources.open_shared(kind.configured(load_settings())) is first and _Slots.made == 1
    assert resources.open_shared(Pipeline("plain", ())) is None  # a kind that shares nothing
    await resources.close_shared()
    assert first.closed
