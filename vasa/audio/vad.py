"""Voice activity with silero-vad's ONNX model (MIT), run directly with onnxruntime.

The model file ships inside the `silero-vad` wheel, installed with --no-deps (its torch and
torchaudio requirements are not needed for the ONNX file); the package itself is never imported.
The model is stateful: it reads 32 ms blocks (512 samples at 16 kHz) preceded by the previous
block's last 64 samples, so it streams with no lookahead.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from vasa.audio.loading import SAMPLE_RATE
from vasa.errors import VasaError

BLOCK_SAMPLES = 512  # 32 ms: the only block size the 16 kHz model accepts
CONTEXT_SAMPLES = 64  # samples of the previous block prepended to each block
STATE_SHAPE = (2, 1, 128)


def packaged_vad_path() -> Path:
    """silero_vad/data/silero_vad.onnx inside the installed wheel, found without importing it."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VasaError("voice activity needs `pip install --no-deps silero-vad` (or pass model_path)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"


class VoiceActivity:
    """Speech probability per 32 ms block. `push` chunks of any size; `flush` pads the last block."""

    def __init__(self, model_path: str | os.PathLike | None = None):
        import onnxruntime

        path = Path(model_path) if model_path is not None else packaged_vad_path()
        if not path.is_file():
            raise VasaError(f"silero-vad ONNX model not found: {path}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # per-block calls are tiny: threads only add overhead
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._rate = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def clone(self) -> "VoiceActivity":
        """A fresh stream state sharing this one's ONNX session (sessions run concurrently)."""
        other = object.__new__(VoiceActivity)
        other.session, other._rate = self.session, self._rate
        other.reset()
        return other

    def reset(self) -> None:
        self._state = np.zeros(STATE_SHAPE, np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, np.float32)
        self._rest = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Mono 16 kHz samples -> probabilities (blocks,) of the blocks they completed."""
        audio = np.concatenate([self._rest, np.asarray(samples, np.float32)])
        blocks = audio.shape[0] // BLOCK_SAMPLES
        self._rest = audio[blocks * BLOCK_SAMPLES :]
        return np.array([self._block(audio[i * BLOCK_SAMPLES : (i + 1) * BLOCK_SAMPLES]) for i in range(blocks)],
                        dtype=np.float32)

    def flush(self) -> np.ndarray:
        """The last partial block, zero-padded (empty when the audio ended on a block boundary)."""
        if self._rest.shape[0] == 0:
            return np.zeros(0, np.float32)
        block = np.pad(self._rest, (0, BLOCK_SAMPLES - self._rest.shape[0]))
        self._rest = np.zeros(0, np.float32)
        return np.array([self._block(block)], np.float32)

    def probabilities(self, waveform: np.ndarray) -> np.ndarray:
        """A whole waveform -> (ceil(n / 512),) speech probabilities, from a fresh state."""
        self.reset()
        return np.concatenate([self.push(waveform), self.flush()])

    def _block(self, block: np.ndarray) -> float:
        x = np.concatenate([self._context, block])[None]  # (1, 576)
        probability, self._state = self.session.run(None, {"input": x, "state": self._state, "sr": self._rate})
        self._context = block[-CONTEXT_SAMPLES:]
        return float(probability[0, 0])
