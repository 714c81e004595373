import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.storage.sniffing import SNIFF_BYTES, sniff_video
from testkit.hostile_videos import SOUND_WRAPPERS, Targets, hostile_uploads, tricks
from testkit.video_sources import VideoSources, video_sources  # noqa: F401

REAL = [("landscape", "video/mp4"), ("mov", "video/quicktime"), ("mkv", "video/x-matroska"), ("webm", "video/webm")]


@pytest.mark.parametrize(("source", "mime"), REAL)
def test_each_container_is_recognised_from_its_first_bytes(video_sources: VideoSources, source: str, mime: str):
    whole = getattr(video_sources, source).read_bytes()
    assert sniff_video(whole[:SNIFF_BYTES]) == mime  # while the upload is still arriving
    assert sniff_video(whole[:SNIFF_BYTES], len(whole)) == mime  # once its size is known


@pytest.mark.parametrize(("source", "mime"), REAL)
def test_a_cut_off_upload_is_still_its_container(video_sources: VideoSources, source: str, mime: str):
    """The media may run past the end (a copy cut short): the worker reports it damaged."""
    whole = getattr(video_sources, source).read_bytes()
    cut = whole[: len(whole) // 2]
    assert sniff_video(cut[:SNIFF_BYTES], len(cut)) == mime


@pytest.mark.parametrize("source", ["random_bytes", "empty"])
def test_non_videos_are_not_recognised(video_sources: VideoSources, source: str):
    data = getattr(video_sources, source).read_bytes()
    assert sniff_video(data[:SNIFF_BYTES]) is None
    assert sniff_video(data[:SNIFF_BYTES], len(data)) is None


def box(box_type: bytes, body: bytes = b"", *, size: int | None = None) -> bytes:
    return (8 + len(body) if size is None else size).to_bytes(4, "big") + box_type + body


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    return box(b"ftyp", major + b"\x00\x00\x02\x00" + b"".join(compatible or (major, b"isom")))


def ebml(*elements: bytes, header_size: int | None = None) -> bytes:
    body = b"".join(elements)
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | (len(body) if header_size is None else header_size)]) + body


def doctype(name: bytes) -> bytes:
    return b"\x42\x82" + bytes([0x80 | len(name)]) + name


VERSION = b"\x42\x86\x81\x01"
SEGMENT = b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff"  # unknown size, as live muxers write
MDAT = box(b"mdat", b"\x00" * 16)
CLUSTER = b"\x1f\x43\xb6\x75\x01\xff\xff\xff\xff\xff\xff\xff"  # unknown size: a live recording


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (ftyp(b"isom") + MDAT, "video/mp4"),
        (ftyp(b"mp42") + box(b"free") + MDAT, "video/mp4"),
        (ftyp(b"3gp5") + MDAT, "video/mp4"),
        (ftyp(b"qt  ") + box(b"wide") + MDAT, "video/quicktime"),
        (ftyp(b"M4A ") + MDAT, None),  # AAC audio
        (ftyp(b"heic") + MDAT, None),  # a phone photo
        (ftyp(b"avif") + MDAT, None),
        (box(b"mdat", size=1000) + b"\x00" * 16, "video/quicktime"),  # QuickTime before ftyp
        (box(b"wide") + box(b"mdat", size=1000), "video/quicktime"),
        (box(b"mdat", size=4), None),  # an impossible atom size
        (ebml(VERSION, doctype(b"webm")) + SEGMENT, "video/webm"),
        (ebml(VERSION, doctype(b"matroska")) + SEGMENT, "video/x-matroska"),
        (ebml(VERSION, doctype(b"webm")) + SEGMENT + b"\xec\x82\x00\x00" + CLUSTER, "video/webm"),  # Void, Cluster
        (ebml(VERSION, doctype(b"wav1")) + SEGMENT, None),  # EBML, but no video DocType
        (b"\x1a\x45\xdf\xa3\x9f\x42\x82", None),  # cut off mid-header
        (b"%PDF-1.7\n", None),
        (b"\x89PNG\r\n\x1a\n", None),
    ],
)
def test_synthetic_headers(head: bytes, mime: str | None):
    assert sniff_video(head) == mime


@pytest.mark.parametrize(
    "head",
    [
        # ISO-BMFF: structure, not four bytes
        box(b"ftyp", b"isom\x00\x00"),  # an ftyp too short to hold its brands
        box(b"ftyp", b"isom\x00\x00\x02\x00isom\x00\x00") + MDAT,  # brands not in whole fours
        box(b"ftyp", b"is\x00m\x00\x00\x02\x00isom") + MDAT,  # a major brand that is not text
        box(b"ftyp", b"isom\x00\x00\x02\x00isom", size=5000),  # an ftyp running past the first bytes
        ftyp(b"isom") + box(b"junk") + MDAT,  # a top-level box no format has
        ftyp(b"isom") + box(b"free", size=3) + MDAT,  # a size smaller than its own header
        ftyp(b"isom") + ftyp(b"isom") + MDAT,  # ftyp twice
        box(b"free") + ftyp(b"isom") + MDAT,  # ftyp not first
        # QuickTime without ftyp: known atoms, and the media starts within the first bytes
        box(b"free", b"x" * 20),  # padding and nothing else
        box(b"free", size=1 << 20) + b"\x00" * 64,  # a free atom hiding whatever follows
        box(b"udta", b"\x00" * 8) + MDAT,  # not an atom a QuickTime file starts with
        box(b"free") + box(b"<MPD", b"x" * 8),
        # EBML: a whole header of header elements that exactly fill it, then a Segment
        ebml(VERSION, doctype(b"webm"), header_size=40) + SEGMENT,  # claims more than it holds
        ebml(VERSION, doctype(b"webm"), b"\x1f\x43\xb6\x75\x80") + SEGMENT,  # a Cluster inside the header
        ebml(VERSION) + SEGMENT,  # no DocType
        ebml(VERSION, doctype(b"webm")) + b"<MPD>" + b"x" * 16,  # no Segment after the header
        ebml(VERSION, doctype(b"webm")) + SEGMENT + b"\nc=IN IP4 10.0.0.1\n" + b"x" * 16,  # text in the Segment
        ebml(VERSION, doctype(b"webm")) + SEGMENT + b"\x1a\x45\xdf\xa3\x80" + b"x" * 16,  # a header, not a child
    ],
)
def test_broken_structure_is_refused(head: bytes):
    assert sniff_video(head) is None
    assert sniff_video(head, len(head)) is None


@pytest.mark.parametrize(
    "whole",
    [
        ftyp(b"isom") + box(b"free", size=100_000) + MDAT,  # a box claiming more than the file has
        ftyp(b"isom") + MDAT + b"\x00\x00\x00",  # stray bytes after the last box
        ftyp(b"isom"),  # boxes, but no media in them
        ebml(VERSION, doctype(b"webm")),  # a header and nothing else
        box(b"mdat", size=100_000) + b"\x00" * 64,  # QuickTime without ftyp: not even media may run past the end
        box(b"wide") + box(b"mdat", size=100_000) + b"\x00" * 64,
    ],
)
def test_sizes_must_fit_the_file_once_it_is_known(whole: bytes):
    assert sniff_video(whole, len(whole)) is None


def test_the_free_comment_trick_is_refused_however_long():
    """Issue 18's hole: `<!--free-->` read as a 1 GB QuickTime `free` atom, then a DASH manifest."""
    manifest = b"<!--free--><MPD>" + b" " * 10_000 + b"</MPD>"
    assert sniff_video(manifest[:SNIFF_BYTES]) is None
    assert sniff_video(manifest[:SNIFF_BYTES], len(manifest)) is None
    claimed = int.from_bytes(b"<!--", "big")  # padded to the size the atom claims: still no media
    assert sniff_video(manifest[:SNIFF_BYTES], claimed) is None


def test_the_media_comment_trick_is_refused_once_the_size_is_known():
    """`<!--mdat-->` is media, so it cannot be refused before the upload ends; then its size
    is known, and the atom claims far more than the file holds."""
    manifest = b"<!--mdat--><MPD>" + b" " * 10_000 + b"</MPD>"
    assert sniff_video(manifest[:SNIFF_BYTES]) == "video/quicktime"  # still arriving
    assert sniff_video(manifest[:SNIFF_BYTES], len(manifest)) is None


@settings(max_examples=200, deadline=None)
@given(
    st.text(string.printable, min_size=4, max_size=4),
    st.sampled_from([b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"]),
    st.text(string.printable, max_size=300),
)
def test_what_starts_as_text_is_never_a_video(size_text: str, box_type: bytes, rest: str):
    """Manifests, playlists and scripts are text, and text sizes are hundreds of megabytes:
    whatever box type follows, a file that is all text is refused once its size is known."""
    head = size_text.encode() + box_type + rest.encode()
    assert sniff_video(head, len(head)) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512), st.none() | st.integers(min_value=0, max_value=1 << 40))
def test_any_bytes_are_judged_without_error(head: bytes, size: int | None):
    assert sniff_video(head, size) in (None, "video/mp4", "video/quicktime", "video/webm", "video/x-matroska")


def test_tricks_behind_an_accepted_containers_first_bytes(tmp_path):
    """Only the wrappers whose structure is sound pass (the worker then refuses them: see
    tests/test_videos_hostile_demuxers.py); text posing as a box never does."""
    targets = Targets(tmp_path / "secret.ts", str(tmp_path / "frame%03d.png"))
    assert set(tricks(targets)) == {"dash", "hls", "ffconcat", "image_sequence"}
    for name, data in hostile_uploads(targets).items():
        wrapper = name.split("/")[0]
        sniffed = sniff_video(data[:SNIFF_BYTES], len(data))
        assert (sniffed is None) == (wrapper not in SOUND_WRAPPERS), name
