"""Save and load `MotionDiT` weights as safetensors with the config in the file's metadata.

    save_motion_model("motion.safetensors", model)
    model = load_motion_model("motion.safetensors")    # config from the file, strict keys

The normalisation statistics (`motion_mean`, `motion_std`) are buffers, so they travel with the weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from vasa.errors import VasaError
from vasa.motion.config import MotionConfig
from vasa.motion.dit import MotionDiT

CONFIG_KEY = "vasa.motion.config"


def save_motion_model(path: str | Path, model: MotionDiT, metadata: dict[str, str] | None = None) -> None:
    """Write the weights and config; the file appears only when complete (temp file, then rename),
    so a run killed mid-save leaves the previous checkpoint intact. `metadata` adds string entries
    (e.g. "audio_encoder": "whisper", which `read_metadata` gives back)."""
    path = Path(path)
    tensors = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        extra = {str(k): str(v) for k, v in (metadata or {}).items()}
        save_file(tensors, str(temporary), metadata={**extra, CONFIG_KEY: json.dumps(asdict(model.config))})
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a saved motion model (config included, under CONFIG_KEY)."""
    path = Path(path)
    if not path.is_file():
        raise VasaError(f"no motion model at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise VasaError(f"cannot read motion model {path}: {error}") from None


def load_motion_model(path: str | Path) -> MotionDiT:
    """The model saved at `path`, in eval mode; a missing file, config or key is a VasaError."""
    path = Path(path)
    metadata = read_metadata(path)
    if CONFIG_KEY not in metadata:
        raise VasaError(f"{path} has no {CONFIG_KEY} metadata: not a checkpoint written by save_motion_model")
    model = MotionDiT(MotionConfig(**json.loads(metadata[CONFIG_KEY])))
    state = load_file(str(path))
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise VasaError(f"{path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict(state, strict=True)
    return model.eval()
