"""Read-out judges: how well motion goes with speech, scored by a linear read-out of the speech.

A ridge regression (`vasa.motion.readout`: speech features of frames t-4 ... t+4, standardised) predicts a
motion signal from the speech alone; a window's score is the Pearson r of the predicted and the measured
signal over the window, the mean over the signal's channels. A window whose motion belongs to its speech
scores high, the same window against speech moved a few frames scores near zero.

    lipsync  signal: inner-lip gap, outer-lip height, mouth width (`contrastive.lip_features`), 0.6 s windows
    capp     signal: head speed, the frame-to-frame change of the head angles (degrees) averaged over
             `smooth` frames, 3 s windows

Why not only the contrastive judges (`vasa.metrics.contrastive`): on speakers neither saw, those
separate true from time-shifted pairs at AUC 0.60 (lip) and 0.50 (CAPP); a read-out, with a few thousand
weights per channel and nothing to learn about who is speaking, at 0.87 and 0.77 (vasa/assets/judges.md).
A correlation does not see scale: a head that moves twice as much in the same rhythm scores the same, and
a still head (no variance) scores 0. And a judge of this kind scores highest the motion that speech
predicts on average: a generator whose motion is itself such a read-out scores above real video, so the
judges tell in-sync from shifted motion, they do not rank realism.

The judge has the contrastive judges' interface (`config.window_frames`, `score` of windows), plus
`motion_signal` and `audio_signal`, which `contrastive.window_scores` applies to whole sequences before
cutting windows, so a window's read-out sees the speech around its edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from vasa.errors import VasaError
from vasa.motion.readout import CONTEXT, RIDGE, MouthReadout, fit_mouth_readout

CONFIG_KEY = "vasa.metrics.readout_judge.config"
SIGNALS = {"lipsync": ("lips", 15), "capp": ("head_speed", 75)}  # kind -> (signal, window frames)
# head-speed smoothing (frames) and ridge strength per kind: chosen by 5-fold cross-validation over the
# corpus' training speakers (whole speakers per fold, AUC true vs shifted; vasa/assets/judges.md)
HEAD_SPEED_SMOOTH = 3
READOUT_STRENGTH = {"lipsync": RIDGE, "capp": RIDGE}


@dataclass(frozen=True)
class ReadoutJudgeConfig:
    """kind: "capp" (head speed) or "lipsync" (lip measures); window_frames at 25 fps."""

    kind: str = "lipsync"
    audio_dim: int = 384
    window_frames: int = 15
    smooth: int = HEAD_SPEED_SMOOTH  # head speed only
    context: tuple[int, ...] = CONTEXT

    def __post_init__(self):
        if self.kind not in SIGNALS:
            raise VasaError(f"unknown judge kind {self.kind!r}: capp or lipsync")
        if self.window_frames < 3 or self.smooth < 1:
            raise VasaError(f"a judge window of {self.window_frames} frames, smoothing {self.smooth}: too small")
        object.__setattr__(self, "context", tuple(int(k) for k in self.context))

    @property
    def signal(self) -> str:
        return SIGNALS[self.kind][0]

    @property
    def channels(self) -> int:
        return 3 if self.kind == "lipsync" else 1

    @classmethod
    def for_kind(cls, kind: str, audio_dim: int, **options) -> "ReadoutJudgeConfig":
        if kind not in SIGNALS:
            raise VasaError(f"unknown judge kind {kind!r}: capp or lipsync")
        return cls(kind=kind, audio_dim=audio_dim, window_frames=SIGNALS[kind][1], **options)


def head_speed(pose: np.ndarray, smooth: int = HEAD_SPEED_SMOOTH) -> np.ndarray:
    """CAPP motion features (T, 6), angles first in degrees -> head speed (T, 1): the norm of each frame's
    change of yaw, pitch and roll (the first frame's is 0), averaged over `smooth` frames around it."""
    angles = np.asarray(pose, np.float64)[:, :3]
    change = np.linalg.norm(np.diff(angles, axis=0, prepend=angles[:1]), axis=1)
    kernel = np.ones(smooth) / smooth
    return np.convolve(change, kernel, mode="same")[:, None]


class ReadoutJudge(nn.Module):
    """A fitted read-out (`MouthReadout`, its columns the signal's channels) and the windows it scores."""

    def __init__(self, config: ReadoutJudgeConfig):
        super().__init__()
        self.config = config
        self.readout = MouthReadout(config.audio_dim, range(config.channels), blend=1.0, context=config.context)

    def motion_signal(self, motion: np.ndarray) -> np.ndarray:
        """The judge's motion features of a whole sequence (T, M) -> the signal it predicts (T, C)."""
        if self.config.kind == "capp":
            return head_speed(motion, self.config.smooth)
        return np.asarray(motion, np.float64)

    def audio_signal(self, audio: np.ndarray) -> np.ndarray:
        """Speech features of a whole sequence (T, D) -> the predicted signal (T, C)."""
        audio = np.asarray(audio)
        if audio.ndim != 2 or audio.shape[1] != self.config.audio_dim:
            raise VasaError(f"the judge reads {self.config.audio_dim}-d speech features, got shape {audio.shape}")
        return self.readout.predict(audio)

    @torch.no_grad()
    def score(self, motion: Tensor, audio: Tensor) -> Tensor:
        """Signal windows (B, W, C) measured and predicted -> Pearson r over each window (B,), mean over C."""
        m = motion.double() - motion.double().mean(dim=1, keepdim=True)
        a = audio.double() - audio.double().mean(dim=1, keepdim=True)
        r = (m * a).sum(dim=1) / (m.norm(dim=1) * a.norm(dim=1) + 1e-9)  # (B, C)
        return r.mean(dim=1).float()


def fit_readout_judge(kind: str, sequences: list[tuple[np.ndarray, np.ndarray]],
                      strength: float = RIDGE, **options) -> ReadoutJudge:
    """The judge of `kind` fitted on (motion features (T, M), speech features (T, D)) per segment; each
    segment's signal is centred on its own mean (who is speaking and how wide their mouth is don't count)."""
    if not sequences:
        raise VasaError("no training sequence for the read-out judge")
    judge = ReadoutJudge(ReadoutJudgeConfig.for_kind(kind, sequences[0][1].shape[1], **options))
    targets = [judge.motion_signal(m) for m, _ in sequences]
    parts = [(a, t - t.mean(axis=0)) for (_, a), t in zip(sequences, targets)]
    fitted = fit_mouth_readout(parts, range(judge.config.channels), blend=1.0, strength=strength,
                               context=judge.config.context)
    judge.readout.load_state_dict(fitted.state_dict())
    return judge.eval()
