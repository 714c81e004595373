"""Kinds an app might declare, as the tests of the kind API use them: workers load this
module with `CONVEYOR_KINDS=testkit.sample_kinds`, exactly as they would `myapp.jobs`.

Each kind shows one part of the contract: a one-function kind with a model and progress
(`greet`), a checkpointed two-stage kind whose stages report to a stage counter and may
wait on a gate file (`sync_account`), `conveyor.Retry` (`patient`), `conveyor.Fail`
(`refuse`), an unforeseen exception (`crash`), a result JSON cannot hold (`timestamp`),
partial progress kept with `ctx.save` (`resumable`), a stage that sees its cancellation
(`hold`), a kind limited per concurrency key that tallies its running jobs in Redis
(`pair`), the jobs benchmark's no-op (`noop`) with its twin limited to one job a
concurrency key at a time (`noop_keyed`), and a kind that gives back its input (`echo`,
the workflows').
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel
from redis.asyncio import Redis

import conveyor
from testkit.stage_counter import report_stage


async def until_exists(gate: str | None) -> None:
    """Wait until the file `gate` exists (at once without one)."""
    while gate and not await asyncio.to_thread(Path(gate).exists):
        await asyncio.sleep(0.05)


class Greeting(BaseModel):
    name: str
    times: int = 1


@conveyor.job("greet", input=Greeting, tries=3, timeout=60)
async def greet(ctx: conveyor.Context, input: Greeting) -> dict:
    """Say hello to someone."""
    await ctx.progress(0.5, "halfway")
    return {"text": " ".join([f"Hello, {input.name}"] * input.times), "tenant": ctx.tenant, "metadata": ctx.metadata}


class SyncInput(BaseModel):
    account: str
    counter_url: str | None = None  # each stage reports here right before it returns
    gate: str | None = None  # `load` waits until this file exists


sync = conveyor.Pipeline("sync_account", input=SyncInput, tries=5, timeout=120, description="Sync an account.")


@sync.stage
async def fetch(ctx: conveyor.Context, input: SyncInput) -> dict:
    if input.counter_url:
        await report_stage(ctx, input.counter_url, "fetch")
    return {"rows": [input.account, "second row"], "attempt": ctx.attempt}


@sync.stage
async def load(ctx: conveyor.Context, input: SyncInput) -> dict:
    await until_exists(input.gate)
    if input.counter_url:
        await report_stage(ctx, input.counter_url, "load")
    return {"loaded": len(ctx.outputs["fetch"]["rows"]), "attempt": ctx.attempt}


class Attempts(BaseModel):
    succeed_on: int = 3
    after: float = 0.05


@conveyor.job("patient", input=Attempts, tries=5, timeout=30)
async def patient(ctx: conveyor.Context, input: Attempts) -> dict:
    if ctx.attempt < input.succeed_on:
        raise conveyor.Retry(after=input.after)
    return {"attempt": ctx.attempt}


@conveyor.job("refuse", tries=5, timeout=30)
async def refuse(ctx: conveyor.Context, input: dict) -> dict:
    raise conveyor.Fail("over_quota", "the account is over its quota")


@conveyor.job("crash", tries=2, timeout=30)
async def crash(ctx: conveyor.Context, input: dict) -> dict:
    raise RuntimeError("a detail for the logs only: /srv/secret/path")


@conveyor.job("timestamp", timeout=30)
async def timestamp(ctx: conveyor.Context, input: dict) -> dict:
    return {"at": datetime.now(UTC)}


resumable = conveyor.Pipeline("resumable", tries=3, timeout=30)


@resumable.stage
async def count(ctx: conveyor.Context, input: dict) -> dict:
    if ctx.saved is None:
        await ctx.save({"counted": 2})
        raise conveyor.Retry(after=0.05)
    return {"resumed_from": ctx.saved["counted"], "attempt": ctx.attempt}


@conveyor.job("hold", timeout=60)
async def hold(ctx: conveyor.Context, input: dict) -> dict:
    """Wait until cancelled; leave a mark on the way out."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.to_thread(Path(input["marker"]).write_text, "cancelled")
        raise
    return {}


class Turn(BaseModel):
    redis_url: str
    tally: str  # the Redis keys its key's tally is kept in
    gate: str | None = None  # it runs until this file exists
    fail: bool = False


@conveyor.job("pair", input=Turn, concurrency=2, timeout=60)
async def pair(ctx: conveyor.Context, input: Turn) -> dict:
    """Two at a time per concurrency key: each notes how many ran as it started."""
    redis = Redis.from_url(input.redis_url)
    try:
        running = await redis.incr(f"{input.tally}:running")
        await redis.rpush(f"{input.tally}:started", f"{ctx.job_id} {running}")
        try:
            await until_exists(input.gate)
        finally:
            await redis.decr(f"{input.tally}:running")
    finally:
        await redis.aclose()
    if input.fail:
        raise conveyor.Fail("told_to", "the test asked it to fail")
    return {"running": running}


@conveyor.job("noop", timeout=30)
async def noop(ctx: conveyor.Context, input: dict) -> dict:
    """Do nothing: what a queue costs by itself."""
    return {}


@conveyor.job("noop_keyed", timeout=30, concurrency=1)
async def noop_keyed(ctx: conveyor.Context, input: dict) -> dict:
    """Do nothing, one job a concurrency key at a time: what the key's limit costs."""
    return {}


@conveyor.job("echo", tries=1, timeout=60)
async def echo(ctx: conveyor.Context, input: dict) -> dict:
    """Give back the input, once the file `gate` exists (at once without one); fail while
    the file `fail_unless` does not exist."""
    await until_exists(input.get("gate"))
    failing = input.get("fail_unless")
    if failing and not await asyncio.to_thread(Path(failing).exists):
        raise conveyor.Fail("told_to", "the test asked it to fail")
    return input
