"""Writing what a user asked for, whole or not at all: the destination is checked before any work,
files are written beside it under a temporary name and moved into place with the permissions an
ordinary new file gets (safetensors and mkstemp make theirs private)."""

from __future__ import annotations

import os
from pathlib import Path

from vasa.errors import VasaError


def check_output_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Fail before any work when `folder` cannot be made or written: it is a file, lies inside a file, or
    its nearest existing parent is read-only."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise VasaError(f"cannot make the {what} {folder}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise VasaError(f"cannot write to the {what} {folder}: {existing} is not writable")
    return folder


def move_into_place(temporary: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished temporary file to `path`, with the mode a new file gets under the umask (0o644
    with umask 022)."""
    umask = os.umask(0)  # the only way to read it is to set it
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    os.replace(temporary, path)
