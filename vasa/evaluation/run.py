"""`vasa eval`: evaluate a folder of generated videos (any method's), or generate and evaluate a benchmark.

    vasa eval GENERATED/ [--real REAL/] [--audio AUDIO/] [--portraits PORTRAITS/] --out REPORT/
    vasa eval --benchmark CASES/ --out REPORT/ [--model M.safetensors] [--size 256] [--cases a b]

A generated video `x.mp4` is judged with its own soundtrack (or AUDIO/x.*), compared with REAL/x.mp4 when
that exists, and with the portrait PORTRAITS/x.* (default: the real video's first frame) for identity.
A benchmark case is CASES/x.mp4, a real talking video (its first frame is the portrait, its soundtrack the
speech), or CASES/x.png|jpg + CASES/x.wav without a real video; `vasa generate` runs on each case into
REPORT/videos/, then the folder is evaluated against the real videos, with a real-video row.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vasa.errors import VasaError
from vasa.outputs import check_output_folder
from vasa.evaluation import measure
from vasa.evaluation.controls import control_errors
from vasa.evaluation.measure import SHIFT_S, Judges, VideoMeasures
from vasa.evaluation.report import write_report
from vasa.metrics.fvd import frechet_distance

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".mp4")


def _find(folder: Path | None, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    if folder is None:
        return None
    for suffix in suffixes:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _videos(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise VasaError(f"no folder {folder}")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith("."))
    if not found:
        raise VasaError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {folder}")
    return found


def _mean(rows: list[dict], key: str):
    values = [r[key] for r in rows if isinstance(r.get(key), (float, int)) and not isinstance(r.get(key), bool)]
    values = [v for v in values if np.isfinite(v)]
    if values:
        return float(np.mean(values))
    notes = [r[key] for r in rows if isinstance(r.get(key), str)]
    return notes[0] if notes else float("nan")


def evaluate_folder(judges: Judges, generated: Path, out: Path, real: Path | None = None, audio: Path | None = None,
                    portraits: Path | None = None, method: str = "generated", title: str = "Evaluation",
                    command: str = "vasa eval", extra: dict | None = None) -> Path:
    """Measure every video in `generated` (and its real counterpart), write the report to `out`."""
    from vasa.media import read_image

    videos = _videos(generated)
    for what, folder in (("real videos", real), ("speech", audio), ("portraits", portraits)):
        if folder is not None and not folder.is_dir():
            raise VasaError(f"no folder of {what} at {folder}")
    check_output_folder(out, "report folder")
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"videos": {}, "skipped": dict(judges.notes), **(extra or {})}
    pairs: list[tuple[VideoMeasures, VideoMeasures | None]] = []
    for path in tqdm(videos, desc="evaluate", unit="video"):
        real_path = _find(real, path.stem, VIDEO_SUFFIXES)
        audio_path = _find(audio, path.stem, AUDIO_SUFFIXES)
        if audio_path is None and not _has_audio(path) and real_path is not None:
            audio_path = real_path
        g = measure.measure_video_file(judges, path, audio_path)
        r = measure.measure_video_file(judges, real_path) if real_path is not None else None
        portrait_path = _find(portraits, path.stem, IMAGE_SUFFIXES)
        portrait = read_image(portrait_path) if portrait_path else (r.frames[0] if r is not None else None)
        entry = {"generated": measure.video_metrics(judges, g, portrait)}
        if r is not None:
            entry["real"] = measure.video_metrics(judges, r, portrait)
            entry["paired"] = measure.paired_metrics(g, r)
        results["videos"][path.stem] = entry
        if judges.i3d is None:  # only FVD needs the pixels again: keep tracks and audio, not frames
            for m in (g, r):
                if m is not None:
                    m.frames, m.crop_frames = [], []
        pairs.append((g, r))
    results["summary"] = summarise(judges, results["videos"], pairs, method)
    reals = [r for _, r in pairs if r is not None]
    if reals:
        results["sanity"] = measure.sanity_tables(judges, reals)
    return write_report(out, results, pairs, title, command)


def _has_audio(path: Path) -> bool:
    from vasa.media import probe_video

    return probe_video(path).has_audio


def summarise(judges: Judges, videos: dict, pairs: list, method: str) -> dict:
    """Rows of the summary table: the real videos (when given) and the generated ones, means over videos."""
    keys = sorted({k for entry in videos.values() for row in entry.values() for k in row})
    summary = {}
    reals = [e["real"] for e in videos.values() if "real" in e]
    if reals:
        summary["real video"] = {k: _mean(reals, k) for k in keys}
        summary["real video"].update(mouth_correlation=1.0, lip_distance=0.0, fd_motion=0.0)
        shifted = [measure.shifted_audio_metrics(judges, r) for _, r in pairs if r is not None]
        summary[f"real video, audio shifted {SHIFT_S:g} s"] = {k: _mean(shifted, k) for k in shifted[0]}
    rows = [{**e["generated"], **e.get("paired", {})} for e in videos.values()]
    summary[method] = {k: _mean(rows, k) for k in keys}
    with_real = [(g, r) for g, r in pairs if r is not None]
    if with_real:
        fd = frechet_distance(np.concatenate([measure.motion_descriptors(r) for _, r in with_real]),
                              np.concatenate([measure.motion_descriptors(g) for g, _ in with_real]))
        summary[method]["fd_motion"] = fd
        if judges.i3d is not None:
            from vasa.metrics.fvd import fvd

            summary[method]["fvd25"] = fvd(judges.i3d, [np.stack(r.frames) for _, r in with_real],
                                           [np.stack(g.frames) for g, _ in with_real])
            summary["real video"]["fvd25"] = 0.0
        else:
            summary[method]["fvd25"] = summary["real video"]["fvd25"] = judges.notes["fvd"]
    for row in summary.values():
        row.pop("lipsync_curve", None)
    return summary


# --- benchmark ----------------------------------------------------------------------------------------------
def benchmark_cases(folder: Path, only: list[str] | None = None) -> list[dict]:
    """{name, portrait (path or None: the real video's first frame), audio, real (path or None)} per case."""
    if not folder.is_dir():
        raise VasaError(f"no benchmark folder {folder}")
    cases = []
    stems = sorted({p.stem for p in folder.iterdir() if not p.name.startswith(".")})
    for stem in stems:
        real = _find(folder, stem, VIDEO_SUFFIXES)
        portrait = _find(folder, stem, IMAGE_SUFFIXES)
        speech = _find(folder, stem, (".wav", ".mp3", ".flac", ".m4a", ".ogg"))
        if real is not None and not _has_audio(real) and speech is None:
            continue  # a silent video is no talking case
        if real is not None:
            cases.append({"name": stem, "portrait": portrait, "audio": speech or real, "real": real})
        elif portrait is not None and speech is not None:
            cases.append({"name": stem, "portrait": portrait, "audio": speech, "real": None})
    if only:
        unknown = sorted(set(only) - {c["name"] for c in cases})
        if unknown:
            raise VasaError(f"no case {', '.join(unknown)} in {folder} (cases: {', '.join(c['name'] for c in cases)})")
        cases = [c for c in cases if c["name"] in only]
    if not cases:
        raise VasaError(f"no benchmark case in {folder}: a real talking video x.mp4, or x.png + x.wav")
    return cases


def run_benchmark(folder: Path, out: Path, model: str | Path | None = None, size: int = 256, seed: int = 0,
                  only: list[str] | None = None, controls: bool = True, judges: Judges | None = None,
                  command: str = "vasa eval --benchmark", work: Path | None = None) -> Path:
    """Generate every case with the motion model into WORK/videos (portraits into WORK/portraits; WORK
    defaults to `out`), then evaluate against the real videos."""
    from vasa.media import iter_video_frames, read_image
    from vasa.pipeline import Controls, TalkingHead, model_card

    judges = judges or Judges.load(size=size)
    cases = benchmark_cases(folder, only)
    work = work or out
    check_output_folder(out, "report folder")
    check_output_folder(work, "work folder")
    videos, portraits = work / "videos", work / "portraits"
    videos.mkdir(parents=True, exist_ok=True)
    portraits.mkdir(parents=True, exist_ok=True)
    head = TalkingHead.from_pretrained(model, size=size)
    timings = {}
    for case in cases:
        image = read_image(case["portrait"]) if case["portrait"] else next(iter_video_frames(case["real"], measure.FPS))
        _save_png(portraits / f"{case['name']}.png", image)
        start = time.perf_counter()
        try:
            head.set_source(image)
            head.generate(case["audio"], videos / f"{case['name']}.mp4", Controls(seed=seed))
        except VasaError as error:
            raise VasaError(f"benchmark case {case['name']}: {error}") from None
        timings[case["name"]] = time.perf_counter() - start
    extra = {"benchmark": {"cases": [{k: str(v) if v is not None else None for k, v in c.items()} for c in cases],
                           "model": str(model or "shipped default"), "model_card": model_card(model),
                           "size": size, "seed": seed, "generate_s": timings}}
    if controls:
        extra["controls"] = control_errors(head, judges, cases[0])
    real_dir = folder if any(c["real"] for c in cases) else None
    preamble = [f"Cases: {', '.join(c['name'] for c in cases)} from `{folder}`; generated at {size} px, seed {seed}, "
                f"with {model or 'the shipped default motion model'}. The portrait of a case with a real video is "
                "its first frame and the speech its soundtrack; the real-video row measures the real clips the same "
                "way.", ""]
    return evaluate_folder(judges, videos, out, real=real_dir, portraits=portraits, method="vasa (generated)",
                           title="Benchmark", command=command, extra={**extra, "preamble": preamble})


def _save_png(path: Path, image: np.ndarray) -> None:
    import cv2

    temporary = path.with_name(f".{path.stem}.tmp.png")
    if not cv2.imwrite(str(temporary), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise VasaError(f"cannot write {path}")
    os.replace(temporary, path)
