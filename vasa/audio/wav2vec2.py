"""wav2vec2 / HuBERT / WavLM / data2vec-audio from a local folder (`save_pretrained` layout), via
`transformers`, loaded with `local_files_only=True`: nothing is downloaded. No such weights ship
in a package, so the user gives the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from vasa.audio.encoders import DEFAULT_FPS, AudioEncoder
from vasa.audio.loading import SAMPLE_RATE
from vasa.audio.streaming import WindowSchedule
from vasa.errors import VasaError

SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer")
NORM_EPSILON = 1e-7  # Wav2Vec2FeatureExtractor's zero-mean unit-variance epsilon


class TransformersEncoder(AudioEncoder):
    """Hidden states of a self-supervised speech model; `layer=None` is the last layer, an int picks
    `hidden_states[layer]` (0 = the projected CNN features)."""

    def __init__(self, model_dir: str | os.PathLike, fps: float = DEFAULT_FPS,
                 schedule: WindowSchedule | None = None, layer: int | None = None):
        super().__init__(fps, schedule)
        from transformers import AutoConfig, AutoModel

        folder = Path(model_dir)
        if not (folder / "config.json").is_file():
            raise VasaError(f"no transformers model in {folder} (config.json missing)")
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise VasaError(f"{folder} holds a {config.model_type!r} model; need one of {SUPPORTED_MODEL_TYPES}")
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        self.layer = layer
        self.dim = config.hidden_size
        self.normalize = _reads_normalize(folder)
        stride, self.receptive_field = _conv_geometry(config.conv_kernel, config.conv_stride)
        self.stride = stride
        self.native_rate_hz = SAMPLE_RATE / stride  # 50 for the usual 320-sample stride
        self.first_frame_s = (self.receptive_field - 1) / 2 / SAMPLE_RATE  # frame 0 centre: 12.5 ms

    @torch.inference_mode()
    def encode_window(self, samples: np.ndarray) -> np.ndarray:
        audio = np.pad(samples, (0, max(0, self.receptive_field - samples.shape[0]))).astype(np.float32)
        if self.normalize:
            audio = (audio - audio.mean()) / np.sqrt(audio.var() + NORM_EPSILON)
        inputs = torch.from_numpy(audio)[None]  # (1, N)
        out = self.model(inputs, output_hidden_states=self.layer is not None)
        hidden = out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]
        return hidden[0].float().numpy()  # (frames, hidden_size)


def _conv_geometry(kernels, strides) -> tuple[int, int]:
    """Total stride and receptive field (samples) of the feature encoder's conv stack."""
    stride, field = 1, 1
    for kernel, step in zip(kernels, strides):
        field += (kernel - 1) * stride
        stride *= step
    return stride, field


def _reads_normalize(folder: Path) -> bool:
    """`do_normalize` from the folder's preprocessor_config.json; True (the common case) without one."""
    config = folder / "preprocessor_config.json"
    if not config.is_file():
        return True
    return bool(json.loads(config.read_text()).get("do_normalize", True))
