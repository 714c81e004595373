"""Jobs of an app's own kind, submitted over HTTP: `python -m bench jobs`.

The kind is `noop` (testkit/sample_kinds.py, declared with `conveyor.job`), run by one
worker process with concurrency C behind the API as deployed (bench/deployment.py: a fresh
one for every measurement). h2load, which costs the shared cores little, submits N jobs:
one by one (POST /v1/jobs from 50 connections, each sending its next job when the last is
answered) and in batches of 1,000 (POST /v1/jobs/batch). The keyed workload is the same
batches of `noop_keyed` (concurrency 1), the jobs spread over 1,000 concurrency keys. The
peers enqueue the same no-op with their own clients, measured by the queue benchmark's code
(bench/queue/throughput.py), round-robin with Conveyor's measurements in the same run.

Submitted jobs/s is the jobs accepted over the first request's start → the last answer;
processing jobs/s is the jobs over the first request's start → the last job's end in the
ledger. Then one-by-one jobs are offered at a steady half of their peak processing rate,
and each job's submit-to-start latency is its ledger `started_at − created_at`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from . import api_load
from .api import CLIENTS
from .context import BenchContext
from .deployment import API_PROCESSES, Deployment, Ran, most_at_once
from .queue.runner import ENQUEUE_IN_FLIGHT, Runner, peer_runners, round_robin
from .queue.throughput import FINISH_TIMEOUT_BASE_S, FINISH_TIMEOUT_PER_JOB_S, measure
from .queue.workload import Workload
from .report import Section, Spread, Table, milliseconds, percentile, rate

KINDS_MODULE = "testkit.sample_kinds"
KIND, KEYED_KIND = "noop", "noop_keyed"
BATCH = 1000
KEYS = 1000
#: Batches are sent from two connections at a time, so that both API processes take them.
BATCH_CLIENTS = 2
PERCENTILES = (50, 99)
#: What a run that failed leaves in the ratio lines.
NOT_MEASURED = "n/a (a run failed, see the table)"


@dataclass(frozen=True, slots=True)
class Submission:
    """`requests` POSTs of one `body` to `path`, each creating `per_request` jobs."""

    path: str
    body: bytes
    per_request: int
    requests: int
    clients: int

    @property
    def jobs(self) -> int:
        return self.per_request * self.requests


def _job(kind: str, key: str | None = None) -> dict:
    return {"kind": kind, "input": {}, **({"concurrency_key": key} if key else {})}


def one_by_one(count: int) -> Submission:
    return Submission("/v1/jobs", json.dumps(_job(KIND)).encode(), 1, count, CLIENTS)


def batches(count: int, *, keyed: bool = False) -> Submission:
    """`count` jobs (rounded down to whole batches) in batches of `BATCH`, or of `count` if
    fewer; keyed, each batch holds `KEYS` keys (fewer if the batch is smaller) in turn."""
    size = min(BATCH, count)
    keys = min(KEYS, size)
    bodies = [_job(KEYED_KIND, f"key-{index % keys}") if keyed else _job(KIND) for index in range(size)]
    requests = count // size
    return Submission(
        "/v1/jobs/batch", json.dumps({"jobs": bodies}).encode(), size, requests, min(BATCH_CLIENTS, requests)
    )


@dataclass(frozen=True, slots=True)
class Rates:
    jobs: int
    submitted_per_s: float
    processing_per_s: float
    #: The most jobs of one concurrency key that ran at once (0: no keys).
    most_at_once: int = 0


@dataclass(frozen=True, slots=True)
class Latencies:
    #: Submit → start of every job, milliseconds.
    start_ms: list[float]
    #: Request → `202`, as h2load saw the API's answers.
    answers: api_load.Load


@dataclass(frozen=True, slots=True)
class Measured:
    answers: list[api_load.Answer]
    ran: list[Ran]

    def rates(self, submission: Submission) -> Rates:
        first_sent = min(answer.sent_at for answer in self.answers)
        accepted = api_load.accepted_load(self.answers, submission.requests, 0.0)
        last_end = max(job.finished_at for job in self.ran)
        return Rates(
            jobs=len(self.ran),
            submitted_per_s=accepted.per_second * submission.per_request,
            processing_per_s=len(self.ran) / (last_end - first_sent),
            most_at_once=most_at_once(self.ran),
        )

    def latencies(self, submission: Submission) -> Latencies:
        return Latencies(
            [(job.started_at - job.created_at) * 1000 for job in self.ran],
            api_load.accepted_load(self.answers, submission.requests, 0.0),
        )


async def submit_and_run(
    context: BenchContext, label: str, submission: Submission, per_second: float | None = None
) -> Measured:
    """Submit through a fresh deployment (offered at `per_second`, or as fast as answered)
    and wait until every job has run."""
    async with Deployment(context, label, KINDS_MODULE, (KIND, KEYED_KIND)) as deployment:
        answers = await api_load.h2load(
            deployment.api.url + submission.path,
            deployment.key,
            submission.body,
            "application/json",
            clients=submission.clients,
            requests=submission.requests,
            rate=per_second,
        )
        refused = [answer.status for answer in answers if answer.status != 202]
        if refused or len(answers) < submission.requests:
            raise RuntimeError(
                f"{len(answers) - len(refused)}/{submission.requests} requests accepted (refused: {refused[:5]})"
            )
        timeout = FINISH_TIMEOUT_BASE_S + FINISH_TIMEOUT_PER_JOB_S * submission.jobs
        await deployment.wait_ended(submission.jobs, timeout)
        return Measured(answers, await deployment.ran())


@dataclass(eq=False)
class Row:
    """A line of the table: who submits (and how), and the measurement that fills it."""

    system: str
    measure: Callable[[], Awaitable[Rates]]


def conveyor_row(context: BenchContext, label: str, submission: Submission) -> Row:
    async def run() -> Rates:
        return (await submit_and_run(context, f"jobs {label}", submission)).rates(submission)

    return Row(label, run)


def peer_row(context: BenchContext, peer: type[Runner]) -> Row:
    async def run() -> Rates:
        sample = await measure(peer, context, Workload.NOOP)
        return Rates(sample.jobs, sample.enqueue_per_s, sample.processing_per_s)

    return Row(peer.name, run)


@dataclass
class Results:
    samples: dict[Row, list[Rates]]
    failures: dict[Row, str]

    def processing(self, row: Row) -> float | None:
        samples = self.samples.get(row)
        return Spread.of([sample.processing_per_s for sample in samples]).median if samples else None


async def collect(rows: list[Row], context: BenchContext) -> Results:
    results = Results(defaultdict(list), {})
    for turn in range(context.repeat):
        for row in round_robin(rows, turn):
            label = f"jobs {turn + 1}/{context.repeat} {row.system}"
            try:
                sample = await row.measure()
            except (RuntimeError, TimeoutError) as error:  # WorkerFailed, h2load's or the API's start
                results.failures[row] = str(error).splitlines()[0]
                context.progress(f"{label}: FAILED {results.failures[row]}")
                continue
            results.samples[row].append(sample)
            context.progress(f"{label}: {rate(sample.processing_per_s)} jobs/s")
    return results


@dataclass
class Steady:
    """The latency runs: one-by-one jobs offered at a steady rate, once a repetition."""

    offered: float
    count: int
    runs: list[Latencies] = field(default_factory=list)
    failure: str | None = None


async def steady(context: BenchContext, peak: float) -> Steady:
    """Submit → start of one-by-one jobs offered at half of `peak` for the run's latency seconds."""
    offered = peak / 2
    result = Steady(offered, max(1, round(offered * context.latency_seconds)))
    submission = one_by_one(result.count)
    for turn in range(context.repeat):
        label = f"jobs latency {turn + 1}/{context.repeat} at {offered:,.0f}/s"
        try:
            measured = await submit_and_run(context, "jobs latency", submission, offered)
        except (RuntimeError, TimeoutError) as error:
            result.failure = str(error).splitlines()[0]
            context.progress(f"{label}: FAILED {result.failure}")
            continue
        result.runs.append(measured.latencies(submission))
        context.progress(f"{label}: p99 {percentile(result.runs[-1].start_ms, 99):.1f} ms")
    return result


def rates_table(rows: list[Row], results: Results, context: BenchContext) -> Table:
    table = Table(
        f"Jobs of a no-op kind: {context.jobs:,} a run, one worker process with concurrency {context.concurrency}, "
        f"median (min–max) of {context.repeat}",
        ["System", "Jobs", "Submitted jobs/s", "Processing jobs/s"],
    )
    for row in rows:
        samples = results.samples.get(row)
        if not samples:
            table.rows.append([row.system, "—", f"failed: {results.failures.get(row, '?')}", ""])
            continue
        submitted = Spread.of([sample.submitted_per_s for sample in samples])
        processing = Spread.of([sample.processing_per_s for sample in samples])
        table.rows.append([row.system, f"{samples[0].jobs:,}", submitted.format(rate), processing.format(rate)])
    return table


def latency_table(measured: Steady, context: BenchContext) -> Table:
    table = Table(
        f"Conveyor, submit → start, ms: {measured.count:,} jobs offered one by one at {measured.offered:,.0f}/s (half "
        f"of the one-by-one peak) over {context.latency_seconds:g} s, median (min–max) of {context.repeat}",
        ["Offered jobs/s", *(f"start p{percent}" for percent in PERCENTILES), "start max", "202 p50", "202 p99"],
    )
    runs = measured.runs
    if not runs:
        table.rows.append([rate(measured.offered), f"failed: {measured.failure}", "", "", "", ""])
        return table

    def spread(values: list[float]) -> str:
        return Spread.of(values).format(milliseconds)

    table.rows.append(
        [
            rate(measured.offered),
            *(spread([percentile(run.start_ms, percent) for run in runs]) for percent in PERCENTILES),
            spread([max(run.start_ms) for run in runs]),
            spread([run.answers.p50 * 1000 for run in runs]),
            spread([run.answers.p99 * 1000 for run in runs]),
        ]
    )
    return table


def ratio_lines(batched: Row, keyed: Row, peers: list[Row], results: Results) -> list[str]:
    """Batched processing over the best peer's; keyed over unkeyed batches (medians)."""
    ours, keyed_rate = results.processing(batched), results.processing(keyed)
    theirs = [value for peer in peers if (value := results.processing(peer)) is not None]
    best = f"{ours / max(theirs):.2f}" if ours and theirs and len(theirs) == len(peers) else NOT_MEASURED
    keys = f"{keyed_rate / ours:.2f}" if ours and keyed_rate else NOT_MEASURED
    return [f"jobs: conveyor/best_peer = {best}", f"jobs: keyed/unkeyed = {keys}"]


async def run(context: BenchContext) -> tuple[Section, list[str]]:
    count = context.jobs
    batch, keyed_batch = batches(count), batches(count, keyed=True)
    keys = min(KEYS, keyed_batch.per_request)
    single = conveyor_row(context, "Conveyor, one by one", one_by_one(count))
    batched = conveyor_row(context, f"Conveyor, batches of {batch.per_request:,}", batch)
    keyed = conveyor_row(context, f"Conveyor, batches, {keys:,} keys", keyed_batch)
    peers = [peer_row(context, peer) for peer in peer_runners(context.peers)]
    rows = [single, batched, keyed, *peers]
    results = await collect(rows, context)
    peak = results.processing(single)
    latency = await steady(context, peak) if peak else Steady(0.0, 0, failure="no one-by-one peak")
    section = context.section(
        "jobs",
        "Jobs of an app's own kind over HTTP",
        [rates_table(rows, results, context), latency_table(latency, context)],
        [
            f"Conveyor: the API as deployed (`uvicorn service.app:app`, {API_PROCESSES} processes: one a core) and one "
            f"worker process (`arq worker.WorkerSettings`, `CONVEYOR_KINDS={KINDS_MODULE}`), a fresh database each "
            f"run; the no-op kinds are `{KIND}` and `{KEYED_KIND}` (concurrency 1), declared with `conveyor.job`. "
            "h2load sends the requests, each connection its next when the last is answered: one by one, POST "
            f"/v1/jobs from {CLIENTS} connections; in batches, POST /v1/jobs/batch from {batch.clients}. The latency "
            "run offers one-by-one jobs evenly spaced instead, as the API benchmark's steady load does. The keyed "
            f"batches are of `{KEYED_KIND}`, the jobs of each batch spread over {keys:,} concurrency keys in turn.",
            f"The peers enqueue with their own clients, one job a call: the async ones {ENQUEUE_IN_FLIGHT} at a time, "
            "Celery's and RQ's in a plain loop.",
            "Submitted jobs/s = jobs accepted / (first request → last answer); processing jobs/s = jobs / (first "
            "request → last job's `finished_at` in the ledger). The peers are the queue benchmark's no-op "
            "measurement: their client's enqueue rate, and jobs / (first enqueue → last finish, as the job recorded it).",
            "Submit → start is each job's `started_at − created_at` in the ledger (its INSERT, then its claim by "
            "the worker); 202 is request → answer as h2load saw it.",
            "`jobs: conveyor/best_peer` is batched processing over the best peer's (medians); `jobs: keyed/unkeyed` "
            "is the keyed batches' processing over the unkeyed ones'.",
            *key_note(keyed, results),
            "Per-key rate limit and tenant queue quota lifted for the run (one API key sends everything).",
        ],
    )
    return section, ratio_lines(batched, keyed, peers, results)


def key_note(keyed: Row, results: Results) -> list[str]:
    """Whether the keyed runs kept to their limit of 1, as the ledger's times show it."""
    samples = results.samples.get(keyed)
    if not samples:
        return []
    most = max(sample.most_at_once for sample in samples)
    return [
        f"Keyed runs: at most {most} job(s) of one key ran at the same time, by the ledger's `started_at` and "
        "`finished_at` (the kind's limit is 1)."
    ]
