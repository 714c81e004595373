"""The skills vocabulary (skills.txt) and the search for its skills in free text.

A skill found in running text must be spelled as a skill is, on word boundaries: "REST" and
"RESTful" are the architecture, "the rest of the team" is not; "Go" is the language, "go" is
not. See skills.txt for how each entry says how strictly it is matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

EXACT_LENGTH = 3
"""Skills this short ("Go", "R", "C", "SQL") are matched only as spelled, whatever their mark."""


@dataclass(frozen=True)
class Vocabulary:
    patterns: tuple[re.Pattern[str], ...]
    """Exact spellings, then spellings matched in any case; each alternation longest first."""
    canonical: dict[str, str]
    """Every spelling, casefolded, to the skill's usual spelling."""

    def find(self, text: str) -> list[str]:
        """The skills mentioned in `text`, in order of appearance, in their usual spelling."""
        matches = sorted(
            (m for pattern in self.patterns for m in pattern.finditer(text)), key=lambda m: (m.start(), -m.end())
        )
        found, end = [], 0
        for match in matches:
            if match.start() >= end:  # "SQL Server" is one skill, not also "SQL"
                found.append(self.canonical[match.group().casefold()])
                end = match.end()
        return found

    def spelling(self, item: str) -> str:
        """`item` in the vocabulary's spelling if it is a known skill, else as written."""
        return self.canonical.get(item.casefold(), item)


@cache
def vocabulary() -> Vocabulary:
    text = files("pipelines.documents.extract").joinpath("skills.txt").read_text(encoding="utf-8")
    exact: list[str] = []
    any_case: list[str] = []
    canonical: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        mark = line[0] if line[0] in "~!" else ""
        skill, _, others = line.removeprefix(mark).partition("=")
        skill = skill.strip()
        spellings = [skill, *(other.strip() for other in others.split(",") if other.strip())]
        for spelling in spellings:
            canonical[spelling.casefold()] = skill
            if mark == "!":
                continue
            (exact if mark == "~" or len(spelling) <= EXACT_LENGTH else any_case).append(spelling)
    return Vocabulary((_alternation(exact, flags=0), _alternation(any_case, flags=re.IGNORECASE)), canonical)


def _alternation(skills: list[str], *, flags: int) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(skill) for skill in sorted(skills, key=len, reverse=True))
    return re.compile(rf"(?<![\w+#.-])(?:{alternatives})(?![\w+#-]|\.\w)", flags)
