"""Save and load `MotionDiT` weights as safetensors with the config in the file's metadata.

    save_motion_model("motion.safetensors", model)
    model = load_motion_model("motion.safetensors")    # config from the file, strict keys

The normalisation statistics (`motion_mean`, `motion_std`) are buffers, so they travel with the weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from vasa.checkpoints import load_weights, read_weights_metadata, save_weights
from vasa.errors import VasaError
from vasa.motion.config import MotionConfig
from vasa.motion.dit import MotionDiT

CONFIG_KEY = "vasa.motion.config"


def save_motion_model(path: str | Path, model: MotionDiT, metadata: dict[str, str] | None = None) -> None:
    """Write the weights and config; the file appears only when complete (temp file, then rename),
    so a run killed mid-save leaves the previous checkpoint intact. `metadata` adds string entries
    (e.g. "audio_encoder": "whisper", which `read_metadata` gives back)."""
    save_weights(path, model, {**(metadata or {}), CONFIG_KEY: json.dumps(asdict(model.config))})


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a saved motion model (config included, under CONFIG_KEY)."""
    return read_weights_metadata(path, "motion model")


def load_motion_model(path: str | Path) -> MotionDiT:
    """The model saved at `path`, in eval mode; a missing file, config or key is a VasaError."""
    path = Path(path)
    metadata = read_metadata(path)
    if CONFIG_KEY not in metadata:
        raise VasaError(f"{path} has no {CONFIG_KEY} metadata: not a checkpoint written by save_motion_model")
    return load_weights(path, MotionDiT(MotionConfig(**json.loads(metadata[CONFIG_KEY]))))
