"""`conveyor samples`: small files that ship with the package, to try Conveyor on at once."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import click

from service.cli.output import guarded

EXAMPLES = """Examples:

  conveyor submit "$(conveyor samples)/resume.pdf" --wait

  conveyor samples --copy ."""


def samples_dir() -> Path:
    """The installed samples: a résumé PDF with a text layer, a scanned PNG, a short MP4."""
    return Path(str(resources.files("service") / "samples"))


@click.command("samples", epilog=EXAMPLES)
@click.option("--copy", type=click.Path(file_okay=False, path_type=Path), help="Copy the samples into this directory.")
@guarded
def command(copy: Path | None) -> None:
    """Print the directory of the sample files (resume.pdf, scan.png, clip.mp4), or copy them."""
    if copy is None:
        click.echo(samples_dir())
        return
    copy.mkdir(parents=True, exist_ok=True)
    for sample in sorted(samples_dir().iterdir()):
        click.echo(shutil.copy(sample, copy))
