"""Training records: what `vasa prepare` writes and `vasa train motion` reads.

One record file per input video, `OUT/records/<name>.npz`, holding every kept segment of that video
(a segment = a stretch of one shot with one tracked face). Record files are the shards: a job array
writes them independently (`--shard i/n`), a multi-GPU trainer hands whole files to its ranks, and a
run that is killed resumes by skipping the files that exist (each is written to a temporary file and
renamed when complete). Per frame, at the video rate (25 fps):

    pose        (N, 6)   yaw, pitch, roll (degrees), tx, ty (crop units), scale    [face backend]
    dynamics    (N, K)   facial-dynamics coefficients                              [face backend]
    gaze        (N, 2)   eye-in-head gaze (theta, phi), degrees
    distance    (N,)     head distance (1 = the standard portrait framing)
    emotion     (N, 7)   emotion probabilities in `EMOTION_NAMES` order
    audio       (N, D)   speech features (float16 on disk)
    voice       (N,)     speech probability
    blendshapes (N, 52)  the face tracker's blendshapes (`vasa.face.landmarker.BLENDSHAPE_NAMES`)  [format 2]
    head_matrix (N, 4, 4) the face tracker's facial transformation matrix (its own head pose)  [format 2]

Segments are consecutive slices of these arrays (`offsets`, S + 1 entries). Per segment the record
also holds the clip-level conditions of VASA-1 Sec. 3.2: the main gaze direction (histogram mode),
mean head distance and mean emotion. Videos or stretches that were dropped are listed with the
reason in the metadata, so a prepare run can report them, and so is the video's audio-visual offset
(`vasa.data.sync`) when it was measured.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vasa.errors import VasaError
from vasa.latents import EMOTION_NAMES
from vasa.face.landmarker import BLENDSHAPE_NAMES

FORMAT_VERSION = 2  # 2 added the tracker's blendshapes and head matrix; format 1 records still read
READABLE_FORMATS = (1, 2)
FRAME_ARRAYS = ("pose", "dynamics", "gaze", "distance", "emotion", "audio", "voice")
TRACKER_ARRAYS = ("blendshapes", "head_matrix")  # per frame too, absent from format 1 records
ARRAY_WIDTHS = {  # per-frame array -> its shape after the frame axis (a letter: any size)
    "pose": (6,), "dynamics": ("K",), "gaze": (2,), "distance": (), "emotion": (len(EMOTION_NAMES),),
    "audio": ("D",), "voice": (), "blendshapes": (len(BLENDSHAPE_NAMES),), "head_matrix": (4, 4)}


@dataclass(frozen=True)
class Segment:
    """One shot of one face: per-frame arrays (T, ...) and its clip-level conditions."""

    pose: np.ndarray  # (T, 6)
    dynamics: np.ndarray  # (T, K)
    gaze: np.ndarray  # (T, 2) degrees, eye-in-head
    distance: np.ndarray  # (T,)
    emotion: np.ndarray  # (T, 7)
    audio: np.ndarray  # (T, D)
    voice: np.ndarray  # (T,)
    start_frame: int = 0  # where the segment starts in its video, in frames at the record's fps
    main_gaze: np.ndarray = field(default_factory=lambda: np.zeros(2))  # (2,) degrees
    mean_distance: float = 1.0
    mean_emotion: np.ndarray = field(default_factory=lambda: np.zeros(len(EMOTION_NAMES)))
    blendshapes: np.ndarray | None = None  # (T, 52) the tracker's blendshapes, None in format 1 records
    head_matrix: np.ndarray | None = None  # (T, 4, 4) the tracker's facial transformation matrices

    def __post_init__(self):
        frames = len(self.pose)
        for name in FRAME_ARRAYS + TRACKER_ARRAYS:
            if getattr(self, name) is not None and len(getattr(self, name)) != frames:
                raise ValueError(f"segment array {name} has {len(getattr(self, name))} frames, pose has {frames}")

    def __len__(self) -> int:
        return len(self.pose)


@dataclass(frozen=True)
class Record:
    """All kept segments of one video, and what was dropped from it."""

    source: str  # the input video's file name
    fps: float
    audio_encoder: str  # e.g. "whisper"
    face_backend: str  # e.g. "mesh"
    segments: list[Segment]
    dropped: list[dict] = field(default_factory=list)  # {"start_frame", "frames", "reason"}
    sync: dict | None = None  # the audio-visual offset found (`vasa.data.sync.SyncEstimate.as_dict`), if measured
    info: dict = field(default_factory=dict)  # the video's manifest row: speaker, language, source_repo, terms, ...

    @property
    def frames(self) -> int:
        return sum(len(s) for s in self.segments)

    @property
    def speaker(self) -> str:
        """Who speaks: the manifest's speaker label, or without one the video itself (its own speaker)."""
        return speaker_of({"info": self.info, "source": self.source})


def write_record(path: str | os.PathLike, record: Record) -> None:
    """Write `record` to `path` (.npz): complete or not at all (temporary file, then rename)."""
    path = Path(path)
    segments = record.segments
    arrays: dict[str, np.ndarray] = {}
    for name in FRAME_ARRAYS:
        parts = [np.asarray(getattr(s, name)) for s in segments]
        dtype = np.float16 if name == "audio" else np.float32
        arrays[name] = np.concatenate(parts).astype(dtype) if parts else np.zeros((0,), dtype)
    for name in TRACKER_ARRAYS:  # kept only when every segment has them
        if segments and all(getattr(s, name) is not None for s in segments):
            arrays[name] = np.concatenate([np.asarray(getattr(s, name)) for s in segments]).astype(np.float32)
    arrays["offsets"] = np.cumsum([0] + [len(s) for s in segments]).astype(np.int64)
    meta = {
        "format": FORMAT_VERSION, "source": record.source, "fps": record.fps,
        "audio_encoder": record.audio_encoder, "face_backend": record.face_backend, "dropped": record.dropped,
        "sync": record.sync, "info": record.info,
        "segments": [{"start_frame": int(s.start_frame), "main_gaze": [float(v) for v in s.main_gaze],
                      "mean_distance": float(s.mean_distance),
                      "mean_emotion": [float(v) for v in s.mean_emotion]} for s in segments],
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    temporary = path.with_name(f".{path.stem}.tmp.npz")
    try:
        np.savez(temporary, **arrays)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_record(path: str | os.PathLike) -> Record:
    """The record at `path`; a missing, truncated, foreign or inconsistent file is a `VasaError`."""
    path = Path(path)
    try:
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            arrays = {name: data[name] for name in FRAME_ARRAYS + TRACKER_ARRAYS if name in data.files}
            missing = [name for name in FRAME_ARRAYS if name not in arrays]
            if missing:
                raise VasaError(f"cannot read training record {path}: it has no {', '.join(missing)} array")
            offsets = data["offsets"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise VasaError(unreadable(path, error)) from None
    if meta.get("format") not in READABLE_FORMATS:
        raise VasaError(f"{path} is record format {meta.get('format')}, this vasa reads formats "
                        f"{', '.join(map(str, READABLE_FORMATS))}")
    check_shapes(path, arrays, offsets, len(meta["segments"]))
    segments = []
    for k, info in enumerate(meta["segments"]):
        lo, hi = int(offsets[k]), int(offsets[k + 1])
        frames = {name: arrays[name][lo:hi].astype(np.float32) for name in FRAME_ARRAYS + TRACKER_ARRAYS
                  if name in arrays}
        segments.append(Segment(**frames, start_frame=info["start_frame"], main_gaze=np.array(info["main_gaze"]),
                                mean_distance=info["mean_distance"], mean_emotion=np.array(info["mean_emotion"])))
    return Record(meta["source"], meta["fps"], meta["audio_encoder"], meta["face_backend"], segments,
                  meta["dropped"], meta.get("sync"), meta.get("info", {}))


def unreadable(path: Path, error: Exception) -> str:
    """Why a record file cannot be opened, in one line (numpy's own words for a foreign file are advice
    about `allow_pickle=`, which a user of `vasa train` cannot act on)."""
    if isinstance(error, OSError) and error.strerror:  # no such file, permission denied, a folder
        return f"cannot read training record {path}: {error.strerror}"
    detail = f" ({error.args[0]})" if isinstance(error, KeyError) else ""  # "meta is not a file in the archive"
    return f"cannot read training record {path}: not a record written by `vasa prepare`, or a damaged one{detail}"


def check_shapes(path: Path, arrays: dict[str, np.ndarray], offsets: np.ndarray, segments: int) -> None:
    """Every per-frame array has the record's frame count (its last segment offset) and its documented
    width, and the offsets cut those frames into `segments` ordered slices; otherwise a `VasaError`."""
    if offsets.ndim != 1 or len(offsets) != segments + 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise VasaError(f"training record {path} is inconsistent: its segment offsets {offsets.tolist()[:8]} do not "
                        f"cut its frames into the {segments} segments its metadata lists")
    frames = int(offsets[-1])
    for name, width in ARRAY_WIDTHS.items():
        if name not in arrays:  # the tracker's arrays, in a format 1 record
            continue
        shape = arrays[name].shape
        fits = len(shape) == 1 + len(width) and all(isinstance(w, str) or w == n for w, n in zip(width, shape[1:]))
        if shape[:1] != (frames,) or (frames and not fits):  # a record of no segments holds (0,) arrays
            expected = f"({', '.join(map(str, (frames, *width)))}{',' if not width else ''})"
            raise VasaError(f"training record {path} is inconsistent: its {name} array has shape {shape}, expected "
                            f"{expected} ({frames} frames, as its segment offsets say)")


def speaker_of(meta: dict) -> str:
    """A record's speaker from its metadata: the manifest's label, else the video itself ("video:NAME")."""
    info = meta.get("info") or {}
    return str(info.get("speaker") or f"video:{info.get('file') or meta['source']}")


def read_meta(path: str | os.PathLike) -> dict:
    """A record's metadata without its arrays (fast): source, info, dropped, sync, segments, plus `frames`."""
    path = Path(path)
    try:
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            meta["frames"] = int(data["offsets"][-1])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise VasaError(unreadable(path, error)) from None
    meta.setdefault("info", {})
    return meta


def record_files(folder: str | os.PathLike) -> list[Path]:
    """Every record under a prepared folder (OUT or OUT/records), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VasaError(f"no prepared data folder at {folder}")
    files = sorted((folder / "records").glob("*.npz")) if (folder / "records").is_dir() else []
    files = files or sorted(folder.glob("*.npz"))
    files = [f for f in files if not f.name.startswith(".")]
    if not files:
        raise VasaError(f"no training records in {folder}: run `vasa prepare VIDEOS {folder}` first")
    return files


def summary(records: list[Record]) -> dict:
    """Counts for reports: videos, segments, frames, dropped stretches by reason."""
    reasons: dict[str, int] = {}
    for record in records:
        for d in record.dropped:
            reasons[d["reason"]] = reasons.get(d["reason"], 0) + int(d.get("frames", 0))
    measured = [r for r in records if r.sync is not None]
    return {"videos": len(records), "segments": sum(len(r.segments) for r in records),
            "frames": sum(r.frames for r in records), "dropped_frames": reasons,
            "sync": {"measured": len(measured),
                     "corrected": {r.source: r.sync["offset_ms"] for r in measured if r.sync["corrected"]},
                     "large": {r.source: r.sync["offset_ms"] for r in measured
                               if r.sync["needs_correction"] and not r.sync["corrected"]},
                     "unclear": sorted(r.source for r in measured if not r.sync["clear"])}}


def record_dict(record: Record) -> dict:
    """The record's metadata (no arrays) as plain JSON-ready values."""
    return {"source": record.source, "info": record.info, "fps": record.fps, "segments": len(record.segments),
            "frames": record.frames, "dropped": record.dropped, "sync": record.sync,
            "segment_conditions": [{k: v.tolist() if isinstance(v, np.ndarray) else v
                                    for k, v in asdict(s).items() if k not in FRAME_ARRAYS + TRACKER_ARRAYS}
                                   for s in record.segments]}
