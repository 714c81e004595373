"""The embedded extractor: regular expressions and a skills vocabulary, no network, no model.

It favours precision: a field it cannot find with some confidence stays empty.
"""

from __future__ import annotations

import asyncio
import re
from functools import cache
from importlib.resources import files

from pipelines.documents.extract.schema import ResumeFields

MAX_CHARS = 200_000
"""Text beyond this is ignored: a résumé's facts are at its start, and it bounds the work."""

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{5,18}\d(?!\w)")
YEARS = re.compile(r"(?:19|20)\d\d\s*[-–]\s*(?:19|20)\d\d")
PHONE_LABEL = re.compile(r"\b(?:phone|tel|telephone|mobile|cell)\b", re.IGNORECASE)
LINK = re.compile(r"(?:https?://|www\.)[^\s<>()\"']+|\b(?:linkedin\.com|github\.com|gitlab\.com)/[^\s<>()\"']+", re.IGNORECASE)
LABEL = re.compile(r"^\s*(name|location|address|based in|city)\s*[:\-–]\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
HEADING = re.compile(
    r"^\s*(summary|professional summary|profile|about me|about|objective|skills|technical skills|experience|"
    r"work experience|employment|education|projects|languages|certifications|interests|references|contact)\s*:?\s*(.*)$",
    re.IGNORECASE,
)
NAME_WORD = re.compile(r"^(?:[A-Z][a-zà-ÿ'’-]+|[A-Z]\.|[A-Z][A-Z'’-]+)$")
NOT_NAMES = {"curriculum", "vitae", "resume", "résumé", "cv", "page", "contact", "profile", "summary"}
SUMMARY_HEADINGS = {"summary", "professional summary", "profile", "about me", "about", "objective"}
SKILL_HEADINGS = {"skills", "technical skills"}
SKILL_SPLIT = re.compile(r"\s*[,;|•·/]\s*|\s+-\s+")
MAX_SUMMARY = 600


SHORT_SKILL = 3
"""Skills this short ("Go", "R", "C", "SQL") are matched only as spelled, or every "go" would count."""


@cache
def vocabulary() -> tuple[list[re.Pattern[str]], dict[str, str]]:
    """Patterns for all known skills (longest first), and each match's canonical spelling."""
    text = files("pipelines.documents.extract").joinpath("skills.txt").read_text(encoding="utf-8")
    skills = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    short = [skill for skill in skills if len(skill) <= SHORT_SKILL]
    long = [skill for skill in skills if len(skill) > SHORT_SKILL]
    patterns = [_alternation(short, flags=0), _alternation(long, flags=re.IGNORECASE)]
    return patterns, {skill.casefold(): skill for skill in skills}


def _alternation(skills: list[str], *, flags: int) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(skill) for skill in sorted(skills, key=len, reverse=True))
    return re.compile(rf"(?<![\w+#.])(?:{alternatives})(?![\w+#]|\.\w)", flags)


def extract_fields(text: str) -> ResumeFields:
    text = text[:MAX_CHARS]
    lines = [line.strip() for line in text.splitlines()]
    labels = {label.casefold(): value for label, value in LABEL.findall(text)}
    return ResumeFields(
        name=labels.get("name") or _name(lines),
        email=_first(EMAIL.findall(text)),
        phone=_phone(lines),
        location=next((labels[key] for key in ("location", "based in", "city", "address") if key in labels), None),
        links=[link.rstrip(".,;:") for link in LINK.findall(text)],
        skills=_skills(text, lines),
        summary=_summary(lines),
    )


class RulesExtractor:
    async def extract(self, text: str) -> ResumeFields:
        return await asyncio.to_thread(extract_fields, text)

    async def aclose(self) -> None:
        """Nothing to release; here for the common extractor interface."""


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def _name(lines: list[str]) -> str | None:
    """The first early line that reads like a person's name: 2–4 capitalised words, maybe
    followed by contact details, as résumé headers often are ("Jane Doe | jane@x.com")."""
    for line in [line for line in lines if line][:6]:
        words = _before_contact_details(line).replace(",", " ").split()
        if 2 <= len(words) <= 4 and all(NAME_WORD.match(word) for word in words):
            if not NOT_NAMES & {word.casefold() for word in words}:
                return " ".join(word.capitalize() if word.isupper() and len(word) > 2 else word for word in words)
    return None


def _before_contact_details(line: str) -> str:
    cuts = [match.start() for pattern in (EMAIL, PHONE, LINK) if (match := pattern.search(line))]
    return line[:min(cuts)].rstrip(" |•·,;:–—-") if cuts else line


def _phone(lines: list[str]) -> str | None:
    """A labelled number first; otherwise one that looks international or long enough."""
    candidates: list[tuple[bool, str]] = []
    for line in lines:
        for match in PHONE.finditer(YEARS.sub(" ", line)):
            number = match.group().strip()
            digits = sum(char.isdigit() for char in number)
            if 7 <= digits <= 15:
                labelled = bool(PHONE_LABEL.search(line))
                if labelled or number.startswith("+") or digits >= 9:
                    candidates.append((labelled, number))
    candidates.sort(key=lambda candidate: not candidate[0])
    return candidates[0][1] if candidates else None


def _skills(text: str, lines: list[str]) -> list[str]:
    patterns, canonical = vocabulary()
    matches = sorted((match for pattern in patterns for match in pattern.finditer(text)), key=lambda m: m.start())
    found = [canonical[match.group().casefold()] for match in matches]
    for heading, rest, body in _sections(lines):
        if heading in SKILL_HEADINGS:
            for item in SKILL_SPLIT.split(" , ".join([rest, *body])):
                if 1 < len(item) <= 40 and not item.endswith(":"):
                    found.append(canonical.get(item.casefold(), item))
    return found


def _summary(lines: list[str]) -> str | None:
    for heading, rest, body in _sections(lines):
        if heading in SUMMARY_HEADINGS:
            summary = " ".join([rest, *body]).strip()
            if summary:
                return summary[:MAX_SUMMARY]
    return None


def _sections(lines: list[str]):
    """(heading, text after the heading on its line, following lines up to a blank or heading)."""
    for index, line in enumerate(lines):
        match = HEADING.match(line)
        if not match:
            continue
        body = []
        for following in lines[index + 1 :]:
            if not following or HEADING.match(following):
                break
            body.append(following)
        yield match.group(1).casefold(), match.group(2).strip(), body
