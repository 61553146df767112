"""Third-party weights for the metric networks (SyncNet, I3D): read from a user path, loaded strictly."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from vasa.errors import VasaError


def load_weights(model: nn.Module, path: str | os.PathLike, what: str) -> nn.Module:
    """Load a state dict (.safetensors, or a torch file read with weights_only=True: tensors, no code) into
    `model` with strict keys; `what` names the network in errors. Returns the model in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise VasaError(f"no {what} weights at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors and torch raise several types for foreign files
        kind = "a safetensors file" if path.suffix == ".safetensors" else "a torch file of tensors"
        raise VasaError(f"cannot read {what} weights {path}: not {kind} ({one_line(error)})") from None
    if not isinstance(state, dict):
        raise VasaError(f"{path} holds a {type(state).__name__}, not a {what} state dict")
    expected = set(model.state_dict())
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") or k in expected}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise VasaError(f"{path} is not a {what} state dict: missing {missing[:4]}, unexpected {unexpected[:4]}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def one_line(error: Exception) -> str:
    """An exception in one line: torch.load's messages run to paragraphs of advice (among it to unpickle
    code with weights_only=False, which vasa never does); its first sentence says what went wrong."""
    line = str(error).strip().split("\n", 1)[0].split(". ", 1)[0].rstrip(".")
    return f"{type(error).__name__}: {line}" if line else type(error).__name__
