"""`MotionDiT`: the denoiser of VASA-1's motion generator (Sec. 3.2). A network only: the noise schedule,
loss, samplers and guidance live in `vasa.motion.diffusion`.

Given a noisy window X_t of W motion frames ([pose, dynamics], 46 dims) and the timestep t, it predicts the
clean window x0 conditioned on C = [X_pre, A_pre; A, g, d, e]:

    tokens  = [K context tokens: Linear([X_pre, A_pre])  ;  W window tokens: Linear(X_t) + Linear(A)] + pos
    c       = emb(t) + emb(g) + emb(d) + emb(e)                      (B, width)
    blocks  = transformer encoder blocks modulated by c with adaLN-Zero (DiT, Peebles & Xie 2023)
    x0_hat  = zero-initialised linear head on the W window tokens    (B, W, motion_dim)

Every condition can be dropped per batch row (`Dropped`): its embedding is replaced by a learned null
embedding. This serves training-time condition dropout, classifier-free guidance (Eq. 2) and the first
window of a clip (no X_pre, A_pre). Audio frames past the end of the audio (`Conditions.audio_valid`)
get the same null audio embedding as dropped audio.

The network sees motion in normalised units; `normalize` / `denormalize` use the statistics stored with
the weights (`motion_mean`, `motion_std`, identity until a trainer sets them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vasa.motion.config import GAZE_DIM, MotionConfig


@dataclass(frozen=True)
class Conditions:
    """C of Sec. 3.2 for a batch of windows.

    audio: A, features of the window's frames; audio_valid: False for frames past the end of the audio
    (None = all valid); context_motion, context_audio: X_pre, A_pre, the previous window's last K frames
    (motion normalised); gaze: g = (theta, phi) in radians; distance: d, head distance (the pose's face
    scale); emotion: e, one weight per emotion class.
    """

    audio: Tensor  # (B, W, audio_dim)
    context_motion: Tensor  # (B, K, motion_dim)
    context_audio: Tensor  # (B, K, audio_dim)
    gaze: Tensor  # (B, 2)
    distance: Tensor  # (B,)
    emotion: Tensor  # (B, emotions)
    audio_valid: Tensor | None = None  # (B, W) bool

    @property
    def batch_size(self) -> int:
        return self.audio.shape[0]

    def repeat(self, times: int) -> "Conditions":
        """The batch stacked `times` times (row i of copy k is row k * B + i): guidance passes in one forward."""
        def rep(x):
            return None if x is None else x.repeat(times, *([1] * (x.dim() - 1)))

        return Conditions(*(rep(getattr(self, f)) for f in
                            ("audio", "context_motion", "context_audio", "gaze", "distance", "emotion", "audio_valid")))


@dataclass(frozen=True)
class Dropped:
    """Which conditions each batch row goes without, (B,) bool each; None = kept in every row.

    audio drops A (the window's audio); context drops X_pre and A_pre together.
    """

    audio: Tensor | None = None
    context: Tensor | None = None
    gaze: Tensor | None = None
    distance: Tensor | None = None
    emotion: Tensor | None = None

    @staticmethod
    def cat(parts: list["Dropped"], batch_size: int) -> "Dropped":
        """Row-wise concatenation of the masks of `parts`, each for `batch_size` rows."""
        def mask(d: Dropped, name: str) -> Tensor:
            m = getattr(d, name)
            return torch.zeros(batch_size, dtype=torch.bool) if m is None else m

        names = ("audio", "context", "gaze", "distance", "emotion")
        return Dropped(**{n: torch.cat([mask(p, n) for p in parts]) for n in names})

    def with_(self, **masks: Tensor) -> "Dropped":
        return replace(self, **masks)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def mlp(dim_in: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, width), nn.SiLU(), nn.Linear(width, width))


class Block(nn.Module):
    """Pre-norm transformer encoder block with adaLN-Zero: shift, scale and gate from the condition c."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.dropout = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.modulation[1].weight)  # adaLN-Zero: every block starts as the identity
        nn.init.zeros_(self.modulation[1].bias)

    def attention(self, x: Tensor) -> Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, N, Dh)
        out = F.scaled_dot_product_attention(q, k, v)  # every token sees the whole context + window
        return self.proj(out.transpose(1, 2).reshape(B, N, D))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)  # (B, D) each
        x = x + gate1[:, None] * self.dropout(self.attention(modulate(self.norm1(x), shift1, scale1)))
        return x + gate2[:, None] * self.dropout(self.mlp(modulate(self.norm2(x), shift2, scale2)))


class MotionDiT(nn.Module):
    """Predicts the clean motion window x0 from X_t, t and the conditions (Eq. 1's x0_hat)."""

    def __init__(self, config: MotionConfig):
        super().__init__()
        self.config = config
        D, M, A = config.width, config.motion_dim, config.audio_dim
        self.context_in = nn.Linear(M + A, D)  # [X_pre, A_pre] -> context token
        self.motion_in = nn.Linear(M, D)  # X_t -> window token
        self.audio_in = nn.Linear(A, D)  # A -> added to the window token
        self.position = nn.Parameter(torch.randn(config.tokens, D) * 0.02)
        self.time_embed = mlp(D, D)
        self.gaze_embed = mlp(GAZE_DIM, D)
        self.distance_embed = mlp(1, D)
        self.emotion_embed = mlp(config.emotions, D)
        # learned null embeddings of dropped conditions
        self.null_audio = nn.Parameter(torch.randn(D) * 0.02)  # per window frame
        self.null_context = nn.Parameter(torch.randn(config.context_frames, D) * 0.02)  # replaces K tokens
        self.null_gaze = nn.Parameter(torch.randn(D) * 0.02)
        self.null_distance = nn.Parameter(torch.randn(D) * 0.02)
        self.null_emotion = nn.Parameter(torch.randn(D) * 0.02)
        self.blocks = nn.ModuleList(Block(D, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.head = nn.Linear(D, M)
        for layer in (self.final_modulation[1], self.head):  # zero head: x0_hat = 0 at init
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.register_buffer("motion_mean", torch.zeros(M))
        self.register_buffer("motion_std", torch.ones(M))

    def normalize(self, motion: Tensor) -> Tensor:
        return (motion - self.motion_mean) / self.motion_std

    def denormalize(self, motion: Tensor) -> Tensor:
        return motion * self.motion_std + self.motion_mean

    def condition(self, t: Tensor, cond: Conditions, dropped: Dropped) -> Tensor:
        """The global condition c = emb(t) + emb(g) + emb(d) + emb(e), nulls where dropped: (B, D)."""
        c = self.time_embed(timestep_embedding(t, self.config.width))
        for embed, value, null, drop in (
            (self.gaze_embed, cond.gaze, self.null_gaze, dropped.gaze),
            (self.distance_embed, cond.distance[:, None], self.null_distance, dropped.distance),
            (self.emotion_embed, cond.emotion, self.null_emotion, dropped.emotion),
        ):
            c = c + keep_or_null(embed(value.float()), null, drop)
        return c

    def tokens(self, x_t: Tensor, cond: Conditions, dropped: Dropped) -> Tensor:
        """[K context tokens ; W window tokens] + position: (B, K + W, D)."""
        context = self.context_in(torch.cat([cond.context_motion, cond.context_audio], dim=-1))  # (B, K, D)
        context = keep_or_null(context, self.null_context, dropped.context)
        audio = self.audio_in(cond.audio)  # (B, W, D)
        use_null = torch.zeros(audio.shape[:2], dtype=torch.bool, device=audio.device)  # (B, W)
        if dropped.audio is not None:
            use_null = use_null | dropped.audio[:, None]
        if cond.audio_valid is not None:
            use_null = use_null | ~cond.audio_valid
        audio = torch.where(use_null[..., None], self.null_audio, audio)
        window = self.motion_in(x_t) + audio  # (B, W, D)
        return torch.cat([context, window], dim=1) + self.position

    def forward(self, x_t: Tensor, t: Tensor, cond: Conditions, dropped: Dropped | None = None) -> Tensor:
        """x_t (B, W, motion_dim), t (B,) timestep indices -> x0_hat (B, W, motion_dim)."""
        B, W, M = x_t.shape
        config = self.config
        if (W, M) != (config.window_frames, config.motion_dim) or cond.audio.shape != (B, W, config.audio_dim):
            raise ValueError(
                f"expected x_t (B, {config.window_frames}, {config.motion_dim}) and audio "
                f"(B, {config.window_frames}, {config.audio_dim}); got {tuple(x_t.shape)} and {tuple(cond.audio.shape)}"
            )
        dropped = dropped or Dropped()
        c = self.condition(t, cond, dropped)  # (B, D)
        x = self.tokens(x_t, cond, dropped)  # (B, K + W, D)
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        x = modulate(self.final_norm(x[:, config.context_frames:]), shift, scale)  # (B, W, D)
        return self.head(x)


def keep_or_null(value: Tensor, null: Tensor, drop: Tensor | None) -> Tensor:
    """value (B, ...) with rows where `drop` (B,) is True replaced by `null` (broadcast to value[0])."""
    if drop is None:
        return value
    mask = drop.view(-1, *([1] * (value.dim() - 1)))
    return torch.where(mask, null.to(value.dtype), value)
