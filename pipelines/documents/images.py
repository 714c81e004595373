"""Image uploads (PNG, JPEG, multi-page TIFF) as pages to OCR, guarded against bombs.

Pillow decodes lazily, so a few kilobytes can claim gigapixels: every frame's size is
checked against `limits.max_pixels`, and all of them together against the OCR budget,
before any is decoded; Pillow's own decompression-bomb warning is an error here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageSequence, UnidentifiedImageError

from pipelines.documents.pages import Page, PageLimits, check_ocr_pixels
from service.errors import PermanentError
from service.storage.file_modes import private_opener

ACCEPTED_FORMATS = {"PNG", "JPEG", "TIFF", "MPO"}  # MPO: Pillow's name for some camera JPEGs


def read_image(path: Path, workdir: Path, limits: PageLimits) -> list[Page]:
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                if image.format not in ACCEPTED_FORMATS:
                    raise PermanentError(f"{image.format} images are not accepted", type="unsupported_document")
                frames = getattr(image, "n_frames", 1)
                if frames > limits.max_pages:
                    raise PermanentError(
                        f"the image has {frames} pages, more than {limits.max_pages}", type="too_many_pages"
                    )
                _check_sizes([frame.size for frame in ImageSequence.Iterator(image)], limits)
                return [
                    _save_frame(frame, number, workdir, limits)
                    for number, frame in enumerate(ImageSequence.Iterator(image), start=1)
                ]
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PermanentError(f"the image is too large: {exc}", type="image_too_large") from None
        except UnidentifiedImageError:
            raise PermanentError("the image could not be identified", type="unsupported_document") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise PermanentError(f"the image is corrupt or truncated ({exc})", type="corrupt_image") from None


def _check_sizes(sizes: list[tuple[int, int]], limits: PageLimits) -> None:
    """Each frame within `limits.max_pixels`; all of them within the OCR budget when they are to be OCR'd here."""
    for number, (width, height) in enumerate(sizes, start=1):
        if width * height > limits.max_pixels:
            raise PermanentError(
                f"page {number} is {width}x{height} pixels, more than {limits.max_pixels}", type="image_too_large"
            )
    if limits.render:
        check_ocr_pixels(sum(width * height for width, height in sizes), len(sizes), limits)


def _save_frame(frame: Image.Image, number: int, workdir: Path, limits: PageLimits) -> Page:
    if not limits.render:
        return Page(number=number, text="", needs_ocr=True)
    target = workdir / f"page-{number:04d}.png"
    with open(target, "wb", opener=private_opener) as file:
        frame.convert("L").save(file, format="PNG")
    return Page(number=number, text="", needs_ocr=True, image=str(target))
