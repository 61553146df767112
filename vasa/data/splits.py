"""Speaker-disjoint splits: the people a model is validated on never appear in its training data.

Clips of one person are alike in ways a model can memorise (voice, mouth shape, mannerisms), so a
split by clip overstates how well it does on someone new. A split here is a set of speaker labels
(the corpus manifest's `speaker` column, carried in each record's `info`): every record of those
speakers is held out, whatever clip it came from. A record without a label is its own speaker.

    vasa split DATA --speakers 20 --out split.json     # choose, stratified by source and language
    vasa split DATA --speakers 20 --include SPEAKER ... --out split.json   # these among them
    vasa train motion --data DATA --split split.json   # every trainer and script reads the same file

The file is JSON: {"format": 1, "unit": "speaker", "validation": [labels...], ...}; other keys say
how it was made. `make_split` chooses speakers per (source, language) group in proportion to the
group's size (at least one from every group of two or more speakers, so every source and language
with several people is represented), ordered within a group by a seeded hash: the same records and
seed give the same split, and adding a clip of an existing speaker does not move anyone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from vasa.errors import VasaError

SPLIT_FORMAT = 1


@dataclass(frozen=True)
class Split:
    """The validation speakers; everyone else trains."""

    validation: frozenset[str]

    def holds_out(self, speaker: str) -> bool:
        return speaker in self.validation

    def partition(self, files: list[Path]) -> tuple[list[Path], list[Path]]:
        """(training files, held-out files) by each record's speaker."""
        from vasa.data.records import read_meta, speaker_of

        held = [f for f in files if self.holds_out(speaker_of(read_meta(f)))]
        return [f for f in files if f not in held], held


def load_split(path: str | os.PathLike) -> Split:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VasaError(f"cannot read split file {path}: {error}") from None
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT or data.get("unit") != "speaker" \
            or not isinstance(data.get("validation"), list) or not data["validation"]:
        raise VasaError(f"{path} is not a speaker split (format {SPLIT_FORMAT}, unit speaker, a validation list)")
    return Split(frozenset(str(s) for s in data["validation"]))


def speaker_table(metas: list[dict]) -> dict[str, dict]:
    """{speaker: {"source": most common source, "language": ..., "seconds": kept seconds}} over records' metadata."""
    from vasa.data.records import speaker_of

    seconds: dict[str, float] = defaultdict(float)
    groups: dict[str, dict[tuple[str, str], float]] = defaultdict(lambda: defaultdict(float))
    for meta in metas:
        speaker, info = speaker_of(meta), meta.get("info", {})
        duration = meta["frames"] / meta["fps"]
        seconds[speaker] += duration
        groups[speaker][(info.get("source_repo") or "?", _language(info.get("language")))] += duration + 1e-9
    return {s: {"source": max(g, key=g.get)[0], "language": max(g, key=g.get)[1], "seconds": seconds[s]}
            for s, g in groups.items()}


def _language(text: str | None) -> str:
    """Unknown languages ("", "unk", "unknown") share one group."""
    return "unknown" if not text or text.lower() in ("unk", "unknown", "?") else text.lower()


def _rank(seed: int, speaker: str) -> str:
    return hashlib.sha1(f"{seed}:{speaker}".encode()).hexdigest()


def make_split(metas: list[dict], speakers: int, seed: int = 0, include: tuple[str, ...] = ()) -> Split:
    """Choose `speakers` validation speakers among those with kept data, stratified by (source, language);
    the speakers in `include` (e.g. one per language to report languages) are among them."""
    table = {s: row for s, row in speaker_table(metas).items() if row["seconds"] > 0}
    if not 0 < speakers < len(table):
        raise VasaError(f"cannot hold out {speakers} of {len(table)} speakers: keep at least one to train on")
    unknown = [s for s in include if s not in table]
    if unknown:
        raise VasaError(f"no kept data of speaker {', '.join(unknown)} to hold out")
    if len(set(include)) > speakers:
        raise VasaError(f"{len(set(include))} speakers to include but only {speakers} to hold out")
    chosen = set(include)
    table = {s: row for s, row in table.items() if s not in chosen}
    speakers -= len(chosen)
    if not speakers:
        return Split(frozenset(chosen))
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for speaker, row in table.items():
        groups[(row["source"], row["language"])].append(speaker)
    for members in groups.values():
        members.sort(key=lambda s: _rank(seed, s))
    # at least one from every group of two or more people, the rest in proportion (largest remainder)
    quota = {g: 1 for g, members in groups.items() if len(members) >= 2}
    if sum(quota.values()) > speakers:
        keep = sorted(quota, key=lambda g: (-len(groups[g]), g))[:speakers]
        quota = {g: 1 for g in keep}
    share = {g: speakers * len(m) / len(table) for g, m in groups.items()}
    while sum(quota.values()) < speakers:
        room = [g for g in groups if quota.get(g, 0) < len(groups[g]) - (len(groups[g]) >= 2)]
        room = room or [g for g in groups if quota.get(g, 0) < len(groups[g])]
        best = max(room, key=lambda g: (share[g] - quota.get(g, 0), len(groups[g]), g))
        quota[best] = quota.get(best, 0) + 1
    return Split(frozenset(chosen | {s for g, n in quota.items() for s in groups[g][:n]}))


def write_split(path: str | os.PathLike, split: Split, metas: list[dict], seed: int) -> None:
    """The split file, with what it was made from (speakers per group, seconds held out); written whole."""
    table = speaker_table(metas)
    held = sorted(split.validation)
    data = {"format": SPLIT_FORMAT, "unit": "speaker", "validation": held, "seed": seed,
            "speakers": {"validation": len(held), "training": len(set(table) - split.validation)},
            "seconds": {"validation": round(sum(table[s]["seconds"] for s in held if s in table), 1),
                        "training": round(sum(r["seconds"] for s, r in table.items() if s not in split.validation), 1)},
            "groups": {s: f"{table[s]['source']} / {table[s]['language']}" for s in held if s in table}}
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)
