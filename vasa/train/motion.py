"""Train the motion generator (`MotionDiT`) on records written by `vasa prepare`: one flat loop.

    vasa train motion --data prepared/ --out runs/motion --preset default --steps 100000
    python -m vasa.train.motion --data prepared/ --out runs/motion              # the same command
    torchrun --nproc_per_node 8 -m vasa.train.motion --data prepared/ --out runs/motion   # 8 GPUs (DDP)
    torchrun --nproc_per_node 2 -m vasa.cli train motion --data prepared/ --out runs/motion --device cpu

The loop: AdamW, linear warmup then cosine decay of the learning rate, gradient clipping, an EMA copy of
the weights (what ships), the diffusion loss of Eq. 1 with condition dropout (`vasa.motion.diffusion`).
Running the same command again with the same `--out` resumes from `state.pt`, bit for bit.

Outputs in --out (written by rank 0 only):
    model.safetensors   EMA weights + config + normalisation statistics (`vasa.motion.load_motion_model`)
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
import os
import pickle
import re
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
from vasa.outputs import check_output_folder, move_into_place
from vasa.motion.checkpoint import save_motion_model
from vasa.motion.config import PRESETS, MotionConfig
from vasa.motion.diffusion import Schedule, cosine_schedule, diffusion_loss, drop_conditions, truncate_audio
from vasa.motion.dit import Conditions, Dropped, MotionDiT

RECORD_HASH = re.compile(r"-[0-9a-f]{8}$")  # `vasa prepare` names a record <video stem>-<8 hex digits>
MAX_VALIDATION_WINDOWS = 2048  # a fixed subset keeps validation cheap on big held-out sets


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on. split: a speaker split file (`vasa split`); its validation speakers'
    records are kept out of training and used for the validation loss, as are the records named in
    holdout (the video's stem). threads: torch CPU threads (0 = torch's default). device: "auto" (cuda
    when available), "cpu" or "cuda". amp: bf16 autocast, GPU only. augment: `vasa.data.windows.Augment()`."""

    data: Path
    out: Path
    preset: str = "default"
    steps: int = 100_000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    log_every: int = 50
    val_every: int = 1000
    save_every: int = 1000
    seed: int = 0
    holdout: tuple[str, ...] = ()
    split: Path | None = None
    threads: int = 0
    device: str = "auto"
    amp: bool = False
    augment: bool = True

    def __post_init__(self):
        check_run_config(self, PRESETS)

    def to_json(self) -> dict:
        return run_config_json(self)


def check_run_config(config, presets: dict) -> None:
    """The checks every trainer's config shares: a known preset and device, positive step counts."""
    if config.preset not in presets:
        raise VasaError(f"unknown preset {config.preset!r}: choose from {', '.join(presets)}")
    if config.device not in ("auto", "cpu", "cuda"):
        raise VasaError(f"device must be auto, cpu or cuda, got {config.device!r}")
    for name in ("steps", "batch_size", "log_every", "val_every", "save_every"):
        if getattr(config, name) < 1:
            raise VasaError(f"{name} must be at least 1, got {getattr(config, name)}")


def run_config_json(config) -> dict:
    """A trainer's config as plain JSON values (paths as strings, tuples as lists)."""
    return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
            for k, v in asdict(config).items()}


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warmup over warmup_steps, then cosine decay to min_lr_ratio * lr at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def ema_decay(config: TrainConfig, step: int) -> float:
    """EMA decay warmed up as (1 + step) / (10 + step), so a short run's EMA is not its random init."""
    return min(config.ema_decay, (1 + step) / (10 + step))


# --- processes and data ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def start_processes(config: TrainConfig) -> tuple[Processes, torch.device]:
    """This process's rank and device; joins the process group when launched by torchrun."""
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise VasaError("--device cuda but torch sees no CUDA GPU")
    if config.amp and not use_cuda:
        raise VasaError("--amp (bf16 autocast) is for GPUs; CPU training runs in fp32")
    if "RANK" not in os.environ:
        return Processes(), torch.device("cuda" if use_cuda else "cpu")
    procs = Processes(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    device = torch.device("cuda", procs.local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return procs, device


def split_records(config: TrainConfig, procs: Processes) -> tuple[list[Path], list[Path]]:
    """(this rank's training files, the held-out files).

    Record files are the shards: with at least as many training files as ranks, rank r reads only
    files[r::world], so no process holds the whole data set and a streaming loader could read its files in
    turn; with fewer files every rank reads all of them (their different seeds still draw different windows).
    """
    files = record_files(config.data)
    by_speaker: list[Path] = []
    if config.split is not None:  # whole speakers held out (vasa.data.splits)
        from vasa.data.splits import load_split

        by_speaker = load_split(config.split).partition(files)[1]
        if not by_speaker:
            raise VasaError(f"no record in {config.data} is of a validation speaker of {config.split} "
                            "(was the data prepared with its manifest?)")
    names = {f: {f.stem, RECORD_HASH.sub("", f.stem)} for f in files}
    unknown = [h for h in config.holdout if not any(h in n for n in names.values())]
    if unknown:
        known = sorted({RECORD_HASH.sub("", f.stem) for f in files})
        raise VasaError(f"holdout {', '.join(unknown)} matches no record in {config.data} "
                        f"(records: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''})")
    held_out = [f for f in files if names[f] & set(config.holdout) or f in by_speaker]
    training = [f for f in files if f not in held_out]
    if not training:
        raise VasaError(f"every record in {config.data} is held out: nothing left to train on")
    if len(training) >= procs.world:
        training = training[procs.rank::procs.world]
    return training, held_out


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


@torch.no_grad()
def update_ema(ema: MotionDiT, model: MotionDiT, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)


# --- state -----------------------------------------------------------------------------------------------
def rng_states(rng: np.random.Generator, generator: torch.Generator, procs: Processes) -> list[dict]:
    """Every rank's RNG states, gathered (a collective: all ranks call it)."""
    mine = {"numpy": rng.bit_generator.state, "torch": generator.get_state(), "torch_global": torch.get_rng_state()}
    if torch.cuda.is_available():
        mine["cuda"] = torch.cuda.get_rng_state()
    if not procs.distributed:
        return [mine]
    states: list = [None] * procs.world
    dist.all_gather_object(states, mine)
    return states


def restore_rng(states: list[dict], rng: np.random.Generator, generator: torch.Generator, procs: Processes) -> bool:
    """Restore this rank's RNG states; False when the run was saved with another number of processes."""
    if len(states) != procs.world:
        return False
    mine = states[procs.rank]
    rng.bit_generator.state = mine["numpy"]
    generator.set_state(mine["torch"])
    torch.set_rng_state(mine["torch_global"])
    if "cuda" in mine and torch.cuda.is_available():
        torch.cuda.set_rng_state(mine["cuda"])
    return True


def save_atomic(obj, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(obj, temporary)
        move_into_place(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_state(path: Path, model_config) -> dict:
    """The state saved in `path` by a run of the model `model_config` (any trainer's config dataclass)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise VasaError(f"cannot read {path} to resume: {error.strerror or error}") from None
    except (RuntimeError, EOFError, pickle.UnpicklingError):  # torch's own messages run to several lines
        raise VasaError(f"cannot read {path} to resume: damaged, or not saved by `vasa train`; "
                        "delete it to start over") from None
    if not isinstance(state, dict) or "model_config" not in state:
        raise VasaError(f"{path} is not a state saved by `vasa train`: delete it to start over")
    if state["model_config"] != asdict(model_config):
        raise VasaError(f"{path} is a run of another model ({state['model_config']}), not {asdict(model_config)}: "
                        "use another --out or the same preset and data")
    return state


class Metrics:
    """metrics.jsonl and TensorBoard scalars under `tag`/ (rank 0 only). A run resumed at `step` forgets
    what was logged after it (a run killed between two saves logged steps it will train again), so each
    step appears once."""

    def __init__(self, out: Path, say, tag: str = "motion", step: int = 0):
        self.path = out / "metrics.jsonl"
        self.tag = tag
        self.writer = None
        forget_after(self.path, step)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            say("tensorboard is not installed (pip install tensorboard): no TensorBoard logs, metrics.jsonl only")
        else:
            self.writer = SummaryWriter(str(out / "tb"), purge_step=step + 1)  # hides events after `step`

    def write(self, line: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
        if self.writer is not None:
            for name, value in line.items():
                if name != "step" and value is not None:
                    self.writer.add_scalar(f"{self.tag}/{name}", value, line["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def forget_after(path: Path, step: int) -> None:
    """Drop the lines of metrics.jsonl `path` logged after `step` (and a last line cut short by a kill);
    the file is replaced whole (temp file, then rename), so a kill here loses nothing."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            logged = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            continue
        if logged <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    if kept == lines:
        return
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text("".join(kept))
        move_into_place(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# --- the loop --------------------------------------------------------------------------------------------
def train_motion(config: TrainConfig) -> Path:
    """Train (or resume) the run in config.out; returns the path of the EMA weights, model.safetensors."""
    return run_processes(config, _train)


def run_processes(config, train) -> Path:
    """Start this process (joining torchrun's group), run `train(config, procs, device)`, tear down."""
    check_output_folder(config.out, "run folder")
    procs, device = start_processes(config)
    try:
        path = train(config, procs, device)
        if procs.distributed:
            dist.barrier()  # no rank tears its connections down while another still writes or talks
        return path
    finally:
        if procs.distributed:
            dist.destroy_process_group()


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
                                                    "face_backend": train.face_backend, "step": step})
                save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                             "step": step, "seconds": seconds_before + time.perf_counter() - started, "rng": states,
                             "train_config": config.to_json(), "model_config": asdict(model_config)}, state_path)
    return finish_run(progress, metrics, say, model_path, out, started_at, step)


def finish_run(progress, metrics: Metrics | None, say, model_path: Path, out: Path, started_at: int,
               step: int) -> Path:
    """Close the progress bar and logs; say what was written (or that the run was already done)."""
    progress.close()
    if metrics is not None:
        metrics.close()
    say(f"wrote {model_path} (step {step})" if started_at < step else
        f"{out} is already at step {step}: nothing to do (a larger --steps trains on)")
    return model_path


if __name__ == "__main__":  # `python -m vasa.train.motion ARGS` = `vasa train motion ARGS` (one parser, in vasa.cli)
    from vasa.cli import main

    sys.exit(main(["train", "motion", *sys.argv[1:]]))
