"""The data card of a prepared folder: what the records hold, by speaker, language and source, and what
was dropped and why. `vasa prepare` writes it beside the records after every run, covering every record
in the folder (all shards): OUT/data_card.json for scripts and OUT/DATA_CARD.md for people."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from vasa.data.records import read_meta, record_files, speaker_of

UNKNOWN = "(not given)"


def data_card(out: str | os.PathLike) -> dict:
    """Seconds kept per speaker / language / source / terms, seconds dropped per reason, unusable videos."""
    kept = {key: defaultdict(float) for key in ("speaker", "language", "source_repo", "terms")}
    dropped: dict[str, float] = defaultdict(float)
    unusable, videos, fps_seen, seconds, sync_large, sync_unclear = {}, 0, set(), 0.0, 0, 0
    for path in record_files(out):
        meta = read_meta(path)
        fps = float(meta["fps"])
        fps_seen.add(fps)
        videos += 1
        info = meta["info"]
        speaker = speaker_of(meta)
        duration = meta["frames"] / fps
        seconds += duration
        for key, table in kept.items():
            table[speaker if key == "speaker" else info.get(key) or UNKNOWN] += duration
        for d in meta["dropped"]:
            if d["reason"].startswith("unusable video: "):
                unusable[meta["source"]] = d["reason"].removeprefix("unusable video: ")
            else:
                dropped[d["reason"]] += int(d.get("frames", 0)) / fps
        sync = meta.get("sync")
        if sync is not None:
            sync_large += bool(sync["needs_correction"] and not sync["corrected"])
            sync_unclear += not sync["clear"]
    rounded = lambda table: {k: round(v, 2) for k, v in sorted(table.items(), key=lambda kv: (-kv[1], kv[0]))}
    return {"videos": videos, "kept_s": round(seconds, 2), "dropped_s": rounded(dropped),
            "speakers": len([s for s, v in kept["speaker"].items() if v > 0]),
            "unusable": dict(sorted(unusable.items())),
            "sync": {"offsets_of_100ms_or_more": sync_large, "no_clear_sync": sync_unclear},
            **{f"kept_s_by_{key}": rounded(table) for key, table in kept.items()}}


def card_markdown(card: dict) -> str:
    lines = ["# Data card", "",
             f"{card['videos']} videos, {card['kept_s'] / 60:.1f} min kept of {card['speakers']} speakers; "
             f"{sum(card['dropped_s'].values()) / 60:.1f} min dropped; {len(card['unusable'])} videos unusable.", "",
             f"Audio-visual sync: {card['sync']['offsets_of_100ms_or_more']} videos with an offset of 100 ms or "
             f"more left in, {card['sync']['no_clear_sync']} with no clear sync.", ""]
    for title, key in (("language", "kept_s_by_language"), ("source", "kept_s_by_source_repo"),
                       ("terms", "kept_s_by_terms")):
        lines += [f"## Kept, by {title}", "", f"| {title} | minutes |", "|---|---|"]
        lines += [f"| {name} | {value / 60:.2f} |" for name, value in card[key].items()] + [""]
    lines += ["## Dropped, by reason", "", "| reason | seconds |", "|---|---|"]
    lines += [f"| {reason} | {value:.1f} |" for reason, value in card["dropped_s"].items()] + [""]
    if card["unusable"]:
        lines += ["## Unusable videos", "", "| video | why |", "|---|---|"]
        lines += [f"| {name} | {why} |" for name, why in card["unusable"].items()] + [""]
    lines += ["## Kept, by speaker", "", "| speaker | seconds |", "|---|---|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in card["kept_s_by_speaker"].items()] + [""]
    return "\n".join(lines)


def write_data_card(out: str | os.PathLike) -> dict:
    """OUT/data_card.json and OUT/DATA_CARD.md, each written whole (temporary file, then rename)."""
    out = Path(out)
    card = data_card(out)
    for name, text in (("data_card.json", json.dumps(card, indent=2) + "\n"), ("DATA_CARD.md", card_markdown(card))):
        temporary = out / f".{name}.{os.getpid()}.tmp"
        temporary.write_text(text)
        os.replace(temporary, out / name)
    return card
