"""`Range` headers as the file route reads them (RFC 9110 §14); served for real in test_videos_pipeline."""

import pytest

from service.api.problems import Problem
from service.api.ranges import byte_range


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-99", (0, 99)),
    ("bytes=100-", (100, 999)),
    ("bytes=-100", (900, 999)),
    ("bytes=-5000", (0, 999)),          # a suffix longer than the file is the whole file
    ("bytes=990-5000", (990, 999)),     # a last position past the end stops at the end
    ("BYTES=5-5", (5, 5)),
    (None, None),
    ("bytes=0-1,5-6", None),            # several ranges: the whole file
    ("items=0-5", None),                # another unit
    ("bytes=9-3", None),                # backwards
    ("bytes=-", None),
    ("bytes=a-b", None),
])  # fmt: skip
def test_one_range_or_the_whole_file(header, expected):
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=1000-", 1000), ("bytes=1000-2000", 1000), ("bytes=-0", 1000), ("bytes=0-", 0), ("bytes=-5", 0)],
)
def test_a_range_outside_the_file_is_416_with_its_size(header, size):
    with pytest.raises(Problem) as excinfo:
        byte_range(header, size)
    assert excinfo.value.status == 416
    assert excinfo.value.headers == {"Content-Range": f"bytes */{size}"}
