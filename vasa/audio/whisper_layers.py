"""Whisper's encoder in PyTorch, read from a CTranslate2 model folder, giving every layer's output.

CTranslate2 hands out only the encoder's last output. For lip motion the middle of the encoder is
worth having too: on the development clips a ridge from layer 3's output to the mouth opening
predicts unseen speakers a little better than one from the encoder's output (docs/benchmarks.md,
"Held-out clips"). The network is Whisper's (Radford et al. 2022, section 2.2): two GELU
convolutions over the log-mel (the second of stride 2), sinusoidal positions, pre-norm transformer
blocks, a final layer norm. Weights come from the same `model.bin` the CTranslate2 encoder runs
(float16 in the packaged tiny.en, computed here in float32).

Layer numbering: 0 is the convolutional stem with positions added, k = 1 .. n - 1 the residual
stream after block k, and n (4 for tiny) the encoder's output after its final layer norm, equal to
what CTranslate2 returns.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vasa.errors import VasaError

# CTranslate2's variable dtypes in model.bin (its DataType enum)
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
CT2_FLOATS = (0, 4, 5)
LAYER_NORM_EPS = 1e-5


def read_ct2_encoder(path: str | Path | Sequence[str | Path]) -> dict[str, Tensor]:
    """The `encoder/...` variables of a CTranslate2 model.bin, as float32 tensors keyed without the prefix.

    The file is a header (format version, spec name, revision, variable count) followed by each
    variable's name, rank, dims, dtype and raw little-endian bytes. `path` may also be the parts of a
    model.bin split into several files (read in order as one stream, without joining them on disk)."""
    parts = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    name = parts[0] if len(parts) == 1 else f"{parts[0]} (+{len(parts) - 1} parts)"
    try:
        return _read_ct2_encoder(parts, name)
    except (struct.error, ValueError) as error:  # short reads, sizes that do not fit the shapes
        raise VasaError(f"{name} is not a readable CTranslate2 model (truncated or another format): {error}") from None


class _Joined:
    """Files read one after the other as one stream (read and forward seek only)."""

    def __init__(self, paths: list[Path]):
        self.files = [p.open("rb") for p in paths]
        self.index = 0

    def read(self, size: int) -> bytes:
        chunks = []
        while size > 0 and self.index < len(self.files):
            chunk = self.files[self.index].read(size)
            if len(chunk) < size:
                self.index += 1
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def seek(self, offset: int, whence: int = 1) -> None:
        if whence != 1 or offset < 0:
            raise ValueError("joined model files seek forward only")
        while offset > 0 and self.index < len(self.files):
            f = self.files[self.index]
            here, end = f.tell(), f.seek(0, 2)
            if here + offset <= end:
                f.seek(here + offset)
                return
            offset -= end - here
            self.index += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for f in self.files:
            f.close()


def _read_ct2_encoder(parts: list[Path], path: Path | str) -> dict[str, Tensor]:
    weights: dict[str, Tensor] = {}
    with _Joined(parts) as f:
        def read(fmt: str):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))

        version, = read("I")
        if version < 5:
            raise VasaError(f"{path}: CTranslate2 model format {version} is too old (need 5 or newer)")
        name_length, = read("H")
        f.read(name_length)  # spec name, e.g. b"WhisperSpec\0"
        read("I")  # spec revision
        count, = read("I")
        for _ in range(count):
            name_length, = read("H")
            name = f.read(name_length).rstrip(b"\0").decode()
            rank, = read("B")
            dims = read("I" * rank)
            dtype, = read("B")
            size, = read("I")
            if not name.startswith("encoder/"):
                f.seek(size, 1)
                continue
            if dtype not in CT2_DTYPES or (dtype not in CT2_FLOATS and rank > 0):
                raise VasaError(f"{path}: {name} is stored quantised (CTranslate2 dtype {dtype}); re-convert "
                                "the model with float32, float16 or bfloat16 weights (ct2 --quantization float16)")
            weights[name.removeprefix("encoder/")] = _as_float32(f.read(size), dtype, dims)
    if "conv1/weight" not in weights:
        raise VasaError(f"{path} holds no Whisper encoder (no encoder/conv1/weight)")
    return weights


def _as_float32(data: bytes, dtype: int, dims: tuple[int, ...]) -> Tensor:
    if CT2_DTYPES[dtype] == "bfloat16":  # numpy has no bfloat16: read the bits, let torch widen them
        bits = torch.from_numpy(np.frombuffer(data, np.int16).reshape(dims).copy())
        return bits.view(torch.bfloat16).float()
    return torch.from_numpy(np.frombuffer(data, CT2_DTYPES[dtype]).reshape(dims).astype(np.float32))


class WhisperLayers:
    """Whisper's encoder over CTranslate2 weights: log-mel (1, 80, T) -> chosen layers' outputs (T / 2, D x layers)."""

    def __init__(self, weights: dict[str, Tensor], heads: int | None = None):
        self.weights = weights
        self.blocks = sum(1 for key in weights if key.endswith("self_attention/linear_0/weight"))
        self.width = weights["conv1/weight"].shape[0]
        if heads is None and "num_heads" in weights:
            heads = int(weights["num_heads"].item())
        self.heads = heads
        if not self.heads:
            raise VasaError("the Whisper weights do not say their number of attention heads")

    @classmethod
    def load(cls, model: str | Path | Sequence[str | Path]) -> "WhisperLayers":
        """From a CTranslate2 model folder (its model.bin) or the parts of a split model.bin."""
        if isinstance(model, (list, tuple)):
            return cls(read_ct2_encoder(model))
        return cls(read_ct2_encoder(Path(model) / "model.bin"))

    def check_layers(self, layers: tuple[int, ...]) -> None:
        if not layers or any(not 0 <= layer <= self.blocks for layer in layers):
            raise VasaError(f"Whisper layers are 0 (stem) to {self.blocks} (output); got {list(layers)}")

    def _norm(self, x: Tensor, prefix: str) -> Tensor:
        return F.layer_norm(x, (self.width,), self.weights[prefix + "/gamma"], self.weights[prefix + "/beta"],
                            LAYER_NORM_EPS)

    def _linear(self, x: Tensor, prefix: str) -> Tensor:
        return F.linear(x, self.weights[prefix + "/weight"], self.weights[prefix + "/bias"])

    def _block(self, x: Tensor, k: int) -> Tensor:
        prefix = f"layer_{k}/"
        B, T, D = x.shape
        qkv = self._linear(self._norm(x, prefix + "self_attention/layer_norm"), prefix + "self_attention/linear_0")
        q, k_, v = qkv.view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # each (B, H, T, D/H)
        attended = F.scaled_dot_product_attention(q, k_, v).transpose(1, 2).reshape(B, T, D)
        x = x + self._linear(attended, prefix + "self_attention/linear_1")
        hidden = F.gelu(self._linear(self._norm(x, prefix + "ffn/layer_norm"), prefix + "ffn/linear_0"))
        return x + self._linear(hidden, prefix + "ffn/linear_1")

    @torch.no_grad()
    def __call__(self, log_mel: Tensor, layers: tuple[int, ...]) -> Tensor:
        """log_mel (B, 80, T) -> (B, ceil(T / 2), width x len(layers)), layers in the order asked."""
        self.check_layers(layers)
        w = self.weights
        x = F.gelu(F.conv1d(log_mel, w["conv1/weight"], w["conv1/bias"], padding=1))
        x = F.gelu(F.conv1d(x, w["conv2/weight"], w["conv2/bias"], stride=2, padding=1)).transpose(1, 2)
        positions = w["position_encodings/encodings"]
        if x.shape[1] > positions.shape[0]:
            raise VasaError(f"Whisper windows are at most {positions.shape[0]} encoder frames, got {x.shape[1]}")
        x = x + positions[: x.shape[1]]  # (B, T/2, D)
        outputs = {0: x}
        for k in range(max(layers)):
            x = self._block(x, k)
            outputs[k + 1] = self._norm(x, "layer_norm") if k + 1 == self.blocks else x
        return torch.cat([outputs[layer] for layer in layers], dim=-1)
