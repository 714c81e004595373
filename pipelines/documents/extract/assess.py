"""How far to trust extracted fields: is the document a résumé, and is each value in its text?

Any extractor (rules or an LLM) answers as if every document were a résumé. This judges the
answer against the text, the same way for all of them:

- `resume`: 0..1, from what résumés have (their section headings, a name at the top, contact
  details, date ranges) against what other documents have (invoices' totals, letters' salutations,
  manuals', datasheets', minutes' and job ads' words). Below `RESUME_MIN`, every field is
  emptied: a name from a letter or a phone from a datasheet is nonsense, not a weak answer.
- per field: `resume` times how well the value is borne out by the text (it appears in it,
  an email or phone is well-formed and valid, a name reads like one). A value below
  `FIELD_MIN` is dropped; list items that do not appear in the text are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.documents.extract.names import looks_like_name
from pipelines.documents.extract.phones import find_phones
from pipelines.documents.extract.rules import CONTACT_LINES, EMAIL, MAX_CHARS, sections, tidy_lines
from pipelines.documents.extract.schema import ResumeFields

AT_SPACES = re.compile(r" ?@ ?")
"""OCR's spaces around an address's "@", which the rules take out."""
RESUME_MIN = 0.5
FIELD_MIN = 0.4
TITLE = re.compile(r"^\s*(?:curriculum vitae|résumé|resume|cv)\s*$", re.IGNORECASE | re.MULTILINE)
DATE_RANGE = re.compile(r"\b(?:19|20)\d\d\s*[-–]\s*(?:(?:19|20)\d\d|present|now|today)\b", re.IGNORECASE)
NOT_RESUME = re.compile(
    r"\b(?:invoice|subtotal|total due|amount due|vat|iban|payment terms|bill to|dear|sincerely|kind regards|yours faithfully|"
    r"minutes|agenda|attendees|action items|user manual|operating instructions|datasheet|table of contents|"
    r"abstract|keywords|introduction|for immediate release|media contact|press release|requirements|benefits|"
    r"we are looking for|apply at|crash report|stack dump|registers|snmp|oids?|warranty|chapter|release notes|"
    r"agreement|landlord|tenant|account statement|account number|sort code)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Extraction:
    fields: ResumeFields
    """The fields worth trusting (the others emptied)."""
    confidence: dict[str, float | None]
    """Per field, 0..1, for the value extracted (`None`: nothing was extracted)."""
    resume: float
    """How much the document reads like a résumé, 0..1."""

    def result(self) -> dict:
        return {
            "fields": self.fields.model_dump(),
            "field_confidence": self.confidence,
            "resume_confidence": self.resume,
        }


def assess(text: str, fields: ResumeFields) -> Extraction:
    text = text[:MAX_CHARS]  # what the rules read; an LLM reads less
    resume = resume_likelihood(text)
    flat = _flat(text)
    support = {
        "name": _name_support(fields.name, flat),
        "email": _email_support(fields.email, flat),
        "phone": _phone_support(fields.phone, text),
        "location": 0.8 if fields.location and _flat(fields.location) in flat else 0.3,
        "summary": 0.8 if fields.summary and _flat(fields.summary)[:200] in flat else 0.4,
    }
    kept: dict[str, object] = {}
    confidence: dict[str, float | None] = {}
    for name, value in fields.model_dump().items():
        if isinstance(value, list):
            value = [item for item in value if _flat(item) in flat]
            score = round(0.9 * resume, 2) if value else None
        else:
            score = round(support[name] * resume, 2) if value else None
        trusted = resume >= RESUME_MIN and score is not None and score >= FIELD_MIN
        kept[name] = value if trusted else ([] if isinstance(value, list) else None)
        confidence[name] = score
    return Extraction(ResumeFields.model_validate(kept), confidence, round(resume, 2))


def resume_likelihood(text: str) -> float:
    lines = tidy_lines(text)
    headings = {heading for heading, _, _ in sections(lines)}
    score = 0.25 * min(len(headings), 3)
    score += 0.5 if TITLE.search(text) else 0.0
    score += 0.15 if EMAIL.search(text) or any(find_phones(line) for line in lines[:CONTACT_LINES]) else 0.0
    score += 0.1 if DATE_RANGE.search(text) else 0.0
    score += 0.15 if any(looks_like_name(line) for line in [line for line in lines if line][:3]) else 0.0
    score -= 0.25 * min(len({match.casefold() for match in NOT_RESUME.findall(text)}), 4)
    return max(0.0, min(1.0, score))


def _flat(text: str) -> str:
    """Casefolded, one space between words, semicolons read as commas (as OCR confuses them):
    what "appears in the text" compares."""
    return " ".join(text.casefold().replace(";", ",").split())


def _email_support(email: str | None, flat: str) -> float:
    if not email:
        return 0.0
    well_formed = EMAIL.fullmatch(email) and " " not in email
    return 1.0 if well_formed and email.casefold() in AT_SPACES.sub("@", flat) else 0.3


def _name_support(name: str | None, flat: str) -> float:
    if not name:
        return 0.0
    if _flat(name) not in flat:
        return 0.3
    return 0.9 if looks_like_name(name) else 0.5


def _phone_support(phone: str | None, text: str) -> float:
    if not phone:
        return 0.0
    if phone not in text or not find_phones(phone, contact_line=True):
        return 0.3
    return 1.0 if phone.startswith(("+", "00")) else 0.8
