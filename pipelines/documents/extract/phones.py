"""Phone numbers in free text, told apart from the other numbers documents are full of.

A run of digits becomes a phone number only if libphonenumber (`phonenumbers`) finds it a
valid number: international ones (`+…`, `00…`) on their own, national ones in the formats
of a few countries, and only on a labelled or contact line unless it has North America's
`(206) 555-0142` shape. Before that, the shapes that are never phone numbers are refused:
dates, hex dumps and addresses (`0x…`, `4f 2a 00 13`), OIDs and versions (`1.3.6.1.2.1`),
and numbers labelled as an order, invoice, serial or other id.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

CANDIDATE = re.compile(r"(?<![\w+./:#-])(?:\+|00)?\(?\d[\d ().-]{5,20}\d(?![\w/:-]|\.\d)")
DATE = re.compile(
    r"\b(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})\b(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?"
    r"|\b(?:19|20)\d\d\s*[-–]\s*(?:19|20)\d\d\b"
)
HEX = re.compile(
    r"\b0x[0-9a-f]+(?:[ _][0-9a-f]{4})*\b"  # 0x0800 0000
    r"|\b[0-9a-f]{2}(?::[0-9a-f]{2}){3,}\b|\b[0-9a-f]{2}(?: [0-9a-f]{2}){6,}\b"  # 00:1A:2B:3C, 4f 2a 00 13 88 91 22
    r"|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{2,}\b",  # 1c2b4e10
    re.IGNORECASE,
)
DOTTED = re.compile(r"^\d{1,4}(?:\.\d{1,4}){3,}$")
"""OIDs, versions and addresses: four or more dot-separated groups (phones have at most four, and longer ones)."""
LABEL = re.compile(r"\b(?:phone|tel|telephone|mobile|mob|cell|call|hotline|whatsapp)\b|☎", re.IGNORECASE)
ID_LABEL = re.compile(
    r"\b(?:no|nr|number|order|invoice|customer|account|serial|tracking|licen[cs]e|id|ref|reference|iban|vat|"
    r"fax|pid|build|part|isbn|ticket|case)\b[.:#\s]*$",
    re.IGNORECASE,
)
MAX_CANDIDATES = 20
"""Numbers looked at per line: a line with more is a table, and it bounds the work."""
LABEL_REACH = 30
"""How far before a number an id label is looked for ("Order number: 558-221-9043")."""
NATIONAL_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IE", "IN", "AU", "CA", "BR", "SE", "PL", "CH", "AT")
"""Countries whose national formats a number without its country code is tried in."""
NANP_SHAPE = re.compile(r"^(?:\(\d{3}\)\s?|\d{3}[-.\s])\d{3}[-.\s]\d{4}$")


@dataclass(frozen=True)
class Phone:
    number: str
    """As written in the text."""
    labelled: bool
    """Its line says it is a phone (Tel:, Mobile:, Phone…)."""
    international: bool


def find_phones(line: str, *, contact_line: bool = False) -> list[Phone]:
    """The phone numbers on `line`; `contact_line`: the line also holds an email or a link."""
    labelled = bool(LABEL.search(line))
    masked = _mask(line)
    found = []
    for match in itertools.islice(CANDIDATE.finditer(masked), MAX_CANDIDATES):
        number = match.group()
        if ID_LABEL.search(masked[max(0, match.start() - LABEL_REACH) : match.start()]) or not _plausible(number):
            continue
        international = number.startswith(("+", "00"))
        if _valid(number, international=international, trusted=labelled or contact_line):
            found.append(Phone(number, labelled, international))
    return found


def _mask(line: str) -> str:
    """`line` with dates, year ranges and hex blanked out (same length, so positions hold)."""
    for pattern in (DATE, HEX):
        line = pattern.sub(lambda match: " " * len(match.group()), line)
    return line


def _plausible(number: str) -> bool:
    digits = sum(char.isdigit() for char in number)
    if not 7 <= digits <= 15 or DOTTED.match(number):
        return False
    if number.startswith("+"):
        return True
    groups = re.split(r"[ ().-]+", number)
    return not (len(groups) >= 6 and all(len(group) <= 2 for group in groups))  # "00 13 88 91 22 45"


def _valid(number: str, *, international: bool, trusted: bool) -> bool:
    if international:
        return _parses_valid(number, None)
    if NANP_SHAPE.match(number) and _parses_valid(number, "US"):
        return True
    return trusted and any(_parses_valid(number, region) for region in NATIONAL_REGIONS)


def _parses_valid(number: str, region: str | None) -> bool:
    import phonenumbers  # 0.3 s to import: paid by the first document, not by every process that imports this

    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, region))
    except phonenumbers.NumberParseException:
        return False
