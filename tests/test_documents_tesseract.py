import pytest

from pipelines.documents.ocr.tesseract import TesseractOCR
from pipelines.documents.pages import PageLimits
from service.errors import PermanentError
from testkit.documents import scanned_pdf, text_image

pytestmark = pytest.mark.integration


def save(tmp_path, name, text):
    path = tmp_path / name
    text_image(text, size=(700, 130)).save(path)
    return str(path)


async def test_tesseract_reads_pages_in_order(tmp_path):
    images = [save(tmp_path, "1.png", "Kubernetes"), save(tmp_path, "2.png", "Invoice 4711")]
    result = await TesseractOCR(concurrency=2).recognize(images)
    assert result.pages == ["Kubernetes", "Invoice 4711"]
    assert result.warnings == []


async def test_a_scanned_pdf_page_is_read_end_to_end(tmp_path, page_readers):
    source = tmp_path / "scan.pdf"
    source.write_bytes(scanned_pdf("Quarterly Report"))
    document = await page_readers.read(source, tmp_path, PageLimits(dpi=150))
    result = await TesseractOCR().recognize([page.image for page in document.needing_ocr])
    assert "Quarterly Report" in result.pages[0]


async def test_an_unreadable_page_fails_the_set(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(PermanentError) as caught:
        await TesseractOCR().recognize([save(tmp_path, "ok.png", "fine"), str(broken)])
    assert caught.value.type == "ocr_failed"


async def test_a_slow_page_times_out(tmp_path):
    with pytest.raises(PermanentError) as caught:
        await TesseractOCR(page_timeout=0.001).recognize([save(tmp_path, "1.png", "slow")])
    assert caught.value.type == "ocr_failed"
    assert "longer than" in caught.value.message


async def test_missing_binary_fails_at_once_saying_how_to_install_it(tmp_path):
    with pytest.raises(PermanentError) as caught:
        await TesseractOCR(binary="tesseract-not-installed").recognize([save(tmp_path, "1.png", "x")])
    assert caught.value.type == "missing_tool"
    assert "apt-get install tesseract-ocr" in caught.value.message
