"""The held-out check of `vasa generate` (scripts/eval_generate.py, part a) and its acceptance targets.

A held-out clip's first frame is the portrait and its own audio the speech. Landmarks are re-extracted
from the generated and the real frames with the same tracker (`measure_video` at the same crop size) and
compared per frame (`vasa.metrics.landmarks.compare`), over seeds; then the same with the audio shifted by
SHIFT_S (circularly, `shifted_waveform`) against the unshifted real clip: the real pairing must score
clearly better.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from vasa.evaluation.controls import GAZE_GOAL_DEG
from vasa.evaluation.measure import FPS, SAMPLE_RATE, shifted_waveform
from vasa.evaluation.pictures import TILE
from vasa.metrics.landmarks import Track, blink_rate, compare, measure_video, pose_variation

MOUTH_CORRELATION_TARGET = 0.6
SYNC_MARGIN = 0.2  # "clearly better": paired mouth r above shifted by this much and by 3 seed spreads


def summarise_seeds(runs: list[dict]) -> dict:
    """{figure: {mean, sd, per_seed}} over seeds (sd: population standard deviation; nan ignored)."""
    out = {}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = {"mean": float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"),
                    "sd": float(np.nanstd(values)) if np.isfinite(values).any() else float("nan"),
                    "per_seed": values.tolist()}
    return out


def held_out_clip(head, path: Path, size: int, seeds: list[int], tile: int = TILE,
                  progress: Callable[[str], None] | None = None) -> tuple[dict, dict]:
    """(figures, kept) of one held-out clip: paired and shifted figures over `seeds`, the real clip's own
    figures and the still portrait's lip distance; kept: the first seed's paired frames and track and the
    real frames cropped as the portrait (side `tile`) and their track, for pictures."""
    from vasa.audio import load_audio
    from vasa.media import iter_video_frames
    from vasa.pipeline import Controls

    model = head.face.model
    real_frames = list(iter_video_frames(path, FPS))
    waveform = load_audio(path)
    head.set_source(real_frames[0])
    start = time.perf_counter()
    real = measure_video(model, real_frames, size)
    track_s = time.perf_counter() - start
    still = real[np.zeros(len(real), int)]  # the portrait never moving: a floor for the lip distance
    runs: dict[str, list[dict]] = {"paired": [], "shifted": []}
    keep = {}
    generate_s = 0.0
    for seed in seeds:
        for name, audio in (("paired", waveform), ("shifted", shifted_waveform(waveform))):
            start = time.perf_counter()
            frames = list(head.frames(audio, Controls(seed=seed)))
            generate_s += time.perf_counter() - start
            generated = measure_video(model, frames, size)
            runs[name].append(compare(generated, real))
            if seed == seeds[0] and name == "paired":
                keep = {"generated": frames, "track": generated}
            if progress is not None:
                progress(f"  {path.stem} seed {seed} {name}: mouth r = {runs[name][-1]['mouth_correlation']:.3f}")
    result = {
        "clip": path.stem, "frames_real": len(real_frames), "frames_generated": len(keep["generated"]),
        "audio_s": len(waveform) / SAMPLE_RATE, "real_found": int(real.found.sum()),
        "real": {"head_motion_deg": pose_variation(real.pose, real.found), "blinks_per_min": blink_rate(real),
                 "mouth_opening_std": float(np.std(real.mouth()[real.found])),
                 "av_sync": real_clip_sync(waveform, real)},
        "still_portrait": {k: v for k, v in compare(still, real).items()
                           if k in ("lip_distance_centred", "lip_distance_raw")},
        "paired": summarise_seeds(runs["paired"]),
        "shifted": summarise_seeds(runs["shifted"]),
        "generate_s_per_run": generate_s / (2 * len(seeds)),
        "track_real_s": track_s,
    }
    keep["real"] = [head.source.appearance.crop.with_size(tile).apply(f) for f in real_frames]
    keep["real_track"] = real
    return result, keep


def real_clip_sync(waveform: np.ndarray, real: Track) -> dict | None:
    """The real clip's own audio-visual offset, read by `vasa prepare`'s sync probe (context for the timing)."""
    from vasa.audio import load_encoder
    from vasa.data.sync import SyncProbe, estimate_offset

    probe = SyncProbe.load()
    features = load_encoder(probe.audio_encoder, fps=FPS).encode(waveform).features
    n = min(len(features), len(real))
    keep = real.found[:n]
    estimate = estimate_offset(probe, [(features[:n][keep], real.mouth()[:n][keep])], FPS)
    return estimate.as_dict() if estimate is not None else None


def acceptance(results: dict) -> dict:
    """The targets, pass or fail: per held-out clip mouth r >= MOUTH_CORRELATION_TARGET and the paired audio
    clearly better than the shifted; the mean gaze error of the controls within GAZE_GOAL_DEG."""
    out = {}
    for r in results.get("held_out", []):
        paired, shifted = r["paired"]["mouth_correlation"], r["shifted"]["mouth_correlation"]
        margin = paired["mean"] - shifted["mean"]
        out[r["clip"]] = {
            "mouth_correlation": paired["mean"], "meets_0.6": bool(paired["mean"] >= MOUTH_CORRELATION_TARGET),
            "sync_margin": margin,
            "paired_clearly_better": bool(margin >= SYNC_MARGIN and margin >= 3 * max(paired["sd"], shifted["sd"])),
            "lip_distance_centred_paired_below_shifted": bool(r["paired"]["lip_distance_centred"]["mean"]
                                                              < r["shifted"]["lip_distance_centred"]["mean"]),
        }
    if "controls" in results:
        error = results["controls"]["mean_gaze_error_deg"]
        out["gaze"] = {"mean_error_deg": error, f"meets_{GAZE_GOAL_DEG:g}_deg": bool(error <= GAZE_GOAL_DEG)}
    return out
