"""The judgement every extractor's answer goes through: résumé or not, and each field's confidence."""

import time

import pytest

from pipelines.documents.extract import ResumeFields, extract_document
from pipelines.documents.extract.assess import assess
from pipelines.documents.extract.openai import OpenAIExtractor
from pipelines.documents.extract.rules import RulesExtractor, extract_fields
from testkit.llm_servers import API_KEY

RESUME = """MICHAEL O'CONNOR
Denver; CO | +1 (720) 555-0104 | michael.oconnor@example.com

Summary
Data engineer who moves batch jobs to streaming.

Skills
Python (advanced), SQL, Kafka

Experience
Data Engineer, Example Outdoor Co. (2019 - present)
"""
LETTER = """Harbor Supplies
400 Pier Road, Boston, MA 02110
(617) 555-0112 | orders@harbor-example.com

Dear Mr. Thompson,

Thank you for your order. Skills: Python, Excel.

Sincerely,
Robert Hayes
"""
EMPTY = ResumeFields(name=None, email=None, phone=None, location=None, links=[], skills=[], summary=None)


def test_a_resume_keeps_its_fields_with_their_confidence():
    judged = assess(RESUME, extract_fields(RESUME))
    assert judged.resume == 1.0
    assert judged.fields.name == "Michael O'Connor"
    assert judged.fields.location == "Denver, CO"  # OCR's semicolon for a comma
    assert judged.fields.skills == ["Python", "SQL", "Kafka"]
    assert judged.confidence["email"] == 1.0 and judged.confidence["phone"] == 1.0
    assert 0.5 < judged.confidence["name"] < 1 and judged.confidence["links"] is None


def test_a_letter_gives_nothing_however_much_an_extractor_found():
    found = extract_fields(LETTER)
    assert found.email and found.phone and found.skills  # what the rules alone would have answered
    judged = assess(LETTER, found)
    assert judged.resume < 0.5
    assert judged.fields == EMPTY
    assert all(value is None or value < 0.4 for value in judged.confidence.values())


def test_values_the_text_does_not_bear_out_are_dropped():
    invented = extract_fields(RESUME).model_copy(
        update={"email": "someone.else@example.com", "skills": ["Python", "Haskell"], "phone": "0x1F 2A 33 44 55"}
    )
    judged = assess(RESUME, invented)
    assert judged.fields.email is None and judged.confidence["email"] < 0.4
    assert judged.fields.phone is None
    assert judged.fields.skills == ["Python"]


@pytest.mark.parametrize("text", [RESUME, LETTER])
async def test_llm_answers_are_judged_like_the_rules(llm_servers, text):
    llm = OpenAIExtractor(api_key=API_KEY, base_url=llm_servers.openai_base_url, model="m", backoff=0.01)
    try:
        assert await extract_document(llm, text) == await extract_document(RulesExtractor(), text)
    finally:
        await llm.aclose()


@pytest.mark.parametrize(
    "text",
    [
        "a" * 300_000,  # an address pattern without bounds tries every start: hours
        "a@" + "a" * 300_000,
        ("Skills: " + "a, " * 30 + "\n") * 5_000,  # every line a heading whose section runs on
        "+49 30 1234 5678 " * 12_000,
        ". " * 100_000 + "x",
        "Order number: " + "1 " * 100_000,
        "https://example.com/" + ")" * 100_000,
    ],
    ids=["letters", "at-sign", "headings", "phones", "debris", "digits", "brackets"],
)
def test_long_hostile_texts_are_judged_in_bounded_time(text):
    started = time.monotonic()
    assess(text, extract_fields(text))
    assert time.monotonic() - started < 5
