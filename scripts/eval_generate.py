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
The measurements are `vasa.evaluation` (heldout, controls, robustness), shared with `vasa eval --benchmark`.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # CTranslate2 (Whisper) threads; the 2 cores are shared

import argparse
import hashlib
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vasa.audio import load_audio
from vasa.data.records import EMOTION_NAMES
from vasa.demo import demo_portrait
from vasa.evaluation import pictures
from vasa.evaluation.controls import GAZE_GOAL_DEG, controls_summary, portrait_controls
from vasa.evaluation.heldout import SYNC_MARGIN, acceptance, held_out_clip
from vasa.evaluation.measure import FPS, SAMPLE_RATE, SHIFT_S
from vasa.evaluation.pictures import label, tile
from vasa.evaluation.report import to_json
from vasa.evaluation.robustness import (MOUTH_CLOSED_TOLERANCE, SILENCE_MIN_FRAMES, SILENCE_RMS_FRACTION,
                                        SILENCE_SKIP_FRAMES, robustness, timed_generate)
from vasa.media import read_audio, read_image, write_video, write_wav
from vasa.metrics.landmarks import BLINK_FRACTION, BLINK_FRAMES, OPEN_EYES_FRACTION
from vasa.pipeline import Controls, TalkingHead, model_card

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO / ".." / "shared" / "media"
GAZE_REQUESTS = ((15.0, 0.0), (-15.0, 0.0), (0.0, 10.0), (0.0, -10.0), (0.0, 0.0))
DISTANCE_REQUESTS = (0.8, 1.0, 1.25)
EMOTION_REQUESTS = EMOTION_NAMES  # all seven, weight 1 each
CONTROL_CLIP = "retalking_2"
LONG_AUDIO_S = 600.0
LONG_SPEECH = "anitalker_english_female.wav"
STRIP_FRAMES = 6
VIDEO_CRF = 28


def progress(line: str) -> None:
    print(line, flush=True)


# --- b. controls ------------------------------------------------------------------------------------------
def controls_portrait(head: TalkingHead, name: str, image: np.ndarray, waveform: np.ndarray) -> tuple[list, dict]:
    """Every control request on one portrait: measured rows and one labelled frame per request."""
    rows, tiles = [], {}
    for row, frame in portrait_controls(head, name, image, waveform, GAZE_REQUESTS, DISTANCE_REQUESTS,
                                        EMOTION_REQUESTS):
        rows.append(row)
        kind, value = row["kind"], row["request"]
        text = {"gaze": lambda v: f"gaze ({v[0]:+.0f},{v[1]:+.0f})", "distance": lambda v: f"distance {v:.2f}",
                "emotion": lambda v: v}[kind](value)
        tiles[(kind, value)] = label(tile(frame), f"{name}\n{text}")
        print(f"  {name} {kind} {value}: " + ", ".join(f"{k_}={v}" for k_, v in row.items()
                                                       if k_.startswith(("error", "measured", "mouth_w"))), flush=True)
    return rows, tiles


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


# --- c. robustness: the long run in a child process (a clean peak memory) ---------------------------------
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
    print(json.dumps(timed_generate(model_path, size, wav, mp4)))


# --- d. pictures and videos ------------------------------------------------------------------------------------
def save_png(path: Path, image: np.ndarray) -> None:
    pictures.save_png(path, image)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


def clip_pictures(path: Path, keep: dict, out: Path) -> dict:
    """docs/video/sidebyside_<clip>.mp4 (real | generated, with the clip's audio) and a 6-frame strip."""
    real, generated = keep["real"], [tile(f) for f in keep["generated"]]
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
            result, keep = held_out_clip(head, path, args.size, seeds, progress=progress)
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
        results["controls"] = {"audio": CONTROL_CLIP, "rows": rows, **controls_summary(rows)}
        save_png(args.out / "img" / "generate_controls.png", control_sheet(tiles, list(portraits)))
    if "robustness" in args.parts:
        print("robustness", flush=True)
        clip_audio = load_audio(args.media / "clips" / f"{CONTROL_CLIP}.mp4")
        results["robustness"], shown = robustness(head, args.media, clip_audio, progress=progress)
        save_png(args.out / "img" / "generate_robustness.png", np.hstack([label(tile(f), text) for f, text in shown]))
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
