"""Safetensors checkpoints that carry their config: what every model's save/load shares.

    save_weights(path, model, {"vasa.x.config": json.dumps(...), ...})   # complete or not at all
    metadata = read_weights_metadata(path, "motion model")
    model = load_weights(path, Model(Config(**json.loads(metadata[KEY]))))  # strict keys, eval mode
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
import torch
from torch import nn

from vasa.errors import VasaError
from vasa.outputs import move_into_place


def save_weights(path: str | os.PathLike, model: nn.Module, metadata: dict[str, str],
                 extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write the state dict (and `extra` tensors, named apart from the model's) with string `metadata`;
    the file appears only when complete (temp file, then rename), so a run killed mid-save leaves the
    previous checkpoint intact."""
    path = Path(path)
    tensors = {name: t.detach().contiguous().cpu() for name, t in {**model.state_dict(), **(extra or {})}.items()}
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, str(temporary), metadata={str(k): str(v) for k, v in metadata.items()})
        move_into_place(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_weights_metadata(path: str | os.PathLike, what: str) -> dict[str, str]:
    """The string metadata of a checkpoint; a missing or unreadable file is a VasaError naming `what`."""
    path = Path(path)
    if not path.is_file():
        raise VasaError(f"no {what} at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise VasaError(f"cannot read {what} {path}: {error}") from None


def load_weights(path: str | os.PathLike, model: nn.Module, extra_prefix: str | None = None) -> nn.Module:
    """Load the weights at `path` into `model` (built from the file's config) strictly, in eval mode;
    tensors named `extra_prefix`... are someone else's (`read_extra`)."""
    state = load_file(str(path))
    if extra_prefix:
        state = {k: v for k, v in state.items() if not k.startswith(extra_prefix)}
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise VasaError(f"{path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def read_extra(path: str | os.PathLike, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint named `prefix`..., the prefix taken off (empty if it has none)."""
    with safe_open(str(path), framework="pt") as f:
        return {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
