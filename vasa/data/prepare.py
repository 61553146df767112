"""`vasa prepare VIDEOS OUT`: talking-face videos -> training records (`vasa.data.records`).

Each video becomes one record (`vasa.data.prepare_video`: its shots, the one face tracked in each,
the frames dropped and why, segments with their latents, gaze, distance, emotion and speech features,
and its audio-visual offset).

With `frames=N` (`--frames N`) prepare also writes the face crops it tracked, N x N pixels, as one
H.264 video per record, `OUT/frames/<record name>.mp4`: frame k of it is the crop of the video's frame
k (25 fps), so a segment's frames are `start_frame ...` of it. The neural face backend trains on these
(`vasa train face`); frames before the first face of a shot are black.

Runs are resumable (a video whose record exists is skipped) and split across machines with
`shard=(i, n)`: video k (in sorted order) belongs to shard k mod n.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterable

import cv2
from tqdm import tqdm

from vasa.data.prepare_video import AUDIO_EXTENSIONS, PrepareConfig, Preparer
from vasa.data.records import Record, read_record, record_dict, summary, write_record
from vasa.errors import VasaError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def find_videos(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Video files named directly or found (recursively) in the folders given, sorted."""
    videos: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            videos += [p for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()]
        elif path.is_file():
            videos.append(path)
        else:
            raise VasaError(f"no such video or folder: {path}")
    if not videos:
        raise VasaError("no videos found (looked for " + ", ".join(VIDEO_EXTENSIONS) + ")")
    return sorted(set(videos))


def record_name(video: Path) -> str:
    """A record's file name: the video's stem plus a short hash of its path (stems may repeat)."""
    digest = hashlib.sha1(str(video.resolve()).encode()).hexdigest()[:8]
    return f"{video.stem}-{digest}.npz"


def frame_store_path(record_path: Path) -> Path:
    """Where `vasa prepare --frames` keeps the face crops of a record: OUT/frames/<record stem>.mp4."""
    return record_path.parent.parent / "frames" / f"{record_path.stem}.mp4"


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise VasaError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise VasaError(f"shard index must be in [0, {count}), got {index}")
    return index, count


def _check_settings(out: Path, config: PrepareConfig) -> None:
    """OUT/prepare.json records the settings; a later run into the same OUT must use the same ones."""
    settings = out / "prepare.json"
    wanted = json.loads(json.dumps(asdict(config)))  # as read back (tuples become lists)
    if settings.exists():
        existing = {**asdict(PrepareConfig()), **json.loads(settings.read_text())}  # older files lack new fields
        if existing != wanted:
            raise VasaError(f"{out} was prepared with other settings ({existing}); use a new folder or the same settings")
        return
    temporary = settings.with_name(f".prepare.{os.getpid()}.json")
    temporary.write_text(json.dumps(wanted, indent=2) + "\n")
    os.replace(temporary, settings)


UNUSABLE = "unusable video: "  # the reason of a record whose video could not be read; retried on the next run


def prepare(inputs: Iterable[str | os.PathLike], out: str | os.PathLike, config: PrepareConfig = PrepareConfig(),
            shard: tuple[int, int] = (0, 1), overwrite: bool = False, progress: bool = True, workers: int = 1,
            manifest: str | os.PathLike | None = None, retry_failed: bool = False) -> dict:
    """Prepare every video of this shard into OUT/records; returns a summary (also OUT/report-i-of-n.json)
    and writes the data card of everything in OUT (`vasa.data.card`).

    `manifest` (default: a MANIFEST.tsv at the root of a folder in `inputs`) gives each video's speaker,
    language and source, carried into its record. `workers` processes prepare videos side by side;
    each video's record is the same whichever worker made it. A video whose record exists is skipped,
    unless it was unusable (e.g. its audio was missing) or the video (or the audio beside it) changed
    after its record was made: those are tried again, and with `retry_failed` every video that gave no
    segment too."""
    from vasa.data.card import write_data_card
    from vasa.data.manifest import find_manifest, read_manifest

    out = Path(out)
    if workers < 1:
        raise VasaError(f"workers must be at least 1, got {workers}")
    videos = find_videos(inputs)
    manifest = Path(manifest) if manifest is not None else find_manifest(inputs)
    rows = read_manifest(manifest) if manifest is not None else {}
    index, count = shard
    mine = videos[index::count]
    (out / "records").mkdir(parents=True, exist_ok=True)
    if config.frames:
        (out / "frames").mkdir(exist_ok=True)
    _check_settings(out, config)
    jobs = [(video, out / "records" / record_name(video), rows.get(video.resolve(), {})) for video in mine]
    todo = [job for job in jobs if overwrite or _needs_preparing(job[0], job[1], config, retry_failed)]
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="prepare", unit="video",
              disable=not progress) as bar:
        if workers == 1 or len(todo) < 2:
            with _one_thread():
                preparer = None
                for video, path, info in todo:
                    preparer = preparer or Preparer(config)
                    _prepare_one(preparer, video, path, info, progress)
                    bar.update(1)
        else:
            _prepare_in_processes(todo, config, min(workers, len(todo)), bar)
    records = [read_record(path) for _, path, _ in jobs]
    report = {"shard": f"{index}/{count}", "manifest": str(manifest) if manifest else None, **summary(records),
              "unusable": {r.source: r.dropped[0]["reason"].removeprefix(UNUSABLE) for r in records if _unusable(r)},
              "videos_detail": [record_dict(r) for r in records]}
    report_path = out / f"report-{index}-of-{count}.json"
    temporary = report_path.with_name(f".{report_path.name}.tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temporary, report_path)
    write_data_card(out)
    return report


def _unusable(record: Record) -> bool:
    return not record.segments and any(d["reason"].startswith(UNUSABLE) for d in record.dropped)


def _needs_preparing(video: Path, path: Path, config: PrepareConfig, retry_failed: bool = False) -> bool:
    """No record yet, its frame store is missing, its inputs changed after it was written, the video was
    unusable last time, or (with retry_failed) it gave no segment."""
    if not path.exists() or (config.frames and not frame_store_path(path).exists()):
        return True
    inputs = [video, *(video.with_suffix(extension) for extension in AUDIO_EXTENSIONS)]  # audio beside it
    if max(_modified(p) for p in inputs) > _modified(path):
        return True
    try:
        record = read_record(path)
    except VasaError:  # unreadable: made again
        return True
    return _unusable(record) or (retry_failed and not record.segments)


def _modified(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


def _prepare_one(preparer: Preparer, video: Path, path: Path, info: dict, progress: bool) -> None:
    """One video -> its record file; a video that cannot be used becomes a record saying why."""
    config = preparer.config
    frames_path = frame_store_path(path) if config.frames else None
    try:
        record = replace(preparer.prepare_video(video, progress, frames_path), info=info)
    except VasaError as error:  # a bad video is reported and skipped, the rest go on
        record = Record(video.name, config.fps, config.encoder_spec, config.face, [],
                        [{"start_frame": 0, "frames": 0, "reason": f"{UNUSABLE}{error}"}], info=info)
    write_record(path, record)


@contextlib.contextmanager
def _one_thread():
    """Torch on one thread while preparing: a sum split over threads rounds differently, and a record
    must not depend on how many workers made it (`--workers` is how prepare uses more cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_worker_preparer: Preparer | None = None


def _worker_start(config: PrepareConfig) -> None:
    import torch

    global _worker_preparer
    tqdm.set_lock(threading.RLock())  # no bars here; tqdm's default lock is a semaphore the pool would leak
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    _worker_preparer = Preparer(config)


def _worker_job(job: tuple[Path, Path, dict]) -> str:
    _prepare_one(_worker_preparer, *job, progress=False)
    return job[0].name


def _prepare_in_processes(todo: list, config: PrepareConfig, workers: int, bar) -> None:
    """The videos across `workers` fresh processes (spawned: the trackers and encoders are not fork-safe),
    each holding its own models, sharing the machine's cores."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_worker_start, initargs=(config,)) as pool:
        for _ in pool.imap_unordered(_worker_job, todo):
            bar.update(1)
