"""The embedded extractor: regular expressions, a phone library and a skills vocabulary.

No network, no model. It favours precision: a field it cannot find with some confidence stays
empty. Whether the document is a résumé at all, and how far to trust each field, is judged
afterwards for every extractor alike (`assess`).
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator

from pipelines.documents.extract.names import NOT_NAME_WORDS, capitalised, looks_like_name, without_credentials
from pipelines.documents.extract.phones import find_phones
from pipelines.documents.extract.schema import ResumeFields
from pipelines.documents.extract.skills import vocabulary

MAX_CHARS = 200_000
"""Text beyond this is ignored: a résumé's facts are at its start, and it bounds the work."""
CONTACT_LINES = 200
"""Lines searched for a phone number."""
HEADER_LINES = 15
"""Non-empty lines searched for the name and location (a sidebar may come before the name)."""

EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64} ?@ ?[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"
)
"""An address (parts bounded as RFC 5321 bounds them, which keeps the search linear on long
runs of letters); OCR may put a space on either side of the "@" (`email` takes it out)."""
DEBRIS = frozenset(".,:;'’\"`~|»«-")
"""What OCR scatters at the ends of lines, apart from the words ("Summary .", ". Samantha Lee :")."""
LINK = re.compile(
    r"(?:https?://|www\.)[^\s<>\"'|·]+|\b(?:linkedin\.com|github\.com|gitlab\.com)/[^\s<>\"'|·]+", re.IGNORECASE
)
LABEL = re.compile(
    r"^[ \t]*(name|location|address|based in|city|anschrift|adresse|wohnort)[ \t]*[:\-–][ \t]*(\S.*)$",
    re.IGNORECASE | re.MULTILINE,
)
LOCATION_LABELS = ("location", "based in", "city", "address", "anschrift", "adresse", "wohnort")
BRACKETS = {")": "(", "]": "[", "}": "{"}
"""Closing brackets, and what opens them: a link keeps the ones it opened ("…/Ada_(language)")."""
SEPARATORS = re.compile(r"\s*[|·•]\s*|\s{3,}")

SUMMARY_HEADINGS = (
    "summary",
    "professional summary",
    "career summary",
    "profile",
    "professional profile",
    "personal profile",
    "about me",
    "about",
    "objective",
    "career objective",
    "personal statement",
)
SKILL_HEADINGS = (
    "skills",
    "technical skills",
    "key skills",
    "core skills",
    "personal skills",
    "skills summary",
    "skills & tools",
    "skills and tools",
    "core competencies",
    "competencies",
    "tech stack",
    "technologies",
    "areas of expertise",
)
OTHER_HEADINGS = (
    "experience",
    "work experience",
    "professional experience",
    "employment",
    "employment history",
    "work history",
    "education",
    "education and training",
    "projects",
    "languages",
    "certifications",
    "interests",
    "references",
    "contact",
    "personal information",
    "publications",
    "awards",
    "volunteering",
    "hobbies",
)
HEADING = re.compile(
    rf"^\s*({'|'.join(sorted(map(re.escape, SUMMARY_HEADINGS + SKILL_HEADINGS + OTHER_HEADINGS), key=len, reverse=True))})"
    r"\s*(?::\s*(.*))?[.:;]?$",
    re.IGNORECASE,
)
"""A heading is the whole line, or the line up to a colon: "Summary of changes" is not one."""

MAX_SUMMARY = 600
MAX_SECTION_LINES = 60
"""A section runs at most this far (a résumé's are shorter): it bounds the work on long texts."""
MAX_SKILL_WORDS = 5
MAX_SKILLS = 200
QUALIFIER = re.compile(r"\s*\([^)]*\)\s*$")
"""A level after a skill: "Python (basic)", "German (native)"."""
SKILL_SPLIT = re.compile(r"\s*[,;|•·]\s*|\s+-\s+")


def extract_fields(text: str) -> ResumeFields:
    text = text[:MAX_CHARS]
    lines = tidy_lines(text)
    header = [line for line in lines if line][:HEADER_LINES]
    labels = {label.casefold(): value.strip() for label, value in LABEL.findall(text)}
    labelled_name = labels.get("name")
    name = labelled_name if labelled_name and looks_like_name(labelled_name) else _name(header)
    return ResumeFields(
        name=name,
        email=_first([email(found) for found in EMAIL.findall(text)]),
        phone=_phone(lines),
        location=next((labels[key] for key in LOCATION_LABELS if key in labels), None) or _location(header),
        links=[clean_link(link) for link in LINK.findall(text)],
        skills=_skills(text, lines, name),
        summary=_summary(lines),
    )


class RulesExtractor:
    async def extract(self, text: str) -> ResumeFields:
        return await asyncio.to_thread(extract_fields, text)

    async def aclose(self) -> None:
        """Nothing to release; here for the common extractor interface."""


def tidy_lines(text: str) -> list[str]:
    """`text`'s lines without surrounding spaces or the OCR debris standing apart at their ends."""
    return [_tidy(line) for line in text.splitlines()]


def _tidy(line: str) -> str:
    words = line.split()
    start, end = 0, len(words)
    while start < end and set(words[start]) <= DEBRIS:
        start += 1
    while end > start and set(words[end - 1]) <= DEBRIS:
        end -= 1
    if (start, end) == (0, len(words)):
        return line.strip()
    return " ".join(words[start:end])


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def email(found: str) -> str:
    return found.replace(" ", "")


def clean_link(link: str) -> str:
    """`link` without the punctuation of the sentence around it ("see https://x.io/a)." → …/a)."""
    unmatched = {close: link.count(close) - link.count(opening) for close, opening in BRACKETS.items()}
    end = len(link)
    while end:
        last = link[end - 1]
        if last in ".,;:!?'\"":
            end -= 1
        elif unmatched.get(last, 0) > 0:
            unmatched[last] -= 1
            end -= 1
        else:
            break
    return link[:end]


# -- the name and the place ------------------------------------------------------------------


def _name(header: list[str]) -> str | None:
    """The first header line that reads like a person's name, perhaps followed by contact
    details ("Jane Doe | jane@x.com") or credentials ("Maria Gonzalez, RN")."""
    for line in header:
        if HEADING.match(line):
            continue
        candidate = without_credentials(_before_contact_details(line))
        if candidate and looks_like_name(candidate) and candidate.casefold() not in vocabulary().canonical:
            return " ".join(
                capitalised(word) if word.isupper() and len(word) > 2 else word for word in candidate.split()
            )
    return None


def _before_contact_details(line: str) -> str:
    cuts = [match.start() for pattern in (EMAIL, LINK) if (match := pattern.search(line))]
    cuts += [line.find(phone.number) for phone in find_phones(line)]
    if separator := SEPARATORS.search(line):
        cuts.append(separator.start())
    return line[: min(cuts)].rstrip(" |•·,;:–—-") if cuts else line


REGION_CODE = re.compile(r" [A-Z]{2,3}$")
"""A state or province after a city: "Sydney NSW", "Toronto, ON"."""
PLACE = re.compile(
    r"^[A-ZÀ-Þ][\w'’.-]*(?: [A-ZÀ-Þ][\w'’.-]*){0,2}(?:,? [A-Z]{2,3}|, [A-ZÀ-Þ][\w'’.-]*(?: [A-ZÀ-Þ][\w'’.-]*){0,2})?$"
)


def _location(header: list[str]) -> str | None:
    """ "City, Region" alone on a header line, or any place-like part of a contact line."""
    for line in header:
        parts = SEPARATORS.split(line)
        contact = len(parts) > 1 and any(EMAIL.search(part) or find_phones(part) for part in parts)
        for part in parts:
            part = part.replace("; ", ", ")  # OCR often reads a comma as a semicolon
            if "," in part and looks_like_name(without_credentials(part)):  # "Maria Gonzalez, RN"
                continue
            words = [word.strip(",") for word in part.split()]
            if not PLACE.match(part) or any(word.casefold() in NOT_NAME_WORDS and not word.isupper() for word in words):
                continue
            if "," in part or REGION_CODE.search(part) or (contact and not looks_like_name(part)):
                return part
    return None


# -- the phone, the skills and the summary ----------------------------------------------------


def _phone(lines: list[str]) -> str | None:
    """A labelled number first, then an international one, then any other valid one, from the
    first `CONTACT_LINES` lines (where résumés give theirs; it bounds the work on long texts)."""
    phones = []
    for line in itertools.islice(lines, CONTACT_LINES):
        for phone in find_phones(line, contact_line=bool(EMAIL.search(line) or LINK.search(line))):
            if phone.labelled:
                return phone.number
            phones.append(phone)
    phones.sort(key=lambda phone: not phone.international)
    return phones[0].number if phones else None


def _skills(text: str, lines: list[str], name: str | None) -> list[str]:
    words = vocabulary()
    found = words.find(text)[:MAX_SKILLS]
    for heading, rest, body in sections(lines):
        if heading in SKILL_HEADINGS:
            folded = [line.casefold() for line in body]
            if name and name.casefold() in folded:  # a sidebar's list, then the main column
                body = body[: folded.index(name.casefold())]
            for line in _unwrapped([rest, *body]):
                for item in SKILL_SPLIT.split(_without_label(line)):
                    item = QUALIFIER.sub("", item).strip(" .-–•·*:;")
                    if item and len(item) <= 40 and len(item.split()) <= MAX_SKILL_WORDS:
                        found.append(words.spelling(item))
                        if len(found) >= MAX_SKILLS:
                            return found
    return found


def _unwrapped(lines: list[str]) -> list[str]:
    """List lines with the ones a narrow column wrapped joined again ("GitLab" + "CI, Bash")."""
    joined: list[str] = []
    for line in lines:
        if joined and SKILL_SPLIT.search(joined[-1]) and not re.search(r"[,;|•·]$", joined[-1]):
            joined[-1] += " " + line
        else:
            joined.append(line)
    return joined


def _without_label(line: str) -> str:
    """ "Languages: Python, Go" → "Python, Go" (a sub-heading inside a skills section)."""
    label, colon, items = line.partition(":")
    return items if colon and len(label.split()) <= 3 else line


def _summary(lines: list[str]) -> str | None:
    for heading, rest, body in sections(lines):
        if heading in SUMMARY_HEADINGS:
            summary = " ".join([rest, *body]).strip()
            if summary:
                return summary[:MAX_SUMMARY]
    return None


def sections(lines: list[str]) -> Iterator[tuple[str, str, list[str]]]:
    """(heading, text after its colon, the lines up to a blank line or the next heading)."""
    index = 0
    while index < len(lines):
        match = HEADING.match(lines[index])
        index += 1
        if not match:
            continue
        body = []
        for following in itertools.islice(lines, index, index + MAX_SECTION_LINES):
            if not following or _ends_section(following):
                break
            body.append(following)
        index += len(body)  # a line belongs to one section at most: the work stays linear
        yield match.group(1).casefold(), (match.group(2) or "").strip(), body


def _ends_section(line: str) -> bool:
    """A heading of its own or a new summary or skills section (not "Languages: Python, Go"
    inside a list), or a short line in capitals."""
    match = HEADING.match(line)
    if match:
        return not match.group(2) or match.group(1).casefold() in SUMMARY_HEADINGS + SKILL_HEADINGS
    letters = [char for char in line if char.isalpha()]
    return len(line.split()) <= 4 and len(letters) >= 6 and all(char.isupper() for char in letters)
