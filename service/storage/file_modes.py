"""Files only the service's own account can read: 0600 files in 0700 directories.

Uploads, and everything read from them, are tenants' data. With the usual umask (022) they
would be 0644 in 0755 directories, readable by every other account on the host or on a
volume it shares, so files and directories the service creates get their modes set
explicitly, whatever the umask.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def private_opener(path: str, flags: int) -> int:
    """For `open(path, "wb", opener=private_opener)`: the file is 0600, even if it existed."""
    descriptor = os.open(path, flags, FILE_MODE)
    os.fchmod(descriptor, FILE_MODE)
    return descriptor


def copy_private(source: Path, target: Path) -> None:
    """Copy a file's bytes (not its mode) to `target`, which is 0600."""
    with source.open("rb") as reader, open(target, "wb", opener=private_opener) as writer:
        shutil.copyfileobj(reader, writer, 1024 * 1024)


def make_private_dirs(path: Path) -> None:
    """`mkdir -p path`, each directory it creates 0700 (`os.makedirs` leaves the ones above
    the last to the umask); existing directories are left as they are."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIRECTORY_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process
        os.chmod(directory, DIRECTORY_MODE)  # mkdir's mode passes through the umask


def make_scratch_dir(root: str | None, *, prefix: str) -> Path:
    """A new, empty 0700 directory for a job's temporary files under `root` (`WORK_DIR`,
    made if missing; unset: the system's temp dir). The one way jobs get scratch space."""
    if root:
        make_private_dirs(Path(root))
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))
