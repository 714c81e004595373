"""Medians with their spread, tables for the terminal (rich) and for bench/RESULTS.md."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

RESULTS_PATH = Path(__file__).with_name("RESULTS.md")
RESULTS_TITLE = "# Benchmark results\n\nWritten by `python -m bench`; each section is replaced by its latest run.\n"


@dataclass(frozen=True, slots=True)
class Spread:
    """The median of repeated measurements and their range."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no measurements")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def format(self, number: Callable[[float], str]) -> str:
        if self.count == 1:
            return number(self.median)
        return f"{number(self.median)} ({number(self.low)}–{number(self.high)})"


def percentile(values: Sequence[float], percent: int) -> float:
    """The `percent`th percentile of `values` (inclusive method: it never leaves their range)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def rate(value: float) -> str:
    return f"{value:,.0f}"


def seconds(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def milliseconds(value: float) -> str:
    return f"{value:,.1f}"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def rich(self) -> RichTable:
        table = RichTable(title=self.title, title_justify="left")
        for index, header in enumerate(self.headers):
            table.add_column(header, justify="left" if index == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        return table

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.headers) + " |"]
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(self.headers) - 1)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Section:
    """One benchmark's results: printed, and written to RESULTS.md under its own heading."""

    name: str
    heading: str
    command: str
    date: str
    machine: dict[str, str]
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def print(self, console: Console) -> None:
        for table in self.tables:
            console.print(table.rich())
        for note in self.notes:
            console.print(f"  • {note}", highlight=False)

    def markdown(self) -> str:
        parts = [
            f"## {self.heading}",
            f"Command: `{self.command}` — {self.date}",
            "\n".join(f"- {label}: {value}" for label, value in self.machine.items()),
            *(table.markdown() for table in self.tables),
            "\n".join(f"- {note}" for note in self.notes),
        ]
        return (
            _marker(self.name, "start")
            + "\n"
            + "\n\n".join(part for part in parts if part)
            + "\n"
            + _marker(self.name, "end")
        )


def _marker(name: str, edge: str) -> str:
    return f"<!-- bench:{name}:{edge} -->"


def write_section(section: Section, path: Path = RESULTS_PATH) -> None:
    """Replace the section's previous run in `path`, or append it."""
    text = path.read_text() if path.exists() else RESULTS_TITLE
    block = section.markdown()
    pattern = re.compile(
        re.escape(_marker(section.name, "start")) + ".*?" + re.escape(_marker(section.name, "end")), re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
