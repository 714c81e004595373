"""Precision and recall of extracted fields against a corpus's expected fields.

Values are compared as a reader would: names, emails and places whatever their case and
spacing, phones by their digits, links without scheme, `www.` or a final slash, summaries
when nearly the same text (OCR may misread a letter). A list field counts each item; a
value that is wrong counts against both precision (it was given) and recall (the right one
was not).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from pipelines.documents.extract import ResumeFields

FIELDS = tuple(ResumeFields.model_fields)
SUMMARY_SIMILARITY = 0.85


@dataclass
class Tally:
    right: int = 0
    wrong: int = 0
    """Given but not expected (or not what was expected)."""
    missed: int = 0
    """Expected but not given (or given wrongly)."""

    @property
    def precision(self) -> float | None:
        given = self.right + self.wrong
        return self.right / given if given else None

    @property
    def recall(self) -> float | None:
        expected = self.right + self.missed
        return self.right / expected if expected else None


@dataclass
class Scores:
    fields: dict[str, Tally] = field(default_factory=lambda: {name: Tally() for name in FIELDS})
    empty_on_others: int = 0
    """Non-résumé documents for which every field came back empty."""
    others: int = 0

    def add(self, expected: ResumeFields, got: ResumeFields) -> None:
        for name in FIELDS:
            want, have = getattr(expected, name), getattr(got, name)
            if isinstance(want, list):
                wanted = {_normal(name, item) for item in want}
                given = {_normal(name, item) for item in have}
                self._count(name, len(wanted & given), len(given - wanted), len(wanted - given))
            elif have is None:
                self._count(name, 0, 0, want is not None)
            else:
                same = want is not None and _same(name, want, have)
                self._count(name, same, not same, want is not None and not same)
        if not any(expected.model_dump().values()):
            self.others += 1
            self.empty_on_others += got.model_dump() == expected.model_dump()

    def _count(self, name: str, right: int, wrong: int, missed: int) -> None:
        tally = self.fields[name]
        tally.right += right
        tally.wrong += wrong
        tally.missed += missed


def _normal(name: str, value: str) -> str:
    value = " ".join(value.casefold().split())
    if name == "links":
        value = re.sub(r"^(?:https?://)?(?:www\.)?", "", value).rstrip("/")
    if name == "phone":
        value = re.sub(r"\D", "", value)
    return value


def _same(name: str, want: str, have: str) -> bool:
    want, have = _normal(name, want), _normal(name, have)
    if name == "summary":
        return difflib.SequenceMatcher(None, want, have).ratio() >= SUMMARY_SIMILARITY
    return want == have
