"""Train the motion generator (`MotionDiT`) on records written by `vasa prepare`: one flat loop.

    vasa train motion --data prepared/ --out runs/motion --preset default --steps 100000
    python -m vasa.train.motion --data prepared/ --out runs/motion              # the same command
    torchrun --nproc_per_node 8 -m vasa.train.motion --data prepared/ --out runs/motion   # 8 GPUs (DDP)
    torchrun --nproc_per_node 2 -m vasa.cli train motion --data prepared/ --out runs/motion --device cpu

The loop: AdamW, linear warmup then cosine decay of the learning rate, gradient clipping, an EMA copy of
the weights (what ships), the diffusion loss of Eq. 1 with condition dropout (`vasa.motion.diffusion`).
Running the same command again with the same `--out` resumes from `state.pt`, bit for bit.

Outputs in --out (written by rank 0 only):
    model.safetensors   EMA weights + config + normalisation statistics (`vasa.motion.load_motion_model`),
                        and the mouth read-out fitted on the training records (`vasa.motion.readout`)
    state.pt            everything to resume: weights, EMA, optimiser, step, every rank's RNG states
    metrics.jsonl       one JSON line per log: step, loss, val_loss, lr, grad_norm, seconds
    tb/                 TensorBoard event files (when tensorboard is installed)
    train_config.json   the TrainConfig of the latest start

Multi-process: under torchrun (env RANK, WORLD_SIZE, LOCAL_RANK) every process joins a process group
(gloo on CPU, nccl on CUDA) and the model is wrapped in DistributedDataParallel; the effective batch is
world_size x batch_size. Each rank samples its own windows (seed + rank).
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from vasa.data.records import read_record, record_files
from vasa.data.windows import Augment, Batch, MotionData, motion_stats, sample_batch, validation_batches
from vasa.errors import VasaError
from vasa.motion.checkpoint import save_motion_model
from vasa.motion.config import PRESETS, MotionConfig
from vasa.motion.diffusion import Schedule, cosine_schedule, diffusion_loss, drop_conditions, truncate_audio
from vasa.motion.dit import Conditions, Dropped, MotionDiT
from vasa.motion.readout import DEFAULT_BLEND, context_for_window
from vasa.train.common import (
    Metrics, Processes, TorchrunConfig, check_run_config, ema_decay, finish_run, learning_rate, load_state,
    restore_rng, rng_states, run_processes, save_atomic, split_records, update_ema,
)
from vasa.train.options import option
from vasa.train.readout import fit_readout

MAX_VALIDATION_WINDOWS = 2048  # a fixed subset keeps validation cheap on big held-out sets


@dataclass(frozen=True, kw_only=True)
class TrainConfig(
    TorchrunConfig,
    preset=option("default", "model size, a name in vasa.motion.PRESETS: tiny, small, default, base"),
    steps=100_000, batch_size=64, lr=2e-4, weight_decay=0.01, warmup_steps=200,
    log_every=50, val_every=1000, save_every=1000,
    seed=option(0, "seed of weights, windows and noise"),
    holdout=option((), "records (video stems) kept out of training for the validation loss", metavar="NAME"),
):
    """Everything a run depends on; each field is the `vasa train motion` option of its name, its help says
    what it is (`vasa.train.options`): the fields every trainer has (`vasa.train.common.RunConfig`,
    `TorchrunConfig`) with this trainer's defaults, then its own. The validation loss is of the held-out
    records: those named in holdout (the video's stem) and the validation speakers' of the split file."""

    augment: bool = option(True, "turn off the gaze, distance and speed augmentations (`vasa.data.windows.Augment`)")
    mouth_readout: float = option(DEFAULT_BLEND, "share of the mouth read-out (`vasa.motion.readout`, fitted on the "
                                  "training records and saved with the model) in the generated mouth; 0 = none")

    def __post_init__(self):
        check_run_config(self, PRESETS)
        if not 0.0 <= self.mouth_readout <= 1.0:
            raise VasaError(f"mouth_readout must be between 0 and 1, got {self.mouth_readout}")


# --- processes and data ----------------------------------------------------------------------------------


def shared_stats(data: MotionData, procs: Processes, device: torch.device, config: MotionConfig,
                 augment: Augment, seed: int) -> tuple[Tensor, Tensor]:
    """Normalisation mean and std (46,) of the (augmented) training windows of every rank: moments summed
    across ranks, so every rank gets the same numbers. Also checks that all ranks read data prepared the
    same way."""
    frames, total, squares = data.augmented_moments(config, augment, seed=seed + procs.rank)
    if procs.distributed:
        kinds: list = [None] * procs.world
        dist.all_gather_object(kinds, (data.audio_dim, data.face_backend, data.audio_encoder, data.fps))
        if len(set(kinds)) > 1:
            raise VasaError(f"ranks read records prepared differently (audio dim, face, encoder, fps): {kinds}")
        moments = torch.tensor(np.concatenate([[frames], total, squares]), dtype=torch.float64, device=device)
        dist.all_reduce(moments)
        moments = moments.cpu().numpy()
        frames, total, squares = moments[0], moments[1:1 + len(total)], moments[1 + len(total):]
    mean, std = motion_stats(frames, total, squares)
    return torch.from_numpy(mean), torch.from_numpy(std)


# --- loss ------------------------------------------------------------------------------------------------
def conditions(model: MotionDiT, batch: Batch, audio_valid: Tensor) -> Conditions:
    return Conditions(audio=batch.audio, context_motion=model.normalize(batch.context_motion),
                      context_audio=batch.context_audio, gaze=batch.gaze, distance=batch.distance,
                      emotion=batch.emotion, audio_valid=audio_valid)


def training_loss(network: nn.Module, model: MotionDiT, schedule: Schedule, batch: Batch,
                  generator: torch.Generator) -> Tensor:
    """Eq. 1 on one batch. `network` runs the forward (the DDP wrapper or the model itself); `model` gives
    the normalisation. t, noise, condition dropout and audio truncation come from `generator` (CPU)."""
    B, W, M = batch.x0.shape
    device = batch.x0.device
    t = torch.randint(0, schedule.steps, (B,), generator=generator)
    noise = torch.randn((B, W, M), generator=generator)
    dropped = drop_conditions(B, generator)
    dropped = replace(dropped, context=dropped.context | ~batch.has_context.cpu())  # no context: always dropped
    truncated = truncate_audio(B, W, generator)
    dropped = Dropped(**{f.name: getattr(dropped, f.name).to(device) for f in fields(dropped)})
    cond = conditions(model, batch, batch.audio_valid & truncated.to(device))
    return diffusion_loss(network, schedule, model.normalize(batch.x0), cond, dropped, t.to(device), noise.to(device))


@torch.no_grad()
def validation_loss(model: MotionDiT, schedule: Schedule, batches: list[Batch], seed: int,
                    device: torch.device, amp: bool) -> float:
    """Mean loss over fixed batches with every condition kept (context where there is one) and t, noise
    drawn from a generator reset to `seed`: the same numbers at every evaluation, so steps compare."""
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        B, W, M = batch.x0.shape
        t = torch.randint(0, schedule.steps, (B,), generator=generator).to(device)
        noise = torch.randn((B, W, M), generator=generator).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            cond = conditions(model, batch, batch.audio_valid)
            loss = diffusion_loss(model, schedule, model.normalize(batch.x0), cond, Dropped(context=~batch.has_context),
                                  t, noise)
        total, count = total + loss.item() * B, count + B
    return total / count


# --- state -----------------------------------------------------------------------------------------------


# --- the loop --------------------------------------------------------------------------------------------
def train_motion(config: TrainConfig) -> Path:
    """Train (or resume) the run in config.out; returns the path of the EMA weights, model.safetensors."""
    return run_processes(config, _train)


def _train(config: TrainConfig, procs: Processes, device: torch.device) -> Path:
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    model_path, state_path = out / "model.safetensors", out / "state.pt"

    def say(message: str) -> None:
        if procs.main:
            tqdm.write(message, file=sys.stderr)

    # data: this rank's training shard; the held-out records on rank 0 only
    training_files, held_out = split_records(config, procs)
    records = [read_record(f) for f in training_files]
    if not any(r.segments for r in records):
        raise VasaError(f"no segments to train on in the records of {config.data}: `vasa prepare` found nothing "
                        "usable in their videos (the records list why)")
    train = MotionData(records)  # the space of the records' face backend
    val = MotionData([read_record(f) for f in held_out], train.space) if held_out and procs.main else None
    if val is not None and val.audio_dim != train.audio_dim:
        raise VasaError(f"held-out records have audio dim {val.audio_dim}, training records {train.audio_dim}")
    model_config = replace(PRESETS[config.preset], audio_dim=train.audio_dim, motion_dim=train.space.dim)
    readout = None  # fitted on every training record (not just this rank's), saved beside the weights
    if procs.main and config.mouth_readout > 0:
        everything = [f for f in record_files(config.data) if f not in held_out]
        readout = fit_readout(everything, config.mouth_readout, context_for_window(model_config.window_frames))
    augment = Augment() if config.augment else Augment.none()
    mean, std = shared_stats(train, procs, device, model_config, augment, config.seed)

    # model, EMA, optimiser
    torch.manual_seed(config.seed)
    model = MotionDiT(model_config)
    model.motion_mean.copy_(mean)
    model.motion_std.copy_(std)
    model.to(device)
    torch.manual_seed(config.seed + procs.rank)  # the global RNG now only draws dropout masks: one stream per rank
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices: weights, positions (nanoGPT's rule)
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # vectors: biases, single-token null embeddings
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.999),
                                  fused=device.type == "cuda")
    schedule = cosine_schedule(model_config.diffusion_steps)
    schedule = Schedule(schedule.alphas_cumprod.to(device))
    rng = np.random.default_rng(config.seed + procs.rank)  # windows and augmentations
    generator = torch.Generator().manual_seed(config.seed + procs.rank)  # t, noise, condition dropout, truncation
    val_batches = validation_batches(val, model_config, config.batch_size, config.seed,
                                     MAX_VALIDATION_WINDOWS) if val is not None else []

    # resume
    step, seconds_before = 0, 0.0
    if state_path.exists():
        state = load_state(state_path, model_config)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step, seconds_before = state["step"], state["seconds"]
        if not restore_rng(state["rng"], rng, generator, procs):
            say(f"resuming with {procs.world} processes, saved with {len(state['rng'])}: windows re-seeded")
            rng = np.random.default_rng([config.seed, procs.rank, step])
            generator.manual_seed(config.seed * 1_000_003 + procs.rank * 1009 + step)
            torch.manual_seed(config.seed * 1_000_003 + procs.rank * 1009 + step + 1)
        say(f"resumed {out} at step {step}")
    network = model
    if procs.distributed:
        network = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            forward_sync_buffers=False)  # the buffers (motion_mean/std) are equal on all ranks and constant

    metrics = None
    if procs.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
        metrics = Metrics(out, say, step=step)
        parameters = sum(p.numel() for p in model.parameters())
        say(f"motion {config.preset}: {parameters / 1e6:.1f} M parameters, {len(train)} segments "
            f"({train.lengths.sum()} frames) on rank 0 of {procs.world}, {len(val_batches)} validation batches, "
            f"{device}")

    started_at = step
    progress = tqdm(total=config.steps, initial=step, disable=not procs.main, desc="motion", dynamic_ncols=True)
    started = time.perf_counter()
    loss_sum, loss_count = 0.0, 0
    while step < config.steps:
        lr = learning_rate(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = sample_batch(train, model_config, config.batch_size, rng, augment).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.amp):
            loss = training_loss(network, model, schedule, batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip if config.grad_clip > 0 else math.inf)
        optimizer.step()
        update_ema(ema, model, ema_decay(config, step))
        step += 1
        loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
        progress.update(1)

        last = step == config.steps
        validate = bool(held_out) and (step % config.val_every == 0 or last)  # same on every rank
        if step % config.log_every == 0 or validate or last:
            mean_loss = torch.tensor([loss_sum / loss_count], dtype=torch.float64, device=device)
            if procs.distributed:
                dist.all_reduce(mean_loss)
                mean_loss /= procs.world
            loss_sum, loss_count = 0.0, 0
            if procs.main:
                val_loss = None
                if validate:  # of the EMA weights, the ones that ship
                    val_loss = validation_loss(ema, schedule, val_batches, config.seed, device, config.amp)
                line = {"step": step, "loss": mean_loss.item(), "val_loss": val_loss, "lr": lr,
                        "grad_norm": grad_norm.item(), "seconds": seconds_before + time.perf_counter() - started}
                metrics.write(line)
                progress.set_postfix(loss=f"{line['loss']:.4f}", **({"val": f"{val_loss:.4f}"} if validate else {}))
        if step % config.save_every == 0 or last:
            states = rng_states(rng, generator, procs)  # a collective: every rank takes part
            if procs.main:
                save_motion_model(model_path, ema, {"audio_encoder": train.audio_encoder, "fps": train.fps,
                                                    "face_backend": train.face_backend, "step": step}, readout)
                save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                             "step": step, "seconds": seconds_before + time.perf_counter() - started, "rng": states,
                             "train_config": config.to_json(), "model_config": asdict(model_config)}, state_path)
    return finish_run(progress, metrics, say, model_path, out, started_at, step)


if __name__ == "__main__":  # `python -m vasa.train.motion ARGS` = `vasa train motion ARGS` (one parser, in vasa.cli)
    from vasa.cli import main

    sys.exit(main(["train", "motion", *sys.argv[1:]]))
