import asyncio
from pathlib import Path

import psutil
import pytest
from PIL import Image

from pipelines.documents import pages
from pipelines.documents.forked import ForkServer
from pipelines.documents.pages import PageLimits, PageReaders
from service.errors import PermanentError, TransientError
from service.storage.sniffing import SNIFF_BYTES, sniff_document
from testkit.documents import (
    image_bytes,
    mixed_pdf,
    png_claiming_size,
    scanned_pdf,
    text_image,
    text_pdf,
)
from testkit.service import until

pytestmark = pytest.mark.integration

RESUME = "Jane Doe\njane.doe@example.com\nSenior Python engineer, PostgreSQL and Kubernetes."


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def read(readers: PageReaders, tmp_path: Path, name: str, data: bytes, **limits):
    workdir = tmp_path / "pages"
    workdir.mkdir(exist_ok=True)
    return await readers.read(write(tmp_path, name, data), workdir, PageLimits(**limits))


async def read_error(readers: PageReaders, tmp_path: Path, name: str, data: bytes, **limits) -> PermanentError:
    with pytest.raises(PermanentError) as caught:
        await read(readers, tmp_path, name, data, **limits)
    return caught.value


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (text_pdf("x"), "application/pdf"),
        (b"\r\n\x00%PDF-1.7\n", "application/pdf"),
        (image_bytes(text_image("x"), format="PNG"), "image/png"),
        (image_bytes(text_image("x"), format="JPEG"), "image/jpeg"),
        (image_bytes(text_image("x"), format="TIFF"), "image/tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "image/tiff"),
        (b"II+\x00\x08\x00\x00\x00", "image/tiff"),
        (b"\xef\xbb\xbf\n%PDF-1.4\n", "application/pdf"),
        (b"<html><body>%PDF-</body>", None),
        (b"PK\x03\x04 a zip", None),
        (b"", None),
    ],
)
def test_sniff_document_judges_the_bytes(data, mime):
    assert sniff_document(data[:SNIFF_BYTES]) == mime


async def test_text_pdf_pages_keep_their_text_layer_and_need_no_ocr(tmp_path, page_readers):
    document = await read(page_readers, tmp_path, "cv.pdf", text_pdf(RESUME, "Second page with enough words on it"))
    assert document.mime == "application/pdf"
    assert [page.number for page in document.pages] == [1, 2]
    assert "jane.doe@example.com" in document.pages[0].text
    assert "Second page" in document.pages[1].text
    assert document.needing_ocr == []


async def test_scanned_pdf_pages_are_rendered_for_ocr(tmp_path, page_readers):
    document = await read(page_readers, tmp_path, "scan.pdf", scanned_pdf("Invoice 4711"), dpi=150)
    [page] = document.needing_ocr
    with Image.open(page.image) as image:
        assert image.format == "PNG"
        assert image.width > 1000  # an A-size page at 150 dpi, not a thumbnail


async def test_without_rendering_pages_needing_ocr_are_only_marked(tmp_path, page_readers):
    document = await read(page_readers, tmp_path, "mixed.pdf", mixed_pdf(RESUME, "Scanned page"), render=False)
    assert [page.number for page in document.needing_ocr] == [2]
    assert [page.image for page in document.pages] == [None, None]
    assert not list((tmp_path / "pages").iterdir())


async def test_only_pages_without_text_are_rendered(tmp_path, page_readers):
    document = await read(page_readers, tmp_path, "mixed.pdf", mixed_pdf(RESUME, "Scanned page"), dpi=100)
    assert [page.image is None for page in document.pages] == [True, False]


async def test_rendering_stays_within_the_pixel_budget(tmp_path, page_readers):
    document = await read(page_readers, tmp_path, "scan.pdf", scanned_pdf("Big"), dpi=300, max_pixels=500_000)
    with Image.open(document.pages[0].image) as image:
        assert image.width * image.height <= 500_000


@pytest.mark.parametrize("format", ["PNG", "JPEG"])
async def test_images_are_one_page_to_ocr(tmp_path, page_readers, format):
    document = await read(page_readers, tmp_path, f"scan.{format}", image_bytes(text_image("Hello"), format=format))
    assert document.mime == f"image/{format.lower()}"
    assert len(document.needing_ocr) == 1


async def test_multi_page_tiff_is_one_page_per_frame(tmp_path, page_readers):
    frames = [text_image(word, size=(300, 100)) for word in ("one", "two", "three")]
    document = await read(page_readers, tmp_path, "scan.tiff", image_bytes(*frames, format="TIFF"))
    assert document.mime == "image/tiff"
    assert [page.number for page in document.needing_ocr] == [1, 2, 3]
    assert len({page.image for page in document.pages}) == 3


async def test_password_protected_pdf_is_refused(tmp_path, page_readers):
    error = await read_error(page_readers, tmp_path, "locked.pdf", text_pdf(RESUME, user_password="open sesame"))
    assert error.type == "encrypted_pdf"


async def test_pdf_encrypted_without_a_user_password_is_read(tmp_path, page_readers):
    document = await read(page_readers, tmp_path, "owner-only.pdf", text_pdf(RESUME, user_password=""))
    assert "Jane Doe" in document.pages[0].text


@pytest.mark.parametrize("cut", [0.5, 0.97])
async def test_truncated_pdf_is_corrupt(tmp_path, page_readers, cut):
    data = text_pdf(RESUME)
    error = await read_error(page_readers, tmp_path, "cut.pdf", data[: int(len(data) * cut)])
    assert error.type == "corrupt_pdf"


async def test_garbage_after_a_pdf_header_is_corrupt(tmp_path, page_readers):
    error = await read_error(page_readers, tmp_path, "fake.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8)
    assert error.type == "corrupt_pdf"


async def test_unknown_bytes_are_unsupported(tmp_path, page_readers):
    error = await read_error(page_readers, tmp_path, "notes.pdf", b"just some text, whatever the name says")
    assert error.type == "unsupported_document"


async def test_truncated_image_is_corrupt(tmp_path, page_readers):
    data = image_bytes(text_image("Hello"), format="PNG")
    error = await read_error(page_readers, tmp_path, "cut.png", data[: len(data) // 2])
    assert error.type == "corrupt_image"


async def test_decompression_bomb_is_refused_before_decoding(tmp_path, page_readers):
    error = await read_error(page_readers, tmp_path, "bomb.png", png_claiming_size(100_000, 100_000))
    assert error.type == "image_too_large"


@pytest.mark.parametrize("side", [1100, 2000])  # Pillow warns past the limit, errors past twice it
async def test_image_over_the_pixel_limit_is_refused(tmp_path, page_readers, side):
    data = image_bytes(Image.new("L", (side, side), 255), format="PNG")
    error = await read_error(page_readers, tmp_path, "big.png", data, max_pixels=1_000_000)
    assert error.type == "image_too_large"


async def test_a_later_tiff_frame_over_the_limit_is_refused(tmp_path, page_readers):
    frames = [Image.new("L", (100, 100), 255), Image.new("L", (1100, 1000), 255)]
    error = await read_error(
        page_readers, tmp_path, "sneaky.tiff", image_bytes(*frames, format="TIFF"), max_pixels=1_000_000
    )
    assert error.type == "image_too_large"
    assert "page 2" in error.message


async def test_too_many_pdf_pages(tmp_path, page_readers):
    error = await read_error(page_readers, tmp_path, "long.pdf", text_pdf("a", "b", "c"), max_pages=2)
    assert error.type == "too_many_pages"
    assert "3 pages" in error.message


async def test_too_many_tiff_frames(tmp_path, page_readers):
    frames = [Image.new("L", (50, 50), 255)] * 3
    error = await read_error(page_readers, tmp_path, "long.tiff", image_bytes(*frames, format="TIFF"), max_pages=2)
    assert error.type == "too_many_pages"


async def test_ocr_budget_counts_every_frame_before_any_is_decoded(tmp_path, page_readers):
    frames = image_bytes(*[Image.new("L", (1000, 1000), 255)] * 3, format="TIFF")
    error = await read_error(page_readers, tmp_path, "frames.tiff", frames, max_ocr_pixels=2_500_000)
    assert error.type == "ocr_budget_exceeded"
    assert "3 pages to OCR come to 3,000,000 pixels" in error.message
    assert not list((tmp_path / "pages").iterdir())
    document = await read(page_readers, tmp_path, "frames.tiff", frames, max_ocr_pixels=2_500_000, render=False)
    assert len(document.needing_ocr) == 3  # an OCR service reading the original costs this host nothing


async def test_ocr_budget_counts_only_pages_to_render(tmp_path, page_readers):
    """Two A4 pages at 100 dpi are ~1.9 million pixels, but only the scanned one is OCR'd."""
    pdf = mixed_pdf(RESUME, "Scanned page")
    document = await read(page_readers, tmp_path, "mixed.pdf", pdf, dpi=100, max_ocr_pixels=1_500_000)
    assert [page.image is None for page in document.pages] == [True, False]
    error = await read_error(page_readers, tmp_path, "mixed.pdf", pdf, dpi=150, max_ocr_pixels=1_500_000)
    assert error.type == "ocr_budget_exceeded"


async def test_text_is_kept_within_the_page_and_document_limits(tmp_path, page_readers):
    pdf = text_pdf(RESUME, "Second page with enough words on it", "Third page, never read")
    document = await read(page_readers, tmp_path, "cv.pdf", pdf, max_page_chars=20, max_text_chars=30)
    assert [len(page.text) for page in document.pages] == [20, 10, 0]
    assert document.pages[0].text == RESUME[:20]
    assert [page.truncated for page in document.pages] == [True, True, True]


async def test_reading_is_bounded_in_time(tmp_path, page_readers):
    error = await read_error(page_readers, tmp_path, "cv.pdf", text_pdf(RESUME), timeout=0.001)
    assert error.type == "document_too_complex"


async def test_reading_is_bounded_in_memory(tmp_path, page_readers):
    limits = {"dpi": 2400, "max_pixels": 10**9, "memory_bytes": 32 * 1024 * 1024}  # the render needs ~90 MiB
    error = await read_error(page_readers, tmp_path, "scan.pdf", scanned_pdf("Huge"), **limits)
    assert error.type == "document_too_complex"


def reader_pids() -> set[int]:
    """The page readers alive now: the fork server's children."""
    return {
        reader.pid
        for server in psutil.Process().children()
        if "pipelines.documents.fork_server" in server.cmdline()
        for reader in server.children()
    }


@pytest.fixture
async def one_reader():
    readers = PageReaders(concurrency=1, reads_per_reader=3)
    yield readers
    await readers.aclose()


async def test_a_reader_serves_document_after_document(tmp_path, one_reader):
    pids = []
    for _ in range(3):
        document = await read(one_reader, tmp_path, "cv.pdf", text_pdf(RESUME))
        assert "Jane Doe" in document.pages[0].text
        pids.append(reader_pids())
    assert pids[0] == pids[1] and len(pids[0]) == 1
    assert pids[2] == set()  # its third read was its last: it was retired, not kept


async def test_a_reader_that_overran_is_replaced(tmp_path, one_reader):
    await read(one_reader, tmp_path, "cv.pdf", text_pdf(RESUME))
    [first] = reader_pids()
    error = await read_error(one_reader, tmp_path, "cv.pdf", text_pdf(RESUME), timeout=0.001)
    assert error.type == "document_too_complex"
    assert not psutil.pid_exists(first)
    document = await read(one_reader, tmp_path, "cv.pdf", text_pdf(RESUME))
    assert "Jane Doe" in document.pages[0].text


async def test_a_reader_that_died_idle_is_replaced(tmp_path, one_reader):
    await read(one_reader, tmp_path, "cv.pdf", text_pdf(RESUME))
    [first] = reader_pids()
    psutil.Process(first).kill()
    document = await read(one_reader, tmp_path, "cv.pdf", text_pdf(RESUME))
    assert "Jane Doe" in document.pages[0].text
    assert first not in reader_pids()


async def until_reading(readers: PageReaders) -> int:
    """The pid of the reader once one exists (the read it was started for is under way)."""
    [reader] = await until(reader_pids, timeout=30)
    return reader


def huge_read(readers: PageReaders, tmp_path: Path) -> asyncio.Task:
    """A read that takes a while: a scan rendered at 2400 dpi."""
    return asyncio.create_task(read(readers, tmp_path, "scan.pdf", scanned_pdf("Huge"), dpi=2400, max_pixels=10**9))


async def test_a_reader_killed_mid_read_fails_only_that_document(tmp_path, one_reader):
    huge = huge_read(one_reader, tmp_path)
    reader = await until_reading(one_reader)
    await asyncio.sleep(0.2)  # well into the read: the kill lands mid-render, not before it
    assert not huge.done()
    psutil.Process(reader).kill()
    with pytest.raises(PermanentError) as caught:
        await huge
    assert caught.value.type == "unreadable_document"
    assert "killed by signal 9" in caught.value.message
    document = await read(one_reader, tmp_path, "cv.pdf", text_pdf(RESUME))
    assert "Jane Doe" in document.pages[0].text


async def test_a_kept_reader_that_dies_is_no_fault_of_the_next_document(tmp_path, one_reader):
    """It may have died idle just before the document reached it: a new reader reads it."""
    await read(one_reader, tmp_path, "cv.pdf", text_pdf(RESUME))
    [kept] = reader_pids()
    huge = huge_read(one_reader, tmp_path)
    await asyncio.sleep(0.2)  # the document is on its way to the kept reader, or just reached it
    psutil.Process(kept).kill()
    document = await huge
    assert document.needing_ocr
    assert kept not in reader_pids()


async def test_a_cancelled_read_kills_its_reader(tmp_path, one_reader):
    huge = huge_read(one_reader, tmp_path)
    reader = await until_reading(one_reader)
    await asyncio.sleep(0.2)
    huge.cancel()
    with pytest.raises(asyncio.CancelledError):
        await huge
    assert not psutil.pid_exists(reader)
    assert reader_pids() == set()


async def test_each_read_gets_its_own_memory_limit(tmp_path, one_reader):
    """A small budget for one document does not stay with the reader for the next."""
    await read(one_reader, tmp_path, "cv.pdf", text_pdf(RESUME), memory_bytes=16 * 1024 * 1024)
    [reader] = reader_pids()
    document = await read(one_reader, tmp_path, "scan.pdf", scanned_pdf("Big"), dpi=600, max_pixels=10**9)
    assert document.needing_ocr
    assert reader_pids() == {reader}


async def test_a_reader_answering_more_than_the_limit_is_killed_not_waited_for(tmp_path, monkeypatch):
    monkeypatch.setattr(pages, "REPLY_LIMIT", 100)  # the socket is made with the limit on first use
    readers = PageReaders(concurrency=1)
    try:
        async with asyncio.timeout(30):
            error = await read_error(readers, tmp_path, "cv.pdf", text_pdf(RESUME))
        assert error.type == "unreadable_document"
        assert "answered more than" in error.message
        assert reader_pids() == set()
    finally:
        await readers.aclose()


async def test_a_reader_that_dies_before_it_connects_is_a_transient_failure(tmp_path):
    readers = PageReaders(concurrency=1)
    readers._server = ForkServer("time:sleep")  # called with the socket's path: a TypeError, exit 1
    try:
        async with asyncio.timeout(10):  # a third of READER_START_TIMEOUT: its exit is noticed
            with pytest.raises(TransientError) as caught:
                await read(readers, tmp_path, "cv.pdf", text_pdf(RESUME))
        assert caught.value.type == "reader_unavailable"
    finally:
        await readers.aclose()


async def test_a_reader_left_holding_much_memory_is_replaced(tmp_path):
    readers = PageReaders(concurrency=1, max_resident_bytes=1024)  # any reader holds more
    try:
        document = await read(readers, tmp_path, "cv.pdf", text_pdf(RESUME))
        assert "Jane Doe" in document.pages[0].text
        assert reader_pids() == set()
    finally:
        await readers.aclose()
