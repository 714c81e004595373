"""The benchmarks run end to end at a tiny size, so they cannot rot. No timing is asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.deployment import Ran, most_at_once
from bench.queue import partition
from bench.queue.recorder import Finished
from bench.queue.throughput import summarize
from bench.report import Section, Spread, Table, write_section
from testkit import replica as replica_support

REPO = Path(__file__).resolve().parents[1]
SYSTEM_NAMES = ["Conveyor", "arq (default)", "arq (tuned)", "SAQ", "streaQ", "Celery (threads)", "RQ (SimpleWorker)"]


def run_bench(*args: str, results: Path, module: str = "bench", timeout: float = 240) -> list[str]:
    """Run `python -m module args --results results` from the repository; its stdout lines."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *args, "--results", str(results)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.rstrip("\n").splitlines()


@pytest.mark.integration
def test_queue_benchmark_prints_tables_and_the_ratio_line_last(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    lines = run_bench("queue", "--quick", "--jobs", "20", results=results)

    output = "\n".join(lines)
    assert "Queue throughput, no-op" in output and "Queue throughput, sleep 25 ms" in output
    for name in SYSTEM_NAMES:
        rows = [line for line in lines if line.startswith(f"│ {name} ")]
        assert len(rows) == 2, f"{name}: expected a row per workload in\n{output}"
        assert "failed" not in "".join(rows)
    assert re.fullmatch(r"queue: conveyor/best_peer = \d+\.\d\d", lines[-1])

    written = results.read_text()
    assert "<!-- bench:queue:start -->" in written and "python -m bench queue --quick --jobs 20" in written
    assert re.search(r"\| SAQ \| 2\d \|", written)  # its runs: at least once, so 20 or a few more


@pytest.mark.integration
@pytest.mark.xdist_group("netns")  # its cut-off host lives in a network namespace
def test_crash_benchmark_kills_a_worker_and_reports_the_cap(tmp_path: Path) -> None:
    lines = run_bench(
        "crash", "--quick", "--peers", "saq,streaq", "--crash-jobs", "3", "--crash-cap", "2", results=tmp_path / "R.md"
    )

    names = ("Conveyor", "SAQ", "streaQ", *(() if partition.unavailable() else ("Conveyor, cut off",)))
    rows = {name: line for line in lines for name in names if line.startswith(f"│ {name} ")}
    assert rows.keys() == set(names), "\n".join(lines)
    assert "failed" not in rows["Conveyor"]  # its crash watch may well recover within 2 s
    # streaQ needs 60 s; SAQ's sweep runs every 60 s; a cut-off Conveyor worker is dead only
    # after 6 s of silence: none recovers within 2 s.
    for name in set(names) - {"Conveyor"}:
        assert ">2 s (capped in 1/1 runs; 0/3 running again)" in rows[name]


@pytest.mark.integration
def test_crash_benchmark_sees_conveyor_recover_a_killed_workers_jobs(tmp_path: Path) -> None:
    lines = run_bench(
        "crash", "--quick", "--peers", "arq", "--crash-jobs", "3", "--crash-cap", "20", results=tmp_path / "R.md"
    )

    conveyor = next(line for line in lines if line.startswith("│ Conveyor "))
    assert "capped" not in conveyor, "\n".join(lines)
    assert 0 < float(conveyor.split("│")[2].split()[0]) < 20
    arq = next(line for line in lines if line.startswith("│ arq (default) "))
    assert ">20 s (capped in 1/1 runs; 0/3 running again)" in arq  # arq waits ~310 s


@pytest.mark.integration
def test_latency_benchmark_offers_half_of_peak_to_conveyor_and_its_baselines(tmp_path: Path) -> None:
    results = tmp_path / "R.md"
    lines = run_bench("latency", "--quick", "--jobs", "50", "--latency-seconds", "1", results=results)

    systems = ("Conveyor", "arq (tuned)", "SAQ")
    split = next(n for n, line in enumerate(lines) if line.startswith("CPU per job"))

    def rows(table: list[str]) -> dict[str, str]:
        return {name: line for line in table for name in systems if line.startswith(f"│ {name} ")}

    latency, cpu = rows(lines[:split]), rows(lines[split:])
    assert latency.keys() == cpu.keys() == set(systems), "\n".join(lines)
    for line in latency.values():
        p50, p95, p99, worst = (float(cell.strip().replace(",", "")) for cell in line.strip("│").split("│")[1:])
        assert 0 <= p50 <= p95 <= p99 <= worst, line
    for name, line in cpu.items():
        client, worker, redis, postgres, total = (float(cell) for cell in line.strip("│").split("│")[1:])
        assert client > 0 and worker > 0 and redis > 0, line
        assert total == pytest.approx(client + worker + redis + postgres, abs=0.02), line
        assert postgres > 0 or name != "Conveyor", line  # its ledger
    hops = [line for line in lines if line.startswith("│ ") and " → " in line.split("│")[1]]
    assert [line.split("│")[1].strip() for line in hops] == [
        "enqueue → ledger INSERT began",
        "ledger INSERT began → ledger claim began",
        "ledger claim began → start",
    ]
    for line in hops:
        p50, p99 = (float(cell.strip().replace(",", "")) for cell in line.strip("│").split("│")[1:])
        assert 0 <= p50 <= p99, line
    assert "<!-- bench:latency:start -->" in results.read_text()


@pytest.mark.integration
def test_api_benchmark_reports_peak_and_paced_uploads_polls_and_rss(tmp_path: Path) -> None:
    results = tmp_path / "R.md"
    lines = run_bench("api", "--quick", "--api-seconds", "1", results=results)

    rows = [[cell.strip() for cell in line.strip("│").split("│")] for line in lines if re.match(r"│ [12] ", line)]
    assert len(rows) == 4, "\n".join(lines)
    peak, paced = rows[:2], rows[2:]
    for cells in peak:
        assert float(cells[1].replace(",", "")) > 0 and float(cells[5].replace(",", "")) > 0, cells
    for cells in paced:  # offered, accepted, accepted/s, p50, p99
        assert int(cells[1].replace(",", "")) == 500 and int(cells[2].replace(",", "")) > 0, cells
        assert 0 < float(cells[4]) <= float(cells[5]), cells
    assert "at a steady load" in results.read_text()


@pytest.mark.integration
@pytest.mark.skipif(not replica_support.available(), reason="needs PG 15 binaries and root")
def test_api_benchmark_with_a_sync_standby_measures_both_modes_in_its_own_section(tmp_path: Path) -> None:
    results = tmp_path / "R.md"
    run_bench("api", "--sync-standby", "--quick", "--api-seconds", "1", results=results, timeout=420)
    written = results.read_text()
    assert "<!-- bench:api-sync-standby:start -->" in written and "<!-- bench:api:start -->" not in written
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in written.splitlines()
        if line.startswith(("| asynchronous", "| synchronous"))
    ]
    commits, api = [row for row in rows if len(row) == 4], [row for row in rows if len(row) == 8]
    assert [row[0] for row in commits] == ["asynchronous", "synchronous"], written
    for row in commits:  # p50, p99, mean ms
        assert 0 < float(row[1]) <= float(row[2]), row
    assert [row[0] for row in api] == ["asynchronous", "synchronous"], written
    for row in api:  # a 1 s closed loop may see no answer on a busy machine; the paced load waits for its answers
        assert float(row[2].replace(",", "")) >= 0 and float(row[5].replace(",", "")) > 0, row


@pytest.mark.integration
def test_jobs_benchmark_submits_over_http_beside_a_peer_and_prints_both_ratios(tmp_path: Path) -> None:
    results = tmp_path / "R.md"
    lines = run_bench("jobs", "--quick", "--jobs", "20", "--peers", "saq", "--latency-seconds", "1", results=results)

    names = ("Conveyor, one by one", "Conveyor, batches of 20", "Conveyor, batches, 20 keys", "SAQ")
    rows = {name: line for line in lines for name in names if line.startswith(f"│ {name} ")}
    assert rows.keys() == set(names), "\n".join(lines)
    for name, line in rows.items():
        jobs, submitted, processing = (cell.strip().replace(",", "") for cell in line.strip("│").split("│")[1:])
        # A peer may run a job twice (SAQ's delivery is at least once): its rows count runs.
        assert int(jobs) == 20 if name.startswith("Conveyor") else int(jobs) >= 20, line
        assert float(submitted) > 0 and float(processing) > 0, line
    latency = next(line for line in lines if re.match(r"│ \d", line))  # offered/s, start p50, p99, max, 202 p50, p99
    offered, p50, p99, worst, *_ = (float(cell.strip().replace(",", "")) for cell in latency.strip("│").split("│"))
    assert offered > 0 and 0 <= p50 <= p99 <= worst, latency
    assert re.fullmatch(r"jobs: conveyor/best_peer = \d+\.\d\d", lines[-2]), lines[-2]
    assert re.fullmatch(r"jobs: keyed/unkeyed = \d+\.\d\d", lines[-1]), lines[-1]

    written = results.read_text()
    assert "<!-- bench:jobs:start -->" in written and "python -m bench jobs --quick --jobs 20" in written
    assert re.search(r"\| SAQ \| 2\d \|", written) and "Load average at end" in written
    assert re.search(r"Keyed runs: at most \d+ job\(s\) of one key ran at the same time", written), written


def test_summary_reads_what_jobs_recorded() -> None:
    records = [Finished.parse(f"{100 + i} {100.5 + i} {101 + i}".encode()) for i in range(10)]

    sample = summarize(records, enqueue_s=2.0)

    assert sample.jobs == 10
    assert sample.enqueue_per_s == 5.0
    assert sample.processing_per_s == pytest.approx(10 / 10)
    assert sample.latency_p50_s == pytest.approx(1.0) and sample.latency_p99_s == pytest.approx(1.0)


def test_the_most_jobs_of_one_key_at_once_come_from_their_ledger_times() -> None:
    ran = [
        Ran(0, 1, 2, "a"),
        Ran(0, 2, 3, "a"),  # starts as the first ends: not at once
        Ran(0, 2.5, 4, "a"),
        Ran(0, 0, 9, "b"),
        Ran(0, 0, 9, None),  # jobs without a key are not limited
    ]

    assert most_at_once(ran) == 2
    assert most_at_once(ran[3:]) == 1 and most_at_once([]) == 0


def test_spread_formats_median_and_range() -> None:
    assert Spread.of([3.0, 1.0, 2.0]).format(str) == "2.0 (1.0–3.0)"
    assert Spread.of([4.0]).format(str) == "4.0"
    with pytest.raises(ValueError):
        Spread.of([])


def test_results_sections_are_replaced_not_duplicated(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"

    def section(value: str, name: str = "queue") -> Section:
        return Section(
            name, name.title(), "python -m bench", "today", {"CPU": "2"}, [Table("t", ["System", "x"], [["a", value]])]
        )

    write_section(section("first"), path)
    write_section(section("other", name="crash"), path)
    write_section(section("second"), path)

    text = path.read_text()
    assert "first" not in text and text.count("| a | second |") == 1 and "| a | other |" in text
    assert text.index("bench:queue:start") < text.index("bench:crash:start")


@pytest.mark.integration
def test_pipeline_benchmarks_are_registered_and_run(tmp_path: Path) -> None:
    results = tmp_path / "R.md"
    lines = run_bench("videos", "--quick", results=results)

    output = "\n".join(lines)
    assert "concurrent (one" in output and "one at a time" in output, output
    written = results.read_text()  # the section goes where `python -m bench --results` says
    assert "<!-- bench:videos:start -->" in written and "| one at a time | 1 |" in written


def run_documents_bench(documents: int, *args: str, results: Path) -> list[str]:
    """bench.documents once at `documents` documents, with quick fake Textract and LLM answers."""
    quick = ("--repeat", "1", "--textract-seconds", "0.3", "--llm-seconds", "0.1")
    return run_bench("--sizes", str(documents), *quick, *args, results=results, module="bench.documents")


@pytest.mark.integration
def test_documents_benchmark_reports_makespan_against_the_ideal(tmp_path: Path) -> None:
    results = tmp_path / "R.md"
    lines = run_documents_bench(3, results=results)
    assert "one document alone (the ideal)" in "\n".join(lines)
    row = next(line for line in results.read_text().splitlines() if line.startswith("| 3 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "3"  # every document succeeded
    assert float(cells[3]) >= 0.5 and float(cells[4]) > 0  # × ideal, sequential seconds
    written = results.read_text()
    timeline = next(line for line in written.splitlines() if "the last document to finish" in line)
    assert "created" in timeline and "persist done" in timeline, timeline
    cpu = next(line for line in written.splitlines() if "CPU seconds by process" in line)
    assert all(name in cpu for name in ("worker", "API", "S3", "PostgreSQL", "page readers")), cpu


@pytest.mark.integration
def test_documents_benchmark_with_textract_notices(tmp_path: Path) -> None:
    results = tmp_path / "R.md"
    run_documents_bench(2, "--textract-notices", results=results)
    written = results.read_text()
    assert "<!-- bench:documents-notices:start -->" in written and "<!-- bench:documents:start -->" not in written
    row = next(line for line in written.splitlines() if line.startswith("| 2 |"))
    assert [cell.strip() for cell in row.strip("|").split("|")][1] == "2"  # both succeeded
    assert "SNS+SQS" in next(line for line in written.splitlines() if "CPU seconds by process" in line)


@pytest.mark.integration
@pytest.mark.skipif(not replica_support.available(), reason="needs PG 15 binaries and root")
def test_replicas_benchmark_reports_overhead_share_and_no_violations(tmp_path: Path) -> None:
    results = tmp_path / "R.md"
    lines = run_bench("replicas", "--quick", results=results)
    assert any("Routing overhead" in line for line in lines), lines
    written = results.read_text()
    assert "<!-- bench:replicas:start -->" in written
    delays = [line for line in written.splitlines() if line.startswith(("| 0 ms", "| 10 ms", "| 500 ms"))]
    assert len(delays) == 3, written
    for row in delays:
        share, _, violations = [cell.strip() for cell in row.strip("|").split("|")][1:]
        assert 0 <= float(share.rstrip(" %")) <= 100 and violations == "0", row


@pytest.mark.integration
def test_workflows_benchmark_compares_a_fan_out_with_flat_jobs(tmp_path: Path) -> None:
    results = tmp_path / "R.md"
    run_bench("--jobs", "50", results=results, module="bench.workflows")
    written = results.read_text()
    assert "<!-- bench:workflows:start -->" in written and "| POST /v1/jobs/batch (flat) | 50 |" in written
    assert "| workflow: list → for_each → join | 52 |" in written and "Overhead of the workflow" in written
