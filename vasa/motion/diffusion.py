"""The diffusion process of the motion generator as free functions (the network is `vasa.motion.dit`).

    schedule = cosine_schedule(50)
    loss = diffusion_loss(model, schedule, x0, cond, drop_conditions(B, generator=g))      # Eq. 1
    denoise = guided_denoiser(model, cond, Dropped(), Guidance(audio=0.5, gaze=1.0))      # Eq. 2
    x0 = sample_ancestral(denoise, schedule, noise)            # 50 steps
    x0 = sample_ddim(denoise, schedule, noise, steps=10)       # few deterministic steps

Timesteps are indices i in [0, T): x_i = sqrt(abar_i) x0 + sqrt(1 - abar_i) noise, abar decreasing in i.
A denoiser is any callable (x_t (B, W, M), t (B,)) -> x0_hat (B, W, M): the network predicts x0 (Sec. 3.2).
Samplers take the starting noise as an argument and a torch.Generator for the noise they draw on the way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from vasa.latents import POSE_DIM
from vasa.motion.dit import Conditions, Dropped, MotionDiT

Denoiser = Callable[[Tensor, Tensor], Tensor]

CONDITION_DROP_P = 0.1  # each of A, g, d, e dropped independently in training (VASA-1 Sec. 3.2)
CONTEXT_DROP_P = 0.5  # X_pre and A_pre dropped together: the first window of a clip has no context
AUDIO_TRUNCATE_P = 0.1  # windows whose audio ends early, so audio shorter than a window works


@dataclass(frozen=True)
class Schedule:
    """Cumulative signal level abar_i for timestep indices i = 0 .. T-1 (abar_0 near 1, abar_{T-1} near 0)."""

    alphas_cumprod: Tensor  # (T,) float64

    @property
    def steps(self) -> int:
        return self.alphas_cumprod.shape[0]

    def signal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(sqrt(abar_t), sqrt(1 - abar_t)) as (B, 1, 1) float32 for broadcasting over (B, W, M)."""
        abar = self.alphas_cumprod[t].float()[:, None, None]
        return abar.sqrt(), (1 - abar).sqrt()


def cosine_schedule(steps: int = 50, offset: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """The cosine schedule of Nichol & Dhariwal (2021): abar(s) = cos^2((s/T + offset)/(1 + offset) * pi/2)."""
    s = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)  # (T,)
    return Schedule(torch.cumprod(1 - betas, dim=0))


def q_sample(schedule: Schedule, x0: Tensor, t: Tensor, noise: Tensor | None = None,
             generator: torch.Generator | None = None) -> Tensor:
    """Forward process q(x_t | x_0): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    a, s = schedule.signal(t)
    return a * x0 + s * noise


def x0_loss(x0: Tensor, x0_hat: Tensor) -> Tensor:
    """Eq. 1: E ||x0 - x0_hat||^2, averaged over batch, frames and motion dimensions."""
    return (x0 - x0_hat).pow(2).mean()


def diffusion_loss(model: MotionDiT, schedule: Schedule, x0: Tensor, cond: Conditions, dropped: Dropped | None = None,
                   t: Tensor | None = None, noise: Tensor | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """One training loss: noise x0 (B, W, M, normalised) at t (uniform if None) and regress x0 (Eq. 1)."""
    if t is None:
        t = torch.randint(0, schedule.steps, (x0.shape[0],), generator=generator)
    x_t = q_sample(schedule, x0, t, noise, generator)
    return x0_loss(x0, model(x_t, t, cond, dropped))


def drop_conditions(batch_size: int, generator: torch.Generator | None = None, p: float = CONDITION_DROP_P,
                    p_context: float = CONTEXT_DROP_P) -> Dropped:
    """Training-time condition dropout: A, g, d, e each with p; X_pre and A_pre together with p_context."""
    def coin(prob: float) -> Tensor:
        return torch.rand(batch_size, generator=generator) < prob

    return Dropped(audio=coin(p), gaze=coin(p), distance=coin(p), emotion=coin(p), context=coin(p_context))


def truncate_audio(batch_size: int, window_frames: int, generator: torch.Generator | None = None,
                   p: float = AUDIO_TRUNCATE_P) -> Tensor:
    """Audio validity (B, W) bool: with probability p a row's audio ends after 1 .. W-1 frames."""
    truncated = torch.rand(batch_size, generator=generator) < p
    lengths = torch.randint(1, max(window_frames, 2), (batch_size,), generator=generator)
    lengths = torch.where(truncated, lengths, torch.full_like(lengths, window_frames))
    return torch.arange(window_frames)[None] < lengths[:, None]


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance scales of Eq. 2 (lambda_A for audio, lambda_g for gaze); 0 turns one off.
    `audio_pose`: lambda_A on the head-pose channels (the first `POSE_DIM` of the motion) where it should
    differ from the face's; None = `audio` on every channel, as Eq. 2 writes it."""

    audio: float = 0.5
    gaze: float = 1.0
    audio_pose: float | None = None


def cfg_mix(x0_all: Tensor, x0_no_audio: Tensor | None, x0_no_gaze: Tensor | None, guidance: Guidance) -> Tensor:
    """Eq. 2: x0 = x0(C) + lambda_A (x0(C) - x0(C \\ A)) + lambda_g (x0(C) - x0(C \\ g)), lambda_A per
    channel when the pose has its own."""
    out = x0_all
    if x0_no_audio is not None:
        scale = guidance.audio
        if guidance.audio_pose is not None and guidance.audio_pose != guidance.audio:
            scale = torch.full((x0_all.shape[-1],), guidance.audio, dtype=x0_all.dtype, device=x0_all.device)
            scale[:POSE_DIM] = guidance.audio_pose
        out = out + scale * (x0_all - x0_no_audio)
    if x0_no_gaze is not None:
        out = out + guidance.gaze * (x0_all - x0_no_gaze)
    return out


def guided_denoiser(model: MotionDiT, cond: Conditions, dropped: Dropped | None = None,
                    guidance: Guidance = Guidance()) -> Denoiser:
    """A denoiser applying Eq. 2 with all its passes stacked on the batch axis of one forward.

    The batch is [all conditions ; without A ; without g]; a pass is left out when its scale is 0 or when
    its condition is already dropped in every row (e.g. no gaze given), so 1 to 3 rows per window.
    """
    dropped = dropped or Dropped()
    B = cond.batch_size
    everyone = torch.ones(B, dtype=torch.bool)
    audio_pass = (guidance.audio != 0 or bool(guidance.audio_pose)) and not _all(dropped.audio)
    gaze_pass = guidance.gaze != 0 and not _all(dropped.gaze)
    passes = [dropped]
    if audio_pass:
        passes.append(dropped.with_(audio=everyone))
    if gaze_pass:
        passes.append(dropped.with_(gaze=everyone))
    stacked_cond = cond.repeat(len(passes))
    stacked_dropped = Dropped.cat(passes, B)

    def denoise(x_t: Tensor, t: Tensor) -> Tensor:
        n = len(passes)
        out = model(x_t.repeat(n, 1, 1), t.repeat(n), stacked_cond, stacked_dropped).split(B)  # n x (B, W, M)
        no_audio = out[1] if audio_pass else None
        no_gaze = out[-1] if gaze_pass else None
        return cfg_mix(out[0], no_audio, no_gaze, guidance)

    return denoise


def _all(mask: Tensor | None) -> bool:
    return mask is not None and bool(mask.all())


def _timesteps(batch_size: int, i: int) -> Tensor:
    return torch.full((batch_size,), i, dtype=torch.long)


@torch.no_grad()
def sample_ancestral(denoise: Denoiser, schedule: Schedule, noise: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """DDPM ancestral sampling through all T steps from x_{T-1} = noise (B, W, M); returns x0."""
    abar = schedule.alphas_cumprod
    x = noise
    for i in reversed(range(schedule.steps)):
        x0 = denoise(x, _timesteps(x.shape[0], i))
        if i == 0:
            return x0
        a_t, a_prev = abar[i].item(), abar[i - 1].item()
        beta = 1 - a_t / a_prev
        # posterior q(x_{i-1} | x_i, x0): mean and variance (Ho et al. 2020, Eq. 7)
        mean = (math.sqrt(a_prev) * beta * x0 + math.sqrt(1 - beta) * (1 - a_prev) * x) / (1 - a_t)
        std = math.sqrt(beta * (1 - a_prev) / (1 - a_t))
        x = mean + std * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x


@torch.no_grad()
def sample_ddim(denoise: Denoiser, schedule: Schedule, noise: Tensor, steps: int = 10) -> Tensor:
    """Deterministic DDIM (Song et al. 2021, eta = 0) on `steps` evenly spaced timesteps; returns x0."""
    if not 1 <= steps <= schedule.steps:
        raise ValueError(f"steps must be in [1, {schedule.steps}], got {steps}")
    abar = schedule.alphas_cumprod
    times = torch.linspace(schedule.steps - 1, 0, steps).round().long().tolist()
    x = noise
    for k, i in enumerate(times):
        x0 = denoise(x, _timesteps(x.shape[0], i))
        if k == len(times) - 1:
            return x0
        a_t, a_prev = abar[i].item(), abar[times[k + 1]].item()
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    return x
