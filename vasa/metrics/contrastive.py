"""Contrastive audio-motion judges: CAPP (audio-pose) and an offline lip-sync judge (audio-mouth).

VASA-1 (Sec. 4.1) measures how well head poses go with speech with CAPP, a "Contrastive Audio and
Pose Pretraining" model in the manner of CLIP: a pose-sequence transformer and an audio encoder embed
3 s windows, trained so that the embeddings of a window's own audio and pose are close and those of
other windows apart; the score of a video is the cosine similarity of the two embeddings. The same
model, with mouth landmarks in place of the pose and shorter windows, is our lip-sync judge: SyncNet's
weights don't ship, so this judge gives a sync score that exists offline.

Both take per-frame features at 25 fps:
    motion  (T, M)  CAPP: pose (yaw, pitch, roll in degrees, tx, ty, log scale); lip sync: inner-lip gap,
                    outer-lip height and mouth width (`lip_features`)
    audio   (T, D)  the speech features the motion model uses (Whisper tiny.en encoder, D = 384)
Each window's motion is centred on its own mean inside the model (identity, the head's resting place
and the face's neutral shape don't count), then scaled by per-channel statistics of the training data
that the checkpoint carries.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from vasa.checkpoints import load_weights, read_weights_metadata, save_weights
from vasa.errors import VasaError
from vasa.face.mesh.model import INNER_LIP_MIDDLE, MOUTH_CORNERS
from vasa.metrics.readout_judge import CONFIG_KEY as READOUT_CONFIG_KEY
from vasa.metrics.readout_judge import ReadoutJudge, ReadoutJudgeConfig

OUTER_LIP_MIDDLE = (0, 17)  # MediaPipe mesh: outer upper and lower lip at the middle

CONFIG_KEY = "vasa.metrics.contrastive.config"
STD_FLOOR = 1e-3


@dataclass(frozen=True)
class JudgeConfig:
    """kind: "capp" (pose) or "lipsync" (lip landmarks). window_frames at 25 fps."""

    kind: str = "capp"
    motion_dim: int = 6
    audio_dim: int = 384
    window_frames: int = 75  # CAPP: 3 s (VASA-1 Sec. 4.1)
    frames_per_token: int = 3  # consecutive frames concatenated into one transformer token
    width: int = 64
    layers: int = 2
    heads: int = 4
    embed_dim: int = 64

    def __post_init__(self):
        if self.kind not in ("capp", "lipsync"):
            raise VasaError(f"unknown judge kind {self.kind!r}: capp or lipsync")
        if self.window_frames % self.frames_per_token:
            raise VasaError(f"window of {self.window_frames} frames is not a multiple of {self.frames_per_token}")
        if self.width % self.heads:
            raise VasaError(f"width {self.width} is not a multiple of heads {self.heads}")


PRESETS = {
    "capp": JudgeConfig("capp", motion_dim=6, window_frames=75),
    "lipsync": JudgeConfig("lipsync", motion_dim=3, window_frames=15, frames_per_token=1),  # 0.6 s
    "tiny": JudgeConfig("capp", motion_dim=6, audio_dim=16, window_frames=10, frames_per_token=2, width=16,
                        layers=1, heads=2, embed_dim=8),
}


def pose_features(pose: np.ndarray) -> np.ndarray:
    """Pose (T, 6) yaw, pitch, roll, tx, ty, scale -> CAPP motion features (T, 6): the scale as its log."""
    pose = np.asarray(pose, np.float64)
    return np.concatenate([pose[:, :5], np.log(np.maximum(pose[:, 5:6], 1e-6))], axis=1).astype(np.float32)


def lip_features(canonical: np.ndarray) -> np.ndarray:
    """Canonical landmarks (T, 478, 3) -> lip-sync motion features (T, 3): inner-lip gap, outer-lip height
    and mouth width at the middle of the mouth. Three numbers rather than every lip landmark: with a
    handful of training speakers, the full lip shape lets a judge memorise each speaker's mouth."""
    c = np.asarray(canonical)
    gap = c[:, INNER_LIP_MIDDLE[1], 1] - c[:, INNER_LIP_MIDDLE[0], 1]
    height = c[:, OUTER_LIP_MIDDLE[1], 1] - c[:, OUTER_LIP_MIDDLE[0], 1]
    width = c[:, MOUTH_CORNERS[1], 0] - c[:, MOUTH_CORNERS[0], 0]
    return np.stack([gap, height, width], axis=1).astype(np.float32)


class SequenceEncoder(nn.Module):
    """Per-frame features (B, W, C) -> one unit-length embedding (B, E): frames_per_token frames to a token,
    linear in, learned positions, a pre-norm transformer encoder, mean over time, linear out."""

    def __init__(self, in_dim: int, config: JudgeConfig):
        super().__init__()
        self.frames_per_token = config.frames_per_token
        self.proj_in = nn.Linear(in_dim * config.frames_per_token, config.width)
        self.positions = nn.Parameter(torch.zeros(config.window_frames // config.frames_per_token, config.width))
        nn.init.normal_(self.positions, std=0.02)
        layer = nn.TransformerEncoderLayer(config.width, config.heads, 4 * config.width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.width)
        self.proj_out = nn.Linear(config.width, config.embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        B, W, C = x.shape
        tokens = x.reshape(B, W // self.frames_per_token, self.frames_per_token * C)  # (B, W / p, p C)
        h = self.proj_in(tokens) + self.positions[: tokens.shape[1]]  # (B, W / p, width)
        h = self.norm(self.blocks(h)).mean(dim=1)  # (B, width)
        return nn.functional.normalize(self.proj_out(h), dim=-1)  # (B, E)


class ContrastiveJudge(nn.Module):
    """Two encoders and a learned temperature (CLIP). `score` = cosine similarity of the embeddings."""

    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.config = config
        self.motion_encoder = SequenceEncoder(config.motion_dim, config)
        self.audio_encoder = SequenceEncoder(config.audio_dim, config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature
        self.register_buffer("motion_std", torch.ones(config.motion_dim))
        self.register_buffer("audio_mean", torch.zeros(config.audio_dim))
        self.register_buffer("audio_std", torch.ones(config.audio_dim))

    def embed(self, motion: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        """motion (B, W, M), audio (B, W, D) -> embeddings (B, E), (B, E)."""
        motion = (motion - motion.mean(dim=1, keepdim=True)) / self.motion_std  # each window centred
        audio = (audio - self.audio_mean) / self.audio_std
        return self.motion_encoder(motion), self.audio_encoder(audio)

    def loss(self, motion: Tensor, audio: Tensor) -> Tensor:
        """Symmetric InfoNCE over the batch (CLIP): window i's audio goes with window i's motion."""
        zm, za = self.embed(motion, audio)
        logits = self.logit_scale.exp().clamp(max=100) * zm @ za.T  # (B, B)
        target = torch.arange(len(zm), device=zm.device)
        return (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)) / 2

    @torch.no_grad()
    def score(self, motion: Tensor, audio: Tensor) -> Tensor:
        """Cosine similarity (B,) of each window's motion and audio embeddings, in [-1, 1]."""
        zm, za = self.embed(motion, audio)
        return (zm * za).sum(dim=-1)


Judge = ContrastiveJudge | ReadoutJudge  # what the scoring functions below take


# --- scoring sequences -----------------------------------------------------------------------------------
def window_starts(frames: int, window: int, hop: int) -> np.ndarray:
    if frames < window:
        raise VasaError(f"{frames} frames are shorter than the judge's window of {window} frames")
    return np.arange(0, frames - window + 1, hop)


@torch.no_grad()
def window_scores(model: Judge, motion: np.ndarray, audio: np.ndarray, hop: int | None = None,
                  shift: int = 0) -> np.ndarray:
    """Scores (N,) of the windows of a sequence, motion (T, M) against audio (T, D) moved `shift` frames
    later (motion frame t meets audio frame t - shift); only windows where both exist are scored."""
    W = model.config.window_frames
    hop = hop or max(W // 3, 1)
    if isinstance(model, ReadoutJudge):  # its signals are made from whole sequences, then cut into windows
        motion, audio = model.motion_signal(motion), model.audio_signal(audio)
    T = min(len(motion), len(audio))
    lo, hi = max(0, shift), min(T, T + shift)  # motion frames that have audio at t - shift
    starts = window_starts(hi - lo, W, hop) + lo
    m = torch.as_tensor(np.stack([motion[s:s + W] for s in starts]), dtype=torch.float32)  # (N, W, M)
    a = torch.as_tensor(np.stack([audio[s - shift:s - shift + W] for s in starts]), dtype=torch.float32)
    return model.score(m, a).numpy()


def sequence_score(model: Judge, motion: np.ndarray, audio: np.ndarray, hop: int | None = None) -> float:
    """The judge's score of a whole video: the mean over its windows (CAPP score)."""
    return float(window_scores(model, motion, audio, hop).mean())


def offset_scores(model: Judge, motion: np.ndarray, audio: np.ndarray, max_shift: int,
                  hop: int | None = None) -> dict:
    """Mean window score at every audio shift in [-max_shift, max_shift] frames, the best shift and a
    confidence (score at the best shift - median over shifts), in the manner of SyncNet's offset search."""
    shifts = np.arange(-max_shift, max_shift + 1)
    scores = np.array([window_scores(model, motion, audio, hop, int(s)).mean() for s in shifts])
    best = int(np.argmax(scores))
    return {"shifts": shifts.tolist(), "scores": scores.tolist(), "best_shift": int(shifts[best]),
            "score": float(scores[max_shift]), "confidence": float(scores[best] - np.median(scores))}


def shift_separation(model: Judge, pairs: list[tuple[np.ndarray, np.ndarray]], shifts: list[int],
                     hop: int | None = None) -> dict:
    """How well the judge tells true pairs from time-shifted ones, over sequences (motion, audio):
    AUC of true-window scores vs shifted-window scores (each |shift| in `shifts`), and the fraction of
    windows whose true audio scores above every shifted version of it."""
    true, false, best = [], [], []
    W = model.config.window_frames
    for motion, audio in pairs:
        T = min(len(motion), len(audio))
        if T < W + 2 * max(shifts):
            continue
        margin = max(shifts)
        motion_c, audio_c = motion[margin:T - margin], audio[:T]
        scores = {0: window_scores(model, motion_c, audio_c[margin:T - margin], hop)}
        for s in shifts:
            for sign in (1, -1):
                shifted = audio_c[margin - sign * s:T - margin - sign * s]
                scores[sign * s] = window_scores(model, motion_c, shifted, hop)
        true.append(scores[0])
        others = np.stack([v for k, v in scores.items() if k != 0])  # (2 x shifts, N)
        false.append(others.ravel())
        best.append(scores[0] > others.max(axis=0))
    if not true:
        raise VasaError("no sequence is long enough for the shifts asked")
    t, f = np.concatenate(true), np.concatenate(false)
    return {"auc": roc_auc(t, f), "true_is_best": float(np.concatenate(best).mean()),
            "mean_true": float(t.mean()), "mean_shifted": float(f.mean()), "windows": int(len(t))}


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney U / (n_pos n_neg))."""
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# --- checkpoints ---------------------------------------------------------------------------------------
def save_judge(path: str | os.PathLike, model: Judge, metadata: dict | None = None) -> None:
    """Weights + config (+ string metadata, e.g. the audio encoder and held-out figures): complete or not at all."""
    extra = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    key = READOUT_CONFIG_KEY if isinstance(model, ReadoutJudge) else CONFIG_KEY
    save_weights(path, model, {**extra, key: json.dumps(asdict(model.config))})


def judge_metadata(path: str | os.PathLike) -> dict[str, str]:
    return read_weights_metadata(path, "judge weights")


def load_judge(path: str | os.PathLike) -> Judge:
    """The judge saved at `path` (eval mode), contrastive or read-out; missing config or keys are a VasaError."""
    metadata = judge_metadata(path)
    if READOUT_CONFIG_KEY in metadata:
        return load_weights(path, ReadoutJudge(ReadoutJudgeConfig(**json.loads(metadata[READOUT_CONFIG_KEY]))))
    if CONFIG_KEY not in metadata:
        raise VasaError(f"{path} has no {CONFIG_KEY} metadata: not a judge written by save_judge")
    return load_weights(path, ContrastiveJudge(JudgeConfig(**json.loads(metadata[CONFIG_KEY]))))
