"""The rule-based extractor on the extraction corpus: per-field floors, and nothing from non-résumés.

The corpus's PDFs are made and read back the way the pipeline reads uploads (pdfium's text
layer; tesseract for the scans), so layout and OCR errors are part of what is measured.
The floors are what `python -m bench.extraction` measured (bench/RESULTS.md) less a margin
for tesseract versions; a change that makes any field worse on the corpus fails here.
"""

import pytest

from pipelines.documents.extract import extract_document
from pipelines.documents.extract.rules import RulesExtractor
from testkit.corpus import corpus_texts, load
from testkit.extraction_scores import FIELDS, Scores

pytestmark = pytest.mark.integration

MARGIN = 0.08
MEASURED = {  # field: (precision, recall), bench/RESULTS.md "Résumé field extraction"
    "name": (1.00, 1.00),
    "email": (0.96, 0.93),
    "phone": (1.00, 1.00),
    "location": (1.00, 1.00),
    "links": (1.00, 1.00),
    "skills": (0.97, 0.99),
    "summary": (1.00, 1.00),
}


@pytest.fixture(scope="module")
async def read_back():
    return await corpus_texts()


@pytest.fixture(scope="module")
async def scores(read_back):
    scores = Scores()
    extractor = RulesExtractor()
    for document, text in read_back:
        scores.add(document.expected, (await extract_document(extractor, text)).fields)
    return scores


def test_the_corpus_is_varied():
    documents = load()
    resumes = [document for document in documents if document.is_resume]
    assert len(documents) >= 30 and len(documents) - len(resumes) >= 10
    assert {document.layout for document in resumes} == {"plain", "header", "columns", "europass"}
    assert sum(bool(document.scan) for document in resumes) >= 5
    assert sum(bool(document.scan) for document in documents if not document.is_resume) >= 2


async def test_scans_are_read_by_ocr(read_back):
    for document, text in read_back:
        if document.scan:
            assert document.expected.email is None or document.expected.email.split("@")[0][:4] in text


@pytest.mark.parametrize("field", FIELDS)
async def test_each_field_keeps_its_precision_and_recall(scores, field):
    precision, recall = MEASURED[field]
    tally = scores.fields[field]
    assert tally.precision >= precision - MARGIN, tally
    assert tally.recall >= recall - MARGIN, tally


async def test_non_resumes_give_empty_fields(scores):
    assert scores.others >= 10
    assert scores.empty_on_others == scores.others
