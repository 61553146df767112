"""Fit or train a judge on records written by `vasa prepare`: CAPP (audio-pose, VASA-1 Sec. 4.1) or the
offline lip-sync judge (audio-lip landmarks).

    vasa train capp --data prepared/ --out runs/capp --split data/corpus_split.json
    vasa train lipsync --data prepared/ --out runs/lipsync --holdout retalking_2 sadtalker_WDA_AOC_000

By default (`--method readout`) the judge is a ridge read-out of the speech (`vasa.metrics.readout_judge`),
fitted in one pass over the training records (a minute for the 30 k frames of the corpus); it tells true
from time-shifted pairs of unseen speakers far better than the contrastive judges.

`--method contrastive` trains those (`vasa.metrics.contrastive`) in one flat loop in one process, reusing
the motion trainer's pieces (learning-rate schedule, EMA, atomic state, metrics.jsonl): AdamW, warmup then
cosine decay, an EMA copy (what ships), CLIP's symmetric InfoNCE loss. A batch is `batch_size / group`
segments with `group` windows each at random times: the other windows of the same clip are the hard
negatives that make the judge look at timing rather than at who is speaking. Running the same command
again resumes from state.pt.

Either way the judge is scored at the end on the held-out records (true vs time-shifted pairs) and the
figures go into its file. Outputs in --out: judge.safetensors (weights + config + held-out figures),
train_config.json; contrastive runs also state.pt and metrics.jsonl.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vasa.data.records import Record, read_record
from vasa.errors import VasaError
from vasa.face.mesh.model import FaceModel
from vasa.metrics.contrastive import (PRESETS, STD_FLOOR, ContrastiveJudge, lip_features, pose_features,
                                      save_judge, shift_separation)
from vasa.metrics.readout_judge import READOUT_STRENGTH, fit_readout_judge
from vasa.outputs import check_output_folder
from vasa.train.common import (
    Metrics, Processes, RunConfig, ema_decay, learning_rate, load_state, save_atomic, split_records, update_ema,
)
from vasa.train.options import option

SEPARATION_SHIFTS = {"capp": [5, 10, 25], "lipsync": [3, 6, 12]}  # frames, held-out true-vs-shifted check
SEPARATION_HOP = 5  # frames between scored windows in that check
METHODS = ("readout", "contrastive")


@dataclass(frozen=True, kw_only=True)
class JudgeTrainConfig(
    RunConfig,
    out=option(help="run folder: judge.safetensors, state.pt, metrics"),
    preset=option("", "judge size, a name in vasa.metrics.contrastive.PRESETS", default_text="the kind's"),
    steps=option(3000, "optimiser steps in all"), batch_size=option(64, "windows per step"), lr=3e-4,
    weight_decay=option(0.01, cli=False), warmup_steps=100, min_lr_ratio=option(0.1, cli=False),
    ema_decay=option(0.995, cli=False), log_every=50, save_every=500,
    holdout=option((), "records (video stems) kept out of training and scored at the end", metavar="NAME"),
):
    """Everything a run depends on: the fields every trainer has (`vasa.train.common.RunConfig`) with this
    trainer's defaults, then its own; each field but kind (the command's name) and the optimiser's
    weight_decay, min_lr_ratio and ema_decay is the `vasa train capp|lipsync` option of its name
    (`vasa.train.options`)."""

    kind: str = option("capp", cli=False)  # "capp" or "lipsync"
    group: int = option(8, "windows per clip in a batch, the hard negatives")
    method: str = option("readout", "readout: a ridge read-out of the speech, fitted in one pass (the optimiser's "
                         "options do not apply); contrastive: two transformers trained with CLIP's loss",
                         choices=METHODS)

    def __post_init__(self):
        if self.kind not in ("capp", "lipsync"):
            raise VasaError(f"judge kind must be capp or lipsync, got {self.kind!r}")
        if self.method not in METHODS:
            raise VasaError(f"judge method must be {' or '.join(METHODS)}, got {self.method!r}")
        if self.preset and self.preset not in PRESETS:
            raise VasaError(f"unknown preset {self.preset!r}: choose from {', '.join(PRESETS)}")
        if self.batch_size % self.group:
            raise VasaError(f"batch size {self.batch_size} is not a multiple of group {self.group}")
        for name in ("steps", "batch_size", "group", "log_every", "save_every"):
            if getattr(self, name) < 1:
                raise VasaError(f"{name} must be at least 1, got {getattr(self, name)}")


def record_sequences(records: list[Record], kind: str, face_model: FaceModel) -> list[tuple[np.ndarray, np.ndarray]]:
    """(motion features (T, M), audio features (T, D)) per segment."""
    out = []
    for record in records:
        for s in record.segments:
            if kind == "capp":
                motion = pose_features(s.pose)
            else:
                motion = lip_features(face_model.mean_shape + face_model.decode_dynamics(s.dynamics))
            out.append((motion, s.audio.astype(np.float32)))
    return out


def feature_stats(sequences: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(motion std of segment-centred frames (M,), audio mean (D,), audio std (D,))."""
    motion = np.concatenate([m - m.mean(axis=0) for m, _ in sequences])
    audio = np.concatenate([a for _, a in sequences])
    return (np.maximum(motion.std(axis=0), STD_FLOOR), audio.mean(axis=0),
            np.maximum(audio.std(axis=0), STD_FLOOR))


def sample_batch(sequences, window: int, batch_size: int, group: int,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """motion (B, W, M), audio (B, W, D): batch_size / group segments (weighted by length), group windows each."""
    lengths = np.array([len(m) for m, _ in sequences], float)
    usable = np.maximum(lengths - window + 1, 0)
    picks = rng.choice(len(sequences), size=batch_size // group, p=usable / usable.sum())
    motion, audio = [], []
    for k in picks:
        m, a = sequences[k]
        for start in rng.integers(0, len(m) - window + 1, size=group):
            motion.append(m[start:start + window])
            audio.append(a[start:start + window])
    return torch.from_numpy(np.stack(motion)), torch.from_numpy(np.stack(audio))


def say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def train_judge(config: JudgeTrainConfig) -> Path:
    """Train (or resume) the judge in config.out; returns the path of judge.safetensors."""
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    model_path, state_path = out / "judge.safetensors", out / "state.pt"
    check_output_folder(out, "run folder")
    face_model = FaceModel.load()
    training_files, held_out_files = split_records(config, Processes())
    if config.method == "readout":
        return fit_judge(config, training_files, held_out_files, face_model)
    records = [read_record(f) for f in training_files]
    model_config = PRESETS[config.preset or config.kind]
    train = [s for s in record_sequences(records, config.kind, face_model) if len(s[0]) >= model_config.window_frames]
    if not train:
        raise VasaError(f"no training segment is as long as the judge's window ({model_config.window_frames} frames)")
    audio_dim = train[0][1].shape[1]
    model_config = replace(model_config, kind=config.kind, motion_dim=train[0][0].shape[1], audio_dim=audio_dim)
    held_out = record_sequences([read_record(f) for f in held_out_files], config.kind, face_model)

    torch.manual_seed(config.seed)
    model = ContrastiveJudge(model_config)
    for buffer, value in zip((model.motion_std, model.audio_mean, model.audio_std), feature_stats(train)):
        buffer.copy_(torch.from_numpy(value))
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    rng = np.random.default_rng(config.seed)
    step, seconds_before = 0, 0.0
    if state_path.exists():
        state = load_state(state_path, model_config)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        step, seconds_before = state["step"], state["seconds"]
        say(f"resumed {out} at step {step}")

    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
    metrics = Metrics(out, say, tag=config.kind, step=step)
    say(f"{config.kind} judge: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
        f"{len(train)} segments ({sum(len(m) for m, _ in train)} frames), {len(held_out)} held-out segments")
    started_at, started = step, time.perf_counter()
    progress = tqdm(total=config.steps, initial=step, desc=config.kind, dynamic_ncols=True)
    loss_sum, loss_count = 0.0, 0
    while step < config.steps:
        lr = learning_rate(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        motion, audio = sample_batch(train, model_config.window_frames, config.batch_size, config.group, rng)
        loss = model.loss(motion, audio)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        update_ema(ema, model, ema_decay(config, step))
        step += 1
        loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
        progress.update(1)
        last = step == config.steps
        if step % config.log_every == 0 or last:
            metrics.write({"step": step, "loss": loss_sum / loss_count, "lr": lr, "grad_norm": grad_norm.item(),
                           "seconds": seconds_before + time.perf_counter() - started})
            progress.set_postfix(loss=f"{loss_sum / loss_count:.3f}")
            loss_sum, loss_count = 0.0, 0
        if step % config.save_every == 0 or last:
            figures = {}
            if last and held_out:
                figures = {"held_out": [f.stem for f in held_out_files],
                           "separation": shift_separation(ema, held_out, SEPARATION_SHIFTS[config.kind], SEPARATION_HOP)}
            save_judge(model_path, ema, {"audio_encoder": records[0].audio_encoder, "fps": str(records[0].fps),
                                         "step": str(step), **figures})
            save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                         "step": step, "seconds": seconds_before + time.perf_counter() - started,
                         "rng": rng.bit_generator.state, "model_config": asdict(model_config)}, state_path)
            if figures:
                say(f"held-out {', '.join(figures['held_out'])}: {figures['separation']}")
    progress.close()
    metrics.close()
    say(f"wrote {model_path} (step {step})" if started_at < step else
        f"{out} is already at step {step}: nothing to do (a larger --steps trains on)")
    return model_path


def fit_judge(config: JudgeTrainConfig, training_files: list[Path], held_out_files: list[Path],
              face_model: FaceModel) -> Path:
    """The read-out judge (`vasa.metrics.readout_judge`) fitted on the training records, scored on the
    held-out ones like a trained judge; written to config.out / judge.safetensors."""
    out = Path(config.out)
    records = [read_record(f) for f in training_files]
    held_records = [read_record(f) for f in held_out_files]
    kinds = {(r.audio_encoder, s.audio.shape[1]) for r in records + held_records for s in r.segments}
    if len(kinds) > 1:
        raise VasaError(f"the records in {config.data} hold different speech features "
                        f"({', '.join(f'{e}: {d}-d' for e, d in sorted(kinds))}): prepare them with one encoder")
    train = [s for s in record_sequences(records, config.kind, face_model) if len(s[0]) > 1]
    if not train:
        raise VasaError(f"no training segment in {config.data} has two frames")
    started = time.perf_counter()
    judge = fit_readout_judge(config.kind, train, READOUT_STRENGTH[config.kind])
    frames = sum(len(m) for m, _ in train)
    say(f"{config.kind} read-out judge: fitted on {len(train)} segments ({frames} frames) "
        f"in {time.perf_counter() - started:.1f} s")
    figures = {}
    held_out = record_sequences(held_records, config.kind, face_model)
    shifts = SEPARATION_SHIFTS[config.kind]
    if any(len(m) >= judge.config.window_frames + 2 * max(shifts) for m, _ in held_out):
        figures = {"held_out": [f.stem for f in held_out_files],
                   "separation": shift_separation(judge, held_out, shifts, SEPARATION_HOP)}
        say(f"held-out {', '.join(figures['held_out'])}: {figures['separation']}")
    elif held_out:
        say(f"no held-out segment is {judge.config.window_frames + 2 * max(shifts)} frames long: not scored")
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
    model_path = out / "judge.safetensors"
    save_judge(model_path, judge, {"audio_encoder": records[0].audio_encoder, "fps": str(records[0].fps),
                                   "method": "readout", "training_frames": str(frames), **figures})
    say(f"wrote {model_path}")
    return model_path
