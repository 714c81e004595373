"""Whether a line reads like a person's name, and the name tidied: shared by the
embedded extractor (which looks for the name) and the assessment (which judges any
extractor's name)."""

from __future__ import annotations

import re

NAME_PARTICLES = {
    "van",
    "der",
    "den",
    "de",
    "von",
    "da",
    "del",
    "della",
    "di",
    "la",
    "le",
    "du",
    "dos",
    "das",
    "bin",
    "y",
}
CREDENTIALS = re.compile(r"^(?:[A-Z]{2,5}|Ph\.?D\.?|M\.?D\.?|Jr\.?|Sr\.?|I{2,3}|MSc|BSc|MBA|RN)$")
NOT_NAME_WORDS = {
    # what the first lines of résumés and other documents say that is not a name
    "curriculum",
    "vitae",
    "resume",
    "résumé",
    "cv",
    "page",
    "contact",
    "profile",
    "summary",
    "invoice",
    "manual",
    "user",
    "guide",
    "datasheet",
    "report",
    "minutes",
    "meeting",
    "notes",
    "letter",
    "dear",
    "release",
    "immediate",
    "for",
    "the",
    "and",
    "of",
    "to",
    "in",
    "on",
    "at",
    "with",
    "by",
    "an",
    "a",
    "my",
    "your",
    "our",
    "new",
    "from",
    "senior",
    "junior",
    "lead",
    "principal",
    "chief",
    "head",
    "engineer",
    "developer",
    "manager",
    "designer",
    "scientist",
    "analyst",
    "consultant",
    "director",
    "specialist",
    "assistant",
    "officer",
    "administrator",
    "architect",
    "nurse",
    "teacher",
    "accountant",
    "software",
    "data",
    "product",
    "project",
    "marketing",
    "sales",
    "full-stack",
    "frontend",
    "backend",
    "stack",
    "web",
    "research",
    "operating",
    "instructions",
    "department",
    "university",
    "company",
    "inc",
    "ltd",
    "gmbh",
    "llc",
    "corp",
    "information",
    "personal",
    "system",
    "service",
}


def looks_like_name(text: str) -> bool:
    """2–4 capitalised words (name particles aside) and nothing else: no sentence, no title, no digits."""
    words = text.split()
    if not 2 <= len(words) <= 5 or any(char.isdigit() for char in text) or text.rstrip().endswith((".", ":", "!", "?")):
        return False
    capitalised = 0
    for word in words:
        if word.casefold() in NOT_NAME_WORDS:
            return False
        if word in NAME_PARTICLES:
            continue
        if not (word[0].isupper() and all(char.isalpha() or char in "'’-." for char in word)):
            return False
        if word.endswith(".") and len(word) > 2:
            return False
        capitalised += 1
    return 2 <= capitalised <= 4 and words[0] not in NAME_PARTICLES


def capitalised(word: str) -> str:
    """ "O'CONNOR" → "O'Connor", "ANNE-MARIE" → "Anne-Marie"."""
    return re.sub(r"(^|['’-])(\w)", lambda match: match.group(1) + match.group(2).upper(), word.lower())


def without_credentials(text: str) -> str:
    name, *after = text.split(",")
    if all(CREDENTIALS.match(part.strip()) for part in after):
        return name.strip()
    return ""
