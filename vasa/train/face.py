"""Train the neural face model (VASA-1 Sec. 3.1) on frames stored by `vasa prepare --frames`: one flat loop.

    vasa prepare VIDEOS prepared/ --frames 256          # records + face-crop frame store
    vasa train face --data prepared/ --out runs/face --preset default --steps 200000
    torchrun --nproc_per_node 8 -m vasa.cli train face --data prepared/ --out runs/face --amp   # 8 GPUs (DDP)

Each sample is three crops: frames i and j of one segment of one video (source and driver) and a frame
x of another video (a cross-identity driver). The generator step computes

    I_hat_j          = decode(V_app(i), z_id(i), z_pose(j), z_dyn(j))    reconstruction, adversarial,
                                                                      perceptual or feature matching
    I_hat_{j,pose_i} = decode(V_app(j), z_id(j), z_pose(i), z_dyn(j)) \\  transfer consistency (VASA-1)
    I_hat_{i,dyn_j}  = decode(V_app(i), z_id(i), z_pose(i), z_dyn(j)) /
    I_hat_{i<-x}     = decode(V_app(i), z_id(i), z_pose(x), z_dyn(x))    motion cycle and identity losses

plus, optionally, z_pose of i and j against the geometry backend's pose from the records, and a
learned linear read-out of their z_dyn against the records' facial dynamics (`losses.DynamicsProbe`). The
discriminator step scores real drivers against I_hat_j (hinge loss). AdamW for both, warmup + cosine
learning rate, an EMA of the generator (what ships), resume from state.pt, bf16 autocast on GPU (--amp),
DDP under torchrun: the pieces are `vasa.train.motion`'s.

Outputs in --out (rank 0): model.safetensors (EMA generator, `vasa.face.neural.load_face_model`), state.pt,
metrics.jsonl (losses; held-out PSNR/SSIM of reconstructions), tb/ (scalars and image grids),
samples/step_*.png (source | driver | reconstruction | cross driver | cross reenactment), train_config.json.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.func import functional_call
from tqdm import tqdm

from vasa.data.prepare import frame_store_path
from vasa.data.records import read_record
from vasa.errors import VasaError
from vasa.face.neural import losses
from vasa.face.neural.config import PRESETS, NeuralFaceConfig
from vasa.face.neural.discriminator import MultiScaleDiscriminator
from vasa.face.neural.model import NeuralFaceModel, save_face_model
from vasa.metrics.image import psnr, ssim
from vasa.train.common import (
    Metrics, Processes, TorchrunConfig, check_run_config, ema_decay, finish_run, learning_rate, load_state,
    restore_rng, rng_states, run_processes, save_atomic, split_records, update_ema,
)
from vasa.train.options import option

VALIDATION_PAIRS = 16  # held-out (source, driver) pairs, fixed for the whole run


def loss_weight(default: float, loss: str):
    return option(default, f"weight of the {loss} loss, 0 = off")


@dataclass(frozen=True, kw_only=True)
class FaceTrainConfig(
    TorchrunConfig,
    data=option(help="folder written by `vasa prepare --frames SIZE`"),
    out=option(help="run folder: weights, state.pt, metrics, samples, tb/"),
    preset=option("default", "model size: tiny, small (128 px), default (256 px), base (512 px)"),
    steps=200_000, batch_size=option(8, "samples (source, driver, cross driver) per step and process"),
    lr=option(2e-4, "peak generator learning rate"), weight_decay=option(0.0, "AdamW weight decay"),
    warmup_steps=500, grad_clip=option(1.0, "generator gradient norm clip, 0 = off"), log_every=20,
    val_every=option(500, "steps between held-out PSNR/SSIM; needs --holdout or --split"),
    save_every=option(500, "steps between checkpoints and sample grids"),
    seed=option(0, "seed of weights and samples"),
):
    """Everything a run depends on; each field is the `vasa train face` option of its name, its help says what
    it is (`vasa.train.options`): the fields every trainer has (`vasa.train.common.RunConfig`,
    `TorchrunConfig`) with this trainer's defaults, then its own. perceptual: a TorchScript feature
    network (`losses.load_feature_network`); without one the discriminator's feature matching stands in.
    identity_descriptor: a TorchScript face descriptor (112 x 112 RGB in [-1, 1] -> (B, E)); without one
    the model's own identity encoder, frozen inside the term, stands in. dynamics_weight: the z_dyn
    read-out against the records' facial dynamics (`losses.DynamicsProbe`; not in VASA-1: without it z_dyn
    did not learn the mouth, docs/face_neural.md).
    reconstruction_warmup_steps: the first steps train reconstruction (and pose and dynamics supervision) only, with
    one decode and no discriminator step: a step costs a fraction of a full one, and the model learns to
    rebuild a face before the adversarial and disentangling terms weigh in (docs/face_neural.md).
    colour_jitter: strength of a random colour change (brightness, per-channel gain, saturation; log
    scale, up to +-strength) made alike to a sample's source and driver and drawn anew for its cross
    driver: the colours must come from the source, not from memory of the training faces (0 = off)."""

    disc_lr: float = option(2e-4, "peak discriminator learning rate")
    reconstruction_weight: float = loss_weight(1.0, "reconstruction")
    perceptual_weight: float = loss_weight(1.0, "perceptual")
    feature_matching_weight: float = loss_weight(1.0, "feature matching")
    adversarial_weight: float = loss_weight(0.05, "adversarial")
    transfer_weight: float = loss_weight(1.0, "transfer")
    cycle_weight: float = loss_weight(0.5, "cycle")
    identity_weight: float = loss_weight(0.2, "identity")
    pose_weight: float = loss_weight(0.5, "pose")
    dynamics_weight: float = loss_weight(0.5, "dynamics")
    reconstruction_warmup_steps: int = option(
        0, "first N steps: reconstruction, pose and dynamics losses only, no discriminator: cheap steps", metavar="N")
    colour_jitter: float = option(
        0.0, "random colour changes up to exp(+-S), alike for a source and its driver, 0 = off", metavar="S")
    perceptual: Path | None = option(None, "TorchScript feature network for the perceptual loss")
    identity_descriptor: Path | None = option(None, "TorchScript face descriptor for the identity loss")

    def __post_init__(self):
        check_run_config(self, PRESETS)
        if self.reconstruction_warmup_steps < 0:
            raise VasaError(f"reconstruction_warmup_steps must be >= 0, got {self.reconstruction_warmup_steps}")
        if not 0 <= self.colour_jitter <= 1:
            raise VasaError(f"colour_jitter must be in [0, 1], got {self.colour_jitter}")


# --- data ------------------------------------------------------------------------------------------------
@dataclass
class FaceFrames:
    """The stored face crops of some records at the model's size, and where their segments lie.

    frames[v]: (N_v, S, S, 3) uint8 of video v; segments: (video, first frame, length); poses[v]: (N_v, 6)
    and dynamics[v]: (N_v, K) the geometry backend's pose and facial dynamics per stored frame (NaN
    outside segments). The dynamics are taken relative to their segment's mean: the mesh backend's
    also hold the person's face shape, which z_dyn must not carry (identity is z_id's and V_app's)."""

    frames: list[np.ndarray]
    poses: list[np.ndarray]
    dynamics: list[np.ndarray]
    segments: list[tuple[int, int, int]]

    @classmethod
    def load(cls, record_paths: list[Path], size: int) -> "FaceFrames":
        from vasa.media import iter_video_frames

        frames, poses, dynamics, segments = [], [], [], []
        for path in record_paths:
            store = frame_store_path(path)
            if not store.is_file():
                raise VasaError(f"{path.name} has no stored face crops ({store}): run `vasa prepare ... --frames 256` "
                                "into a new folder, or with --overwrite")
            record = read_record(path)
            crops = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) if f.shape[0] != size else f
                              for f in iter_video_frames(store, record.fps)])  # (N, S, S, 3)
            pose = np.full((len(crops), 6), np.nan, np.float32)
            dynamic = None  # (N, K) once a segment says K
            for segment in record.segments:
                stop = min(segment.start_frame + len(segment), len(crops))
                if dynamic is None:
                    dynamic = np.full((len(crops), segment.dynamics.shape[1]), np.nan, np.float32)
                pose[segment.start_frame:stop] = segment.pose[:stop - segment.start_frame]
                moving = segment.dynamics[:stop - segment.start_frame]  # minus its mean: the mesh
                dynamic[segment.start_frame:stop] = moving - moving.mean(0)  # dynamics hold the face's shape too
                if stop - segment.start_frame >= 2:
                    segments.append((len(frames), segment.start_frame, stop - segment.start_frame))
            frames.append(crops)
            poses.append(pose)
            dynamics.append(dynamic)
        widths = {d.shape[1]: path.name for d, path in zip(dynamics, record_paths) if d is not None}
        if len(widths) > 1:
            raise VasaError("the records' facial dynamics differ in size (" +
                            ", ".join(f"{k} in {name}" for k, name in widths.items()) +
                            "): prepare every record with one face backend")
        width = next(iter(widths), 0)
        dynamics = [np.full((len(f), width), np.nan, np.float32) if d is None else d for f, d in zip(frames, dynamics)]
        return cls(frames, poses, dynamics, segments)

    @property
    def num_frames(self) -> int:
        return sum(length for _, _, length in self.segments)

    def dynamics_spread(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread (standard deviation, at least 1e-3) of the facial dynamics, each (K,)."""
        known = np.concatenate([d[~np.isnan(d).any(-1)] for d in self.dynamics])
        return known.mean(0), np.maximum(known.std(0), 1e-3)

    def sample(self, batch: int, rng: np.random.Generator, colour_jitter: float = 0.0) -> tuple[np.ndarray, ...]:
        """(source, driver, other) crops (B, S, S, 3), (source, driver) geometry poses (B, 6) and
        (source, driver) facial dynamics (B, K). Source and driver come from one segment; `other` from
        another video when there is one. `colour_jitter`: see FaceTrainConfig."""
        lengths = np.array([length for _, _, length in self.segments], dtype=np.float64)
        chosen = rng.choice(len(self.segments), size=batch, p=lengths / lengths.sum())
        source, driver, other, source_pose, driver_pose, source_dyn, driver_dyn = [], [], [], [], [], [], []
        for k in chosen:
            video, start, length = self.segments[k]
            i, j = start + rng.choice(length, size=2, replace=False)
            others = [s for s in self.segments if s[0] != video] or self.segments
            o_video, o_start, o_length = others[rng.integers(len(others))]
            pair = jitter_colours(np.stack([self.frames[video][i], self.frames[video][j]]), colour_jitter, rng)
            source.append(pair[0])
            driver.append(pair[1])
            other.append(jitter_colours(self.frames[o_video][o_start + rng.integers(o_length)], colour_jitter, rng))
            source_pose.append(self.poses[video][i])
            driver_pose.append(self.poses[video][j])
            source_dyn.append(self.dynamics[video][i])
            driver_dyn.append(self.dynamics[video][j])
        return tuple(np.stack(v) for v in (source, driver, other, source_pose, driver_pose, source_dyn, driver_dyn))

    def validation_pairs(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Fixed (source, driver) pairs (count, S, S, 3): a segment's first frame and one of its later frames."""
        rng = np.random.default_rng(seed)
        sources, drivers = [], []
        for n in range(count):
            video, start, length = self.segments[n % len(self.segments)]
            sources.append(self.frames[video][start])
            drivers.append(self.frames[video][start + 1 + rng.integers(length - 1)])
        return np.stack(sources), np.stack(drivers)


def jitter_colours(images: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """One random colour change applied to all of `images` (..., 3) uint8: saturation, then a gain per
    channel and an overall brightness, each a factor exp(u) with u uniform in [-strength, strength]."""
    if strength == 0:
        return images
    saturation, brightness = np.exp(rng.uniform(-strength, strength, size=2))
    gains = brightness * np.exp(rng.uniform(-strength, strength, size=3))
    pixels = images.astype(np.float32)
    grey = pixels.mean(axis=-1, keepdims=True)
    pixels = (grey + saturation * (pixels - grey)) * gains.astype(np.float32)
    return np.clip(pixels, 0, 255).round().astype(np.uint8)


def to_tensor(images: np.ndarray, device: torch.device) -> Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float in [-1, 1]."""
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1


def to_images(tensor: Tensor) -> np.ndarray:
    """(B, 3, S, S) in [-1, 1] -> (B, S, S, 3) uint8."""
    return ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


# --- the generator's forward pass ---------------------------------------------------------------------
class GeneratorStep(nn.Module):
    """Every generated image and latent of one training step (a module, so DDP syncs its gradients),
    and, with a `probe`, its read-outs of z_dyn of i and j."""

    def __init__(self, model: NeuralFaceModel, probe: losses.DynamicsProbe | None = None):
        super().__init__()
        self.model = model
        self.probe = probe

    def forward(self, source: Tensor, driver: Tensor, other: Tensor, full: bool = True) -> dict[str, Tensor]:
        """full=False (the reconstruction warm-up): only I_hat_j, the poses of i and j (and the read-outs)."""
        m = self.model
        pose_i, dynamics_i = m.encode_motion(source)
        pose_j, dynamics_j = m.encode_motion(driver)
        volume_i, identity_i = m.encode_appearance(source, pose_i, dynamics_i)
        readouts = {}
        if self.probe is not None:
            readouts = {"readout_i": self.probe(dynamics_i), "readout_j": self.probe(dynamics_j)}
        if not full:
            return {"reconstruction": m.decode(volume_i, identity_i, pose_j, dynamics_j),
                    "pose_i": pose_i, "pose_j": pose_j, **readouts}
        pose_x, dynamics_x = m.encode_motion(other)
        volume_j, identity_j = m.encode_appearance(driver, pose_j, dynamics_j)
        return {
            "reconstruction": m.decode(volume_i, identity_i, pose_j, dynamics_j),
            "j_with_pose_i": m.decode(volume_j, identity_j, pose_i, dynamics_j),
            "i_with_dynamics_j": m.decode(volume_i, identity_i, pose_i, dynamics_j),
            "cross": m.decode(volume_i, identity_i, pose_x, dynamics_x),
            "pose_i": pose_i, "pose_j": pose_j, "pose_x": pose_x, "dynamics_x": dynamics_x, **readouts,
        }


def frozen_identity_encoder(model: NeuralFaceModel):
    """The model's identity encoder with its weights detached: the identity loss's stand-in descriptor
    (gradients reach the generated image, not the descriptor)."""
    def describe(images: Tensor) -> Tensor:
        weights = {name: p.detach() for name, p in model.identity_encoder.named_parameters()}
        return functional_call(model.identity_encoder, weights, (images,))
    return describe


def generator_losses(config: FaceTrainConfig, out: dict[str, Tensor], model: NeuralFaceModel,
                     discriminator: nn.Module, source: Tensor, driver: Tensor, source_pose: Tensor,
                     driver_pose: Tensor, perceptual, descriptor, full: bool = True,
                     probe: losses.DynamicsProbe | None = None, source_dynamics: Tensor | None = None,
                     driver_dynamics: Tensor | None = None) -> dict[str, Tensor]:
    """Each weighted term (unweighted values; `total` is the weighted sum). full=False: the reconstruction
    warm-up's terms only (reconstruction, pose and dynamics supervision)."""
    terms: dict[str, tuple[float, Tensor]] = {}
    reconstruction = out["reconstruction"]
    terms["reconstruction"] = (config.reconstruction_weight, losses.reconstruction_loss(reconstruction, driver))
    if full:
        _adversarial_and_disentangling_terms(terms, config, out, model, discriminator, source, driver,
                                             perceptual, descriptor)
    if config.pose_weight:  # frames without a geometry pose (NaN) do not count; the term is kept (0) so
        known = ~(torch.isnan(source_pose).any(-1) | torch.isnan(driver_pose).any(-1))  # ranks log alike
        predicted = torch.cat([out["pose_i"][known], out["pose_j"][known]])
        target = torch.cat([source_pose[known], driver_pose[known]])
        value = losses.pose_supervision_loss(predicted, target, model.pose_units) if known.any() else predicted.sum()
        terms["pose"] = (config.pose_weight, value)
    if probe is not None:
        known = ~(torch.isnan(source_dynamics).any(-1) | torch.isnan(driver_dynamics).any(-1))
        readout = torch.cat([out["readout_i"][known], out["readout_j"][known]])
        target = torch.cat([source_dynamics[known], driver_dynamics[known]])
        value = losses.dynamics_supervision_loss(readout, target, probe) if known.any() else readout.sum()
        terms["dynamics"] = (config.dynamics_weight, value)
    values = {name: value for name, (_, value) in terms.items()}
    values["total"] = sum(weight * value for weight, value in terms.values())
    return values


def _adversarial_and_disentangling_terms(terms: dict, config: FaceTrainConfig, out: dict[str, Tensor],
                                         model: NeuralFaceModel, discriminator: nn.Module, source: Tensor,
                                         driver: Tensor, perceptual, descriptor) -> None:
    """Adds the adversarial, perceptual (or feature matching), transfer, cycle and identity terms."""
    reconstruction = out["reconstruction"]
    fake = discriminator(reconstruction)
    terms["adversarial"] = (config.adversarial_weight, losses.generator_hinge_loss(fake))
    if perceptual is not None:
        terms["perceptual"] = (config.perceptual_weight, losses.perceptual_loss(perceptual, reconstruction, driver))
    elif config.feature_matching_weight:
        with torch.no_grad():
            real = discriminator(driver)
        terms["feature_matching"] = (config.feature_matching_weight, losses.feature_matching_loss(fake, real))
    terms["transfer"] = (config.transfer_weight,
                         losses.transfer_consistency_loss(out["j_with_pose_i"], out["i_with_dynamics_j"]))
    if config.cycle_weight:
        terms["cycle"] = (config.cycle_weight, losses.motion_cycle_loss(
            model.encode_motion, out["cross"], out["pose_x"], out["dynamics_x"], model.pose_units))
    if config.identity_weight:
        size = losses.DESCRIPTOR_SIZE if config.identity_descriptor is not None else None
        terms["identity"] = (config.identity_weight, losses.identity_loss(descriptor, out["cross"], source, size))


@torch.no_grad()
def validate(model: NeuralFaceModel, sources: np.ndarray, drivers: np.ndarray, device: torch.device) -> dict:
    """Held-out reconstruction: each driver rebuilt from its segment's first frame -> mean PSNR (dB), SSIM."""
    rebuilt = to_images(model(to_tensor(sources, device), to_tensor(drivers, device)))
    return {"val_psnr": float(np.mean([psnr(a, b) for a, b in zip(rebuilt, drivers)])),
            "val_ssim": float(np.mean([ssim(a, b) for a, b in zip(rebuilt, drivers)]))}


@torch.no_grad()
def sample_grid(model: NeuralFaceModel, source: np.ndarray, driver: np.ndarray, other: np.ndarray,
                device: torch.device) -> np.ndarray:
    """Rows of source | driver | reconstruction | cross driver | cross reenactment, (rows * S, 5 * S, 3) uint8."""
    s, d, o = (to_tensor(v, device) for v in (source, driver, other))
    rows = np.concatenate([source, driver, to_images(model(s, d)), other, to_images(model(s, o))], axis=2)
    return np.concatenate(list(rows), axis=0)


# --- the loop ----------------------------------------------------------------------------------------------
def train_face(config: FaceTrainConfig) -> Path:
    """Train (or resume) the run in config.out; returns the path of the EMA weights, model.safetensors."""
    return run_processes(config, _train)


def _train(config: FaceTrainConfig, procs: Processes, device: torch.device) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    out = config.out
    model_path, state_path = out / "model.safetensors", out / "state.pt"

    def say(message: str) -> None:
        if procs.main:
            tqdm.write(message, file=sys.stderr)

    model_config: NeuralFaceConfig = PRESETS[config.preset]
    training_files, held_out = split_records(config, procs)
    train = FaceFrames.load(training_files, model_config.size)
    if not train.segments:
        raise VasaError(f"no segments of two or more frames in {config.data}")
    val = FaceFrames.load(held_out, model_config.size) if held_out and procs.main else None
    val_pairs = val.validation_pairs(VALIDATION_PAIRS, config.seed) if val is not None and val.segments else None
    perceptual = losses.load_feature_network(config.perceptual).to(device) if config.perceptual else None
    descriptor = losses.load_feature_network(config.identity_descriptor).to(device) if config.identity_descriptor else None

    torch.manual_seed(config.seed)
    model = NeuralFaceModel(model_config).to(device)
    discriminator = MultiScaleDiscriminator().to(device)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    descriptor = descriptor or frozen_identity_encoder(model)
    probe = None
    if config.dynamics_weight and train.dynamics[0].shape[1]:
        mean, spread = (torch.from_numpy(v) for v in train.dynamics_spread())
        probe = losses.DynamicsProbe(model_config.dynamics_dim, len(mean), mean, spread).to(device)
    trained = list(model.parameters()) + ([] if probe is None else list(probe.parameters()))
    optimizer = torch.optim.AdamW(trained, lr=config.lr, betas=(0.5, 0.999), weight_decay=config.weight_decay)
    disc_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=config.disc_lr, betas=(0.5, 0.999),
                                       weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed + procs.rank)
    generator = torch.Generator().manual_seed(config.seed + procs.rank)  # kept for the shared resume format

    step, seconds_before = 0, 0.0
    if state_path.exists():
        state = load_state(state_path, model_config)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        discriminator.load_state_dict(state["discriminator"])
        if probe is not None and "probe" in state:
            probe.load_state_dict(state["probe"])
        optimizer.load_state_dict(state["optimizer"])
        disc_optimizer.load_state_dict(state["disc_optimizer"])
        step, seconds_before = state["step"], state["seconds"]
        if not restore_rng(state["rng"], rng, generator, procs):
            say(f"resuming with {procs.world} processes, saved with {len(state['rng'])}: samples re-seeded")
            rng = np.random.default_rng([config.seed, procs.rank, step])
        say(f"resumed {out} at step {step}")
    network, critic = GeneratorStep(model, probe), discriminator
    if procs.distributed:
        ids = [device.index] if device.type == "cuda" else None
        network = nn.parallel.DistributedDataParallel(network, device_ids=ids)
        critic = nn.parallel.DistributedDataParallel(discriminator, device_ids=ids)

    metrics = None
    if procs.main:
        (out / "samples").mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
        metrics = Metrics(out, say, tag="face", step=step)
        parameters = sum(p.numel() for p in model.parameters())
        say(f"face {config.preset}: {parameters / 1e6:.2f} M parameters, {len(train.segments)} segments "
            f"({train.num_frames} frames) on rank 0 of {procs.world}, "
            f"{0 if val_pairs is None else len(val_pairs[0])} validation pairs, {device}")
        if probe is not None:
            say(f"z_dyn read out against the records' facial dynamics ({len(probe.mean)} components, "
                f"{read_record(training_files[0]).face_backend} backend)")
        if perceptual is None and config.perceptual_weight:
            say("no --perceptual network: discriminator feature matching stands in for the perceptual loss")
    preview = train.sample(4, np.random.default_rng(config.seed)) if procs.main else None

    started_at = step
    progress = tqdm(total=config.steps, initial=step, disable=not procs.main, desc="face", dynamic_ncols=True)
    started = time.perf_counter()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    while step < config.steps:
        lr = learning_rate(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for group in disc_optimizer.param_groups:
            group["lr"] = lr * config.disc_lr / config.lr
        source, driver, other, source_pose, driver_pose, source_dyn, driver_dyn = (
            torch.from_numpy(v).to(device) for v in train.sample(config.batch_size, rng, config.colour_jitter))
        source, driver, other = (v.permute(0, 3, 1, 2).float() / 127.5 - 1 for v in (source, driver, other))

        # generator step (the discriminator only judges: its weights take no gradient here)
        full = step >= config.reconstruction_warmup_steps
        discriminator.requires_grad_(False)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.amp):
            generated = network(source, driver, other, full)
            values = generator_losses(config, generated, model, discriminator, source, driver,
                                      source_pose, driver_pose, perceptual, descriptor, full, probe,
                                      source_dyn, driver_dyn)
        optimizer.zero_grad(set_to_none=True)
        values["total"].backward()
        grad_norm = nn.utils.clip_grad_norm_(trained, config.grad_clip if config.grad_clip > 0 else math.inf)
        optimizer.step()
        update_ema(ema, model, ema_decay(config, step))

        # discriminator step: real drivers and reconstructions in one batch (one forward for DDP);
        # none during the reconstruction warm-up
        if full:
            discriminator.requires_grad_(True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.amp):
                scores = critic(torch.cat([driver, generated["reconstruction"].detach()]))
                real = [([f[:len(driver)] for f in feats], s[:len(driver)]) for feats, s in scores]
                fake = [([f[len(driver):] for f in feats], s[len(driver):]) for feats, s in scores]
                disc_loss = losses.discriminator_hinge_loss(real, fake)
            disc_optimizer.zero_grad(set_to_none=True)
            disc_loss.backward()
            disc_optimizer.step()
            values["discriminator"] = disc_loss

        step += 1
        for name, value in values.items():  # a term's mean over the steps that had it
            sums[name] = sums.get(name, 0.0) + value.item()
            counts[name] = counts.get(name, 0) + 1
        progress.update(1)
        last = step == config.steps
        validate_now = val_pairs is not None and (step % config.val_every == 0 or last)
        if step % config.log_every == 0 or last or step % config.val_every == 0:
            names = sorted(sums)
            means = torch.tensor([sums[n] / counts[n] for n in names], dtype=torch.float64, device=device)
            if procs.distributed:
                dist.all_reduce(means)
                means /= procs.world
            sums, counts = {}, {}
            if procs.main:
                line = {"step": step, **{n: v for n, v in zip(names, means.tolist())}, "lr": lr,
                        "grad_norm": grad_norm.item(), "seconds": seconds_before + time.perf_counter() - started}
                if validate_now:
                    line.update(validate(ema, *val_pairs, device))
                metrics.write(line)
                progress.set_postfix(loss=f"{line['total']:.3f}",
                                     **({"psnr": f"{line['val_psnr']:.1f}"} if validate_now else {}))
        if step % config.save_every == 0 or last:
            states = rng_states(rng, generator, procs)  # a collective
            if procs.main:
                save_face_model(model_path, ema, {"step": step, "preset": config.preset})
                save_atomic({"model": model.state_dict(), "ema": ema.state_dict(),
                             "discriminator": discriminator.state_dict(), "optimizer": optimizer.state_dict(),
                             **({} if probe is None else {"probe": probe.state_dict()}),
                             "disc_optimizer": disc_optimizer.state_dict(), "step": step,
                             "seconds": seconds_before + time.perf_counter() - started, "rng": states,
                             "train_config": config.to_json(), "model_config": asdict(model_config)}, state_path)
                grid = sample_grid(ema, *preview[:3], device)
                cv2.imwrite(str(out / "samples" / f"step_{step:07d}.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
                if metrics.writer is not None:
                    metrics.writer.add_image("face/samples", grid, step, dataformats="HWC")
    return finish_run(progress, metrics, say, model_path, out, started_at, step)


if __name__ == "__main__":  # `python -m vasa.train.face ARGS` = `vasa train face ARGS` (one parser, in vasa.cli)
    from vasa.cli import main

    sys.exit(main(["train", "face", *sys.argv[1:]]))
