"""Which renditions to make of a source, at what size and bitrate, and which to skip and why.

A rendition's name is its short side as displayed ("720p" is 1280x720 landscape or
720x1280 portrait), the way players and phones label video. Nothing is ever upscaled: a
rendition taller than the source is skipped with the reason in the plan. If every
requested rendition would upscale, the source's own size is made instead, so a job never
ends with nothing to play.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.videos.probe import VideoInfo
from service.errors import PermanentError

LADDER: dict[int, tuple[int, int]] = {
    # short side: (H.264 peak kbit/s, AAC kbit/s)
    144: (250, 64),
    240: (500, 64),
    360: (900, 96),
    480: (1500, 128),
    720: (3000, 128),
    1080: (6000, 160),
    1440: (10000, 192),
    2160: (20000, 192),
}
DEFAULT_RENDITIONS = (720, 480)
THUMBNAIL_MAX_SIDE = 640
THUMBNAIL_SEEK_FRACTION = 0.1


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int
    height: int
    video_kbps: int
    audio_kbps: int | None
    """None when the source is silent: the rendition then has no audio stream at all."""

    @property
    def filename(self) -> str:
        return f"{self.name}.mp4"


@dataclass(frozen=True)
class Thumbnail:
    width: int
    height: int
    seek: float
    """Where the search for a representative frame starts, past black intros and fades."""
    name: str = "thumbnail"

    @property
    def filename(self) -> str:
        return f"{self.name}.jpg"


Output = Rendition | Thumbnail


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True)
class RenditionPlan:
    source: VideoInfo
    renditions: tuple[Rendition, ...]
    skipped: tuple[Skipped, ...]
    thumbnail: Thumbnail

    @property
    def outputs(self) -> tuple[Output, ...]:
        return (*self.renditions, self.thumbnail)


def parse_renditions(spec: str | None) -> tuple[int, ...]:
    """`"720p,480p"` → `(720, 480)`; empty means the default; anything else is refused clearly."""
    if spec is None or not spec.strip():
        return DEFAULT_RENDITIONS
    heights: list[int] = []
    for token in (part.strip() for part in spec.split(",")):
        digits = token.lower().removesuffix("p")
        if not (digits.isascii() and digits.isdecimal()) or int(digits) not in LADDER:
            supported = ", ".join(f"{height}p" for height in LADDER)
            raise PermanentError(
                f"unknown rendition {token[:20]!r}; choose from {supported}", type="invalid_renditions"
            )
        if int(digits) not in heights:
            heights.append(int(digits))
    return tuple(heights)


def plan_renditions(info: VideoInfo, heights: Sequence[int] = DEFAULT_RENDITIONS) -> RenditionPlan:
    width, height = info.display_width, info.display_height
    short_side = min(width, height)
    renditions: list[Rendition] = []
    skipped: list[Skipped] = []
    for target in sorted(set(heights), reverse=True):
        if target > short_side:
            reason = f"the source is {short_side}p ({width}x{height} as displayed); {target}p would upscale it"
            skipped.append(Skipped(f"{target}p", reason))
        else:
            renditions.append(_rendition(info, target))
    if not renditions:
        renditions.append(_rendition(info, short_side - short_side % 2))
    return RenditionPlan(info, tuple(renditions), tuple(skipped), _thumbnail(info))


def _rendition(info: VideoInfo, short_side: int) -> Rendition:
    width, height = _fit_short_side(info.display_width, info.display_height, short_side)
    rung = max((rung for rung in LADDER if rung <= short_side), default=min(LADDER))
    video_kbps, audio_kbps = LADDER[rung]
    return Rendition(f"{short_side}p", width, height, video_kbps, audio_kbps if info.has_audio else None)


def _thumbnail(info: VideoInfo) -> Thumbnail:
    width, height = info.display_width, info.display_height
    scale = min(1.0, THUMBNAIL_MAX_SIDE / max(width, height))
    return Thumbnail(_even(width * scale), _even(height * scale), round(info.duration * THUMBNAIL_SEEK_FRACTION, 3))


def _fit_short_side(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Scale so the short side is `short_side`, keeping the aspect ratio; both sides even (H.264 4:2:0)."""
    if width >= height:
        return _even_within(width * short_side / height, width), short_side
    return short_side, _even_within(height * short_side / width, height)


def _even_within(length: float, limit: int) -> int:
    return min(_even(length), limit - limit % 2)


def _even(length: float) -> int:
    return max(2, 2 * round(length / 2))
