"""A corpus manifest: one row per video with who speaks in it, so training can hold out whole speakers.

A manifest is a tab-separated file with a header row. The `file` column names each video by its path
relative to the manifest's folder; every other column is kept as text in the video's record
(`Record.info`). The columns vasa reads are:

    speaker     who speaks (clips of one person share it, e.g. "hdtf:RD_Radio32"); the unit of the
                speaker-disjoint split (`vasa.data.splits`)
    language    e.g. "en", "zh" (figures per language)
    source_repo where the clip comes from (data card, figures per source)
    terms       the data's terms of use (data card, model cards)

`vasa prepare FOLDER` finds FOLDER/MANIFEST.tsv by itself; `--manifest FILE` names another. Videos
missing from the manifest are prepared too; without a speaker label each counts as its own speaker.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable

from vasa.errors import VasaError

MANIFEST_NAMES = ("MANIFEST.tsv", "manifest.tsv")
FILE_COLUMN = "file"


def read_manifest(path: str | os.PathLike) -> dict[Path, dict]:
    """{resolved video path: its row (column -> text, `file` as written)}; a malformed manifest is a VasaError."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise VasaError(f"cannot read manifest {path}: {error}") from None
    if not rows or FILE_COLUMN not in rows[0]:
        raise VasaError(f"manifest {path} needs a header row with a {FILE_COLUMN!r} column (tab-separated)")
    table: dict[Path, dict] = {}
    for number, row in enumerate(rows, 2):
        name = (row.get(FILE_COLUMN) or "").strip()
        if not name or None in row:
            raise VasaError(f"manifest {path}, line {number}: needs a file name and as many fields as the header")
        video = (path.parent / name).resolve()
        if video in table:
            raise VasaError(f"manifest {path}, line {number}: {name} is listed twice")
        table[video] = {key: (value or "").strip() for key, value in row.items()}
    return table


def find_manifest(inputs: Iterable[str | os.PathLike]) -> Path | None:
    """The manifest at the root of a folder among `inputs` (MANIFEST.tsv); None when there is none.
    Two folders with manifests need `--manifest`: one file must say who speaks in every video."""
    found = [Path(item) / name for item in inputs if Path(item).is_dir() for name in MANIFEST_NAMES
             if (Path(item) / name).is_file()]
    if len(found) > 1:
        raise VasaError(f"several manifests ({', '.join(map(str, found))}): name one with --manifest")
    return found[0] if found else None
