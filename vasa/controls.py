"""`Controls`: what a user can ask of a generated clip, checked once for the CLI, the Python API and the
server alike (`vasa.pipeline` re-exports it). `vasa.stages.MotionStage` applies them."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from vasa.errors import VasaError
from vasa.latents import EMOTION_NAMES
from vasa.motion.controls import MAX_BLINKS_PER_MINUTE

MAX_EMOTION_WEIGHT = 1.5  # 1 = a clear expression (vasa.face.mesh.expressions); 1.5 already exaggerates, more distorts
MAX_GUIDANCE = 10.0  # beyond it the guided motion leaves the range the face can show
MAX_MOTION_SCALE = 4.0  # head / expression amplitude: 4 times the model's motion is already a caricature
MAX_GAZE_DEG = 60.0  # the eyes cannot turn further in the head
MAX_SEED = 2**63 - 1  # torch.manual_seed's range


@dataclass(frozen=True)
class Controls:
    """What a user can ask of a generated clip.

    gaze: main eye direction (theta, phi) in degrees in the head's frame (theta > 0 toward the image's
    right, phi > 0 up; (0, 0) straight ahead); None = the portrait's own gaze. distance: head distance
    relative to the portrait (1.25 = a quarter farther away, so the face looks 20 % smaller); None
    = 1, as in the photo. emotion: {name: weight} over EMOTION_NAMES; None = model's choice.
    """

    gaze: tuple[float, float] | None = None
    distance: float | None = None
    emotion: dict[str, float] | None = None
    cfg_audio: float | None = None  # lambda_A of Eq. 2; None = the motion model's own (`TalkingHead.cfg_audio`)
    # lambda_A on the head pose alone; None = the motion model's own (`TalkingHead.cfg_audio_pose`), or the
    # face's scale above where the model names none
    cfg_audio_pose: float | None = None
    cfg_gaze: float = 1.0  # lambda_g of Eq. 2
    steps: int = 10  # DDIM steps (0 = the 50-step ancestral sampler)
    seed: int = 0
    head_scale: float = 1.0  # head-motion amplitude around the portrait's pose
    expression_scale: float = 1.0  # facial-motion amplitude around the portrait's rest face
    smoothing: float = 0.6  # causal low-pass strength on head pose, [0, 1): ~60 ms lag, jitter to real levels
    still: bool = False  # keep the head at the portrait's pose
    close_mouth_in_silence: bool = True  # voice activity below threshold closes the mouth
    blinks: float | None = None  # blinks per minute (0 = none); None = the motion model's own blinks
    # share of the mouth read-out (`vasa.motion.readout`) in the mouth coefficients, 0..1 (0 = the
    # generator's mouth alone); None = the motion model file's own (0 where it carries no read-out)
    mouth_readout: float | None = None

    def __post_init__(self):
        """The one check of a user's numbers (CLI, Python API and server alike): right type, finite, in range."""
        _number("distance", self.distance, 0.3, 3.0, optional=True, hint="1 = as in the photo")
        if self.gaze is not None:
            if not isinstance(self.gaze, (tuple, list)) or len(self.gaze) != 2:
                raise VasaError(f"gaze must be two angles in degrees (theta, phi), got {self.gaze!r}")
            for angle in self.gaze:
                _number("gaze", angle, -MAX_GAZE_DEG, MAX_GAZE_DEG, hint="degrees")
        if self.emotion is not None:
            if not isinstance(self.emotion, dict):
                raise VasaError(f"emotion must be a mapping of name to weight, got {self.emotion!r}")
            unknown = {name for name in self.emotion if name not in EMOTION_NAMES}
            if unknown:
                raise VasaError(f"unknown emotion {sorted(map(str, unknown))}; choose from {', '.join(EMOTION_NAMES)}")
            for name, weight in self.emotion.items():
                _number(f"emotion weight of {name}", weight, 0.0, MAX_EMOTION_WEIGHT, hint="1 = a clear expression")
        _number("smoothing", self.smoothing, 0.0, 1.0, below_high=True)
        for name in ("cfg_audio", "cfg_audio_pose", "cfg_gaze"):
            _number(name, getattr(self, name), 0.0, MAX_GUIDANCE, optional=name != "cfg_gaze", hint="a guidance scale")
        _number("steps", self.steps, 0, 50, integer=True, hint="0 = the 50-step ancestral sampler, else DDIM steps")
        _number("seed", self.seed, 0, MAX_SEED, integer=True)
        _number("head_scale", self.head_scale, 0.0, MAX_MOTION_SCALE, hint="1 = the model's motion, 0 = none")
        _number("expression_scale", self.expression_scale, 0.0, MAX_MOTION_SCALE, hint="1 = the model's motion")
        _number("blinks", self.blinks, 0.0, MAX_BLINKS_PER_MINUTE, optional=True,
                hint="a minute; people blink 10-40 times")
        _number("mouth_readout", self.mouth_readout, 0.0, 1.0, optional=True,
                hint="0 = the generator's mouth alone, 1 = the read-out's")
        for name in ("still", "close_mouth_in_silence"):
            if not isinstance(getattr(self, name), bool):
                raise VasaError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def emotion_vector(self) -> np.ndarray | None:
        if self.emotion is None:
            return None
        return np.array([float(self.emotion.get(name, 0.0)) for name in EMOTION_NAMES])


def _number(name: str, value, low: float, high: float, *, integer: bool = False, optional: bool = False,
            below_high: bool = False, hint: str = "") -> None:
    """VasaError unless value is a finite number (an integer where asked; a bool is neither) in [low, high]
    (or [low, high) with below_high)."""
    if value is None and optional:
        return
    kind = numbers.Integral if integer else numbers.Real
    what = f"{name} must be {'an integer' if integer else 'a number'} between {low:g} and {high:g}"
    what += f" (excluded {high:g})" if below_high else ""
    what += f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise VasaError(f"{what}, got {value!r}")
    if not low <= value <= high or (below_high and value == high):
        raise VasaError(f"{what}, got {value!r}")


def parse_emotion(items: list[str] | None) -> dict[str, float] | None:
    """['happy=1', 'surprise=0.5'] -> {'happy': 1.0, 'surprise': 0.5}; a bare name weighs 1."""
    if not items:
        return None
    out = {}
    for item in items:
        name, _, weight = item.partition("=")
        try:
            out[name.strip().lower()] = float(weight) if weight else 1.0
        except ValueError:
            raise VasaError(f"emotion weight must be a number: {item!r}") from None
    return out
