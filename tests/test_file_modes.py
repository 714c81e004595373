"""Tenants' files on disk are the service's alone: 0600 files in 0700 directories, whatever
the umask (service/storage/file_modes.py), so no other account on the host can read them."""

import os
import stat
from pathlib import Path

import pytest

from pipelines.documents.pages import PageLimits
from pipelines.documents.pipeline import DOCUMENT_PIPELINE
from service.cli.embedded import EmbeddedServers
from testkit.documents import scanned_pdf, text_pdf
from testkit.files import multipart_file
from testkit.service import ApiServer, client, running_worker, wait_for_job


@pytest.fixture(autouse=True)
def usual_umask():
    """022, the usual default: files made without an explicit mode would be 0644 in 0755."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Permission bits of every directory (`root` included) and every file under `root`."""
    directories, files = {".": stat.S_IMODE(root.stat().st_mode)}, {}
    for path in root.rglob("*"):
        (directories if path.is_dir() else files)[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return directories, files


async def test_uploads_and_results_in_file_storage_are_private(settings, tenant):
    async with ApiServer(settings) as api, client(api.url, tenant[1]) as http:
        response = await http.post("/v1/documents", files=multipart_file(text_pdf("Jane Doe, jane@example.com")))
        assert response.status_code == 202, response.text
        async with running_worker(settings, [DOCUMENT_PIPELINE]):
            job = await wait_for_job(http, response.json()["id"], timeout=60)
    assert job["status"] == "succeeded", job
    directories, files = modes(Path(settings.storage_url.removeprefix("file://")))
    assert {Path(name).name for name in files} == {"original", "text.txt"}
    assert set(files.values()) == {0o600}, files
    assert set(directories.values()) == {0o700}, directories


async def test_rendered_pages_are_private(tmp_path, page_readers):
    (tmp_path / "original.pdf").write_bytes(scanned_pdf("Jane Doe"))
    document = await page_readers.read(tmp_path / "original.pdf", tmp_path, PageLimits(dpi=100))
    [page] = document.needing_ocr
    assert stat.S_IMODE(os.stat(page.image).st_mode) == 0o600


def test_embedded_data_directories_are_private(tmp_path):
    data = tmp_path / "data"
    EmbeddedServers(data).storage_url()
    directories, _ = modes(data)
    assert directories == {".": 0o700, "storage": 0o700}
