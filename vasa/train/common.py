"""What every trainer shares (`vasa train motion`, `face`, `capp`, `lipsync`): the config fields they all have
(`RunConfig`, `TorchrunConfig`), processes and devices (torchrun / DDP), record splits, learning-rate and EMA
schedules, RNG states for bit-exact resume, atomic saves, the run's metrics log, and starting and finishing
a run. The loops themselves live in
motion.py, face.py and judge.py."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from vasa.data.records import record_files
from vasa.errors import VasaError
from vasa.outputs import check_output_folder, move_into_place
from vasa.train.options import Options, option

RECORD_HASH = re.compile(r"-[0-9a-f]{8}$")  # `vasa prepare` names a record <video stem>-<8 hex digits>

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True, kw_only=True)
class RunConfig(Options):
    """The fields every trainer's config has, each meaning the same in all; each is the `vasa train` option
    of its name (`vasa.train.options`). A field without a default here takes the trainer's; a trainer gives
    its defaults, and its help where it says more than the one here, as class keywords (`Options`)."""

    data: Path = option(help="folder written by `vasa prepare` (or its records/)")
    out: Path = option(help="run folder: weights, state.pt, metrics, tb/")
    preset: str = option(help="model size, a name in the model's PRESETS")
    steps: int = option(help="optimiser steps in all; a resumed run continues to this")
    batch_size: int = option(help="windows per step and process")
    lr: float = option(help="peak learning rate")
    weight_decay: float = option(help="AdamW weight decay of weight matrices")
    warmup_steps: int = option(help="linear warmup steps")
    min_lr_ratio: float = option(0.1, "cosine decay ends at this fraction of --lr")
    ema_decay: float = option(0.999, "EMA decay of the shipped weights")
    log_every: int = option(help="steps between metrics lines")
    save_every: int = option(help="steps between checkpoints")
    seed: int = option(0, "seed of weights and windows")
    holdout: tuple[str, ...] = option((), "records (video stems) kept out of training", metavar="NAME")
    split: Path | None = option(
        None, "speaker split file (`vasa split`): its validation speakers are kept out of training")
    threads: int = option(0, "torch CPU threads, 0 = torch's choice")

    def to_json(self) -> dict:
        """The config as plain JSON values (paths as strings, tuples as lists)."""
        return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
                for k, v in asdict(self).items()}


@dataclass(frozen=True, kw_only=True)
class TorchrunConfig(RunConfig):
    """The fields of the trainers that run as torchrun processes on a device of choice, with gradient
    clipping and held-out checks along the way (`vasa train motion`, `face`)."""

    grad_clip: float = option(1.0, "gradient norm clip, 0 = off")
    val_every: int = option(help="steps between validation losses; needs --holdout or --split")
    device: str = option("auto", "auto: cuda when available", choices=DEVICES)
    amp: bool = option(False, "bf16 autocast (GPU only)")


def check_run_config(config: TorchrunConfig, presets: dict) -> None:
    """The checks every torchrun trainer's config shares: a known preset and device, positive step counts."""
    if config.preset not in presets:
        raise VasaError(f"unknown preset {config.preset!r}: choose from {', '.join(presets)}")
    if config.device not in DEVICES:
        raise VasaError(f"device must be auto, cpu or cuda, got {config.device!r}")
    for name in ("steps", "batch_size", "log_every", "val_every", "save_every"):
        if getattr(config, name) < 1:
            raise VasaError(f"{name} must be at least 1, got {getattr(config, name)}")


def learning_rate(config: RunConfig, step: int) -> float:
    """Linear warmup over warmup_steps, then cosine decay to min_lr_ratio * lr at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def ema_decay(config: RunConfig, step: int) -> float:
    """EMA decay warmed up as (1 + step) / (10 + step), so a short run's EMA is not its random init."""
    return min(config.ema_decay, (1 + step) / (10 + step))


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


def start_processes(config: TorchrunConfig) -> tuple[Processes, torch.device]:
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


def split_records(config: RunConfig, procs: Processes) -> tuple[list[Path], list[Path]]:
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


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)


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


def run_processes(config: TorchrunConfig, train) -> Path:
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


def finish_run(progress, metrics: Metrics | None, say, model_path: Path, out: Path, started_at: int,
               step: int) -> Path:
    """Close the progress bar and logs; say what was written (or that the run was already done)."""
    progress.close()
    if metrics is not None:
        metrics.close()
    say(f"wrote {model_path} (step {step})" if started_at < step else
        f"{out} is already at step {step}: nothing to do (a larger --steps trains on)")
    return model_path
