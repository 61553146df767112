"""Save and load `MotionDiT` weights as safetensors with the config in the file's metadata.

    save_motion_model("motion.safetensors", model)
    model = load_motion_model("motion.safetensors")    # config from the file, strict keys

The normalisation statistics (`motion_mean`, `motion_std`) are buffers, so they travel with the weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from vasa.checkpoints import load_weights, read_extra, read_weights_metadata, save_weights
from vasa.errors import VasaError
from vasa.motion.config import MotionConfig
from vasa.motion.dit import MotionDiT
from vasa.motion.readout import CONFIG_KEY as READOUT_KEY, PREFIX as READOUT_PREFIX, MouthReadout

CONFIG_KEY = "vasa.motion.config"


def save_motion_model(path: str | Path, model: MotionDiT, metadata: dict[str, str] | None = None,
                      readout: MouthReadout | None = None) -> None:
    """Write the weights and config (and a mouth read-out, `vasa.motion.readout`, beside them); the file
    appears only when complete (temp file, then rename), so a run killed mid-save leaves the previous
    checkpoint intact. `metadata` adds string entries (e.g. "audio_encoder": "whisper", which
    `read_metadata` gives back)."""
    metadata = {k: v for k, v in (metadata or {}).items() if k != READOUT_KEY}
    metadata[CONFIG_KEY] = json.dumps(asdict(model.config))
    extra = None
    if readout is not None:
        metadata[READOUT_KEY] = json.dumps(readout.config())
        extra = {READOUT_PREFIX + k: v for k, v in readout.state_dict().items()}
    save_weights(path, model, metadata, extra)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a saved motion model (config included, under CONFIG_KEY)."""
    return read_weights_metadata(path, "motion model")


def load_motion_model(path: str | Path) -> MotionDiT:
    """The model saved at `path`, in eval mode; a missing file, config or key is a VasaError."""
    path = Path(path)
    metadata = read_metadata(path)
    if CONFIG_KEY not in metadata:
        raise VasaError(f"{path} has no {CONFIG_KEY} metadata: not a checkpoint written by save_motion_model")
    return load_weights(path, MotionDiT(MotionConfig(**json.loads(metadata[CONFIG_KEY]))), READOUT_PREFIX)


def load_mouth_readout(path: str | Path) -> MouthReadout | None:
    """The mouth read-out a motion model file carries, None where it carries none."""
    path = Path(path)
    metadata = read_metadata(path)
    if READOUT_KEY not in metadata:
        return None
    try:
        readout = MouthReadout.from_config(json.loads(metadata[READOUT_KEY]))
        readout.load_state_dict(read_extra(path, READOUT_PREFIX), strict=True)
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise VasaError(f"{path}: its mouth read-out cannot be read ({error})") from None
    return readout.eval()
