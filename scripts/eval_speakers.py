"""Lip sync, blinks and head motion of motion models on held-out speakers (a speaker split of a corpus).

    vasa prepare ../shared/media/train DATA --workers 2 --audio-encoder whisper-base --audio-layers 3
    python scripts/eval_speakers.py DATA MODEL [MODEL ...] --split data/corpus_split.json \
        --clips ../shared/media/train [--seeds 1] [--render] [--json out.json]

For every record of a validation speaker: the frame where its first kept segment starts is the
portrait (or the first kept frame after it where the portrait detector finds the face), the clip's
whole audio the speech (`TalkingHead`, default controls, one run per seed).
- motion space: the mouth opening of the generated facial dynamics against the record's tracked one,
  over the record's kept frames (no rendering: seconds per model), the spread of the generated mouth
  opening over the real one's (how far the lips move), and the head motion (deg/frame, VASA-1's
  delta-P) of the generated pose beside the record's;
- `--render`: the frames are rendered at 256 px and tracked again by the same tracker as the real clip,
  then mouth-opening r, blinks per minute and head motion (deg/frame) against the real clip's;
- `--own-motion` (with `--render`): the clip's own tracked motion rendered on the same portrait and
  tracked again, the same chain with nothing generated: what rendering and re-tracking alone do to the
  mouth r and the head motion (the like-for-like yardstick for the generated figures; `--seeds 0`
  measures it alone).
Each also with the audio rolled by 1 s (circularly): the control a model that ignores timing scores.
`--av-sync-correct` first takes out each clip's audio-visual offset where the prepare step's sync probe
found one to correct (the clip's lips scored against speech moved to where they are).
Figures are per speaker (records of one speaker averaged); the summary gives the distribution over
speakers and the mean per language.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # CTranslate2 threads; the 2 cores are shared

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from vasa.audio import load_audio
from vasa.data.prepare_video import audio_source
from vasa.data.records import Record, read_record, record_files
from vasa.data.splits import load_split
from vasa.data.sync import shift_waveform
from vasa.errors import VasaError
from vasa.evaluation.measure import shifted_waveform
from vasa.latents import FPS, SAMPLE_RATE
from vasa.media import iter_video_frames
from vasa.metrics.landmarks import blink_rate, measure_video, pose_variation
from vasa.pipeline import Controls, Renderer, TalkingHead

SIZE = 256


def mouth_of(head: TalkingHead, dynamics: np.ndarray) -> np.ndarray:
    model = head.face.model
    return model.mouth_opening(model.mean_shape + model.decode_dynamics(dynamics))  # (T,)


def kept(record: Record, length: int) -> np.ndarray:
    """Frame indices of the record's segments that fall inside `length` frames."""
    index = np.concatenate([np.arange(s.start_frame, s.start_frame + len(s)) for s in record.segments])
    return index[index < length]


def r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and np.std(a) > 0 and np.std(b) > 0 else float("nan")


def set_portrait(head: TalkingHead, frames: list[np.ndarray], record: Record) -> int:
    """The first kept frame whose face the portrait detector finds (tried every 5th kept frame; the tracker
    that kept the frames follows a face the still-image detector can miss, e.g. a small one at the start)."""
    for index in kept(record, len(frames))[::5]:
        try:
            head.set_source(frames[index])
            return int(index)
        except VasaError:
            continue
    raise VasaError(f"{record.source}: no kept frame has a face the portrait detector finds")


def evaluate(head: TalkingHead, record: Record, video: Path, seeds: list[int], render: bool,
             cfg_audio: float | None = None, av_sync_correct: bool = False,
             cfg_audio_pose: float | None = None, steps: int = 10, mouth_readout: float | None = None,
             own_motion: bool = False) -> dict:
    frames = list(iter_video_frames(video, FPS))
    set_portrait(head, frames, record)
    waveform = load_audio(audio_source(video))
    if av_sync_correct and record.sync is not None and record.sync["needs_correction"]:
        # the clip's own audio-visual offset taken out, as `vasa prepare --av-sync correct` does
        waveform = shift_waveform(waveform, record.sync["offset_frames"], FPS, SAMPLE_RATE)
    real_mouth = np.full(len(frames), np.nan)
    for s in record.segments:
        real_mouth[s.start_frame:s.start_frame + len(s)] = mouth_of(head, s.dynamics)[: len(frames) - s.start_frame]
    real_track = measure_video(head.face.model, frames, SIZE) if render else None
    real_head = [pose_variation(seg.pose) for seg in record.segments if len(seg) > 1]
    out: dict[str, list[float]] = defaultdict(list)
    if render and own_motion:
        out.update(rerender_own_motion(head, record, real_track))
    for seed in seeds:
        for name, audio in (("paired", waveform), ("shifted", shifted_waveform(waveform))):
            controls = Controls(seed=seed, cfg_audio=cfg_audio, cfg_audio_pose=cfg_audio_pose, steps=steps,
                                mouth_readout=mouth_readout)
            x = np.concatenate(list(head.motion(audio, controls)))  # (T, 46)
            pose, dynamics = head.space.to_absolute(x, head.source.reference)
            index = kept(record, min(len(dynamics), len(frames)))
            out[f"motion_r_{name}"].append(r(mouth_of(head, dynamics)[index], real_mouth[index]))
            if name == "paired":
                out["motion_head_deg"].append(pose_variation(pose))
                # how far the lips move: spread of the mouth opening, generated over real
                out["motion_mouth_spread_ratio"].append(float(np.std(mouth_of(head, dynamics)[index])
                                                              / np.std(real_mouth[index])))
            if not render:
                continue
            renderer = Renderer(head, fps=FPS)  # as `TalkingHead.frames` renders: blink control, resampling
            track = measure_video(head.face.model, list(renderer.push(x)), SIZE)
            n = min(len(track), len(real_track))
            both = track.found[:n] & real_track.found[:n]
            out[f"rendered_r_{name}"].append(r(track.mouth()[:n][both], real_track.mouth()[:n][both]))
            if name == "paired":
                out["blinks_per_min"].append(blink_rate(track))
                out["head_motion_deg"].append(pose_variation(track.pose, track.found))
    result = {k: float(np.nanmean(v)) for k, v in out.items()}
    result["real_motion_head_deg"] = float(np.mean(real_head)) if real_head else float("nan")
    if render:
        result["real_blinks_per_min"] = blink_rate(real_track)
        result["real_head_motion_deg"] = pose_variation(real_track.pose, real_track.found)
    return result


def rerender_own_motion(head: TalkingHead, record: Record, real_track) -> dict[str, list[float]]:
    """The record's tracked motion, segment by segment, rendered on the portrait and tracked again."""
    rendered_r, head_deg = [], []
    for segment in record.segments:
        if len(segment) < 3:
            continue
        x = head.space.to_relative(segment.pose, segment.dynamics, head.source.reference)
        track = measure_video(head.face.model, list(Renderer(head, fps=FPS).push(x)), SIZE)
        real = slice(segment.start_frame, segment.start_frame + len(track))
        both = track.found & real_track.found[real][: len(track)]
        rendered_r.append(r(track.mouth()[both], real_track.mouth()[real][: len(track)][both]))
        head_deg.append(pose_variation(track.pose, track.found))
    return {"own_motion_rendered_r": [float(np.nanmean(rendered_r))] if rendered_r else [],
            "own_motion_head_motion_deg": [float(np.nanmean(head_deg))] if head_deg else []}


def summary(rows: dict[str, dict], key: str) -> dict:
    values = np.array([row[key] for row in rows.values() if key in row and np.isfinite(row[key])])
    if not len(values):
        return {}
    return {"mean": float(values.mean()), "median": float(np.median(values)), "min": float(values.min()),
            "q25": float(np.quantile(values, 0.25)), "q75": float(np.quantile(values, 0.75)),
            "max": float(values.max()), "speakers": int(len(values))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prepared", type=Path, help="folder written by `vasa prepare` with the corpus manifest")
    parser.add_argument("models", nargs="+", help="motion models: paths or shipped names (default, live)")
    parser.add_argument("--split", type=Path, required=True, help="speaker split file (`vasa split`)")
    parser.add_argument("--clips", type=Path, required=True, help="the corpus folder the records came from")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps (vasa serve --steps; default 10)")
    parser.add_argument("--render", action="store_true", help="also render, re-track and measure (slow)")
    parser.add_argument("--cfg-audio", type=float, help="audio guidance scale lambda_A (default: the model's own)")
    parser.add_argument("--cfg-audio-pose", type=float, help="lambda_A on the head pose (default: the model's own)")
    parser.add_argument("--mouth-readout", type=float,
                        help="share of the model's mouth read-out, 0..1 (default: the model file's own)")
    parser.add_argument("--av-sync-correct", action="store_true",
                        help="take each held-out clip's measured audio-visual offset out of its speech first")
    parser.add_argument("--own-motion", action="store_true",
                        help="with --render: also render each clip's own tracked motion and track it again")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N held-out records (quick looks)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    split = load_split(args.split)
    records = [rec for rec in (read_record(p) for p in record_files(args.prepared))
               if split.holds_out(rec.speaker) and rec.segments]
    records = records[: args.limit] if args.limit else records
    if not records:
        parser.error("no held-out records with kept frames (check --split and PREPARED)")
    results = {}
    for name in args.models:
        head = TalkingHead.from_pretrained(name, size=SIZE)
        per_speaker: dict[str, list[dict]] = defaultdict(list)
        language = {}
        for record in records:
            video = args.clips / (record.info.get("file") or record.source)
            row = evaluate(head, record, video, list(range(args.seeds)), args.render, args.cfg_audio,
                           args.av_sync_correct, args.cfg_audio_pose, args.steps, args.mouth_readout,
                           args.own_motion)
            per_speaker[record.speaker].append(row)
            language[record.speaker] = record.info.get("language") or "?"
            print(f"  {record.speaker}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), file=sys.stderr,
                  flush=True)
        speakers = {s: {k: float(np.nanmean([row[k] for row in rows])) for k in rows[0]} for s, rows in per_speaker.items()}
        keys = sorted({k for row in speakers.values() for k in row})
        by_language = defaultdict(list)
        for s, row in speakers.items():
            if "motion_r_paired" in row:
                by_language[language[s]].append(row.get("rendered_r_paired", row["motion_r_paired"]))
        results[name] = {"speakers": speakers, "summary": {k: summary(speakers, k) for k in keys},
                         "by_language": {lang: {"mean_r": float(np.nanmean(v)), "speakers": len(v)}
                                         for lang, v in sorted(by_language.items())}}
        print(f"\n{name}: {len(speakers)} held-out speakers, {len(records)} records")
        print("| figure | mean | median | q25 | q75 | min | max |\n|---|---|---|---|---|---|---|")
        for k, s in results[name]["summary"].items():
            if s:
                print(f"| {k} | {s['mean']:.3f} | {s['median']:.3f} | {s['q25']:.3f} | {s['q75']:.3f} | "
                      f"{s['min']:.3f} | {s['max']:.3f} |")
        print("by language: " + ", ".join(f"{lang} {v['mean_r']:.3f} ({v['speakers']})"
                                          for lang, v in results[name]["by_language"].items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
