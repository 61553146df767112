"""One window loop for offline and streaming feature extraction ("offline is streaming with one chunk").

Video frame k covers audio [k / fps, (k + 1) / fps). Frames are produced in hops of `hop_frames`;
window n encodes the audio of its hop plus `left_context_s` before and `lookahead_s` after
(cut at the start and end of the audio, never padded with invented sound), and keeps only the
features of its own hop. The encoder's native frames (50 Hz Whisper/wav2vec2, 100 Hz mel) are
linearly interpolated at the video frame centres (k + 0.5) / fps.

A window runs as soon as the audio up to its lookahead has arrived, so a frame is final at most
`hop + lookahead` after its start, whatever the chunk sizes; `flush()` runs the rest with the
audio's true end. Window boundaries depend only on absolute sample positions, so any chunking
gives the same windows on the same samples as one chunk. The total is
T_frames = round(n_samples / sample_rate * fps) (half a frame rounds to even, Python's `round`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vasa.audio.loading import SAMPLE_RATE
from vasa.audio.vad import BLOCK_SAMPLES
from vasa.errors import VasaError

if TYPE_CHECKING:
    from vasa.audio.encoders import AudioEncoder
    from vasa.audio.vad import VoiceActivity


def audio_chunk(samples) -> np.ndarray:
    """A pushed chunk as float32 (n,), or a VasaError saying what is wrong with it (mono 16 kHz, finite)."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise VasaError(f"audio chunks must be mono (samples,) at 16 kHz, got shape {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise VasaError("audio chunk contains NaN or infinite samples")
    return samples


@dataclass(frozen=True)
class WindowSchedule:
    """How audio is cut into encoder windows. Seconds; the hop is rounded to whole video frames."""

    hop_s: float = 0.4
    left_context_s: float = 2.0
    lookahead_s: float = 0.6

    def __post_init__(self):
        if not self.hop_s > 0 or self.left_context_s < 0 or self.lookahead_s < 0:
            raise VasaError(f"window schedule needs hop_s > 0 and non-negative context, got {self}")

    def hop_frames(self, fps: float) -> int:
        return max(1, int(round(self.hop_s * fps)))

    def window_s(self, fps: float) -> float:
        """Longest stretch of audio one window encodes."""
        return self.left_context_s + self.hop_frames(fps) / fps + self.lookahead_s

    def latency_ms(self, fps: float) -> float:
        """Worst-case algorithmic delay from a sample arriving to its frame's features (compute not included)."""
        return 1000.0 * (self.hop_frames(fps) / fps + self.lookahead_s)


@dataclass(frozen=True)
class AudioFeatures:
    """Per-video-frame audio features: frames [start_frame, start_frame + len) of a stream."""

    features: np.ndarray  # (T, D) float32
    voice: np.ndarray | None  # (T,) speech probability in [0, 1], None without a VAD
    fps: float
    start_frame: int = 0

    def __len__(self) -> int:
        return self.features.shape[0]

    @staticmethod
    def concatenate(parts: list["AudioFeatures"]) -> "AudioFeatures":
        if not parts:
            raise VasaError("no audio features to concatenate")
        voice = None if parts[0].voice is None else np.concatenate([p.voice for p in parts])
        return AudioFeatures(np.concatenate([p.features for p in parts]), voice, parts[0].fps, parts[0].start_frame)


class AudioStream:
    """Incremental feature extraction: `push(chunk)` -> features of the frames that became final.

    Chunks are mono float32 at 16 kHz, any length. Memory is bounded by about two windows of audio plus
    the frames waiting for their window (or for the VAD's 32 ms block).
    """

    def __init__(self, encoder: "AudioEncoder", vad: "VoiceActivity | None" = None):
        self.encoder = encoder
        self.fps = encoder.fps
        self.schedule = encoder.schedule
        self.vad = vad
        if vad is not None:
            vad.reset()
        self._hop_frames = self.schedule.hop_frames(self.fps)
        self._left_samples = int(round(self.schedule.left_context_s * SAMPLE_RATE))
        self._lookahead_samples = int(round(self.schedule.lookahead_s * SAMPLE_RATE))
        self._buffer = np.zeros(0, np.float32)
        self._buffer_start = 0  # absolute sample index of self._buffer[0]
        self._received = 0  # samples pushed so far
        self._next_window = 0
        self._pending: list[np.ndarray] = []  # encoded frames waiting for voice activity
        self._pending_frames = 0
        self._emitted = 0  # frames handed out
        self._voice_blocks = np.zeros(0, np.float32)  # per 32 ms VAD block, from _voice_start
        self._voice_start = 0
        self._finished = False

    @property
    def latency_ms(self) -> float:
        return self.schedule.latency_ms(self.fps)

    def frame_boundary(self, frame: int) -> int:
        """Sample index where video frame `frame` starts."""
        return int(round(frame * SAMPLE_RATE / self.fps))

    def push(self, samples: np.ndarray) -> AudioFeatures:
        if self._finished:
            raise VasaError("audio stream already flushed; start a new one with encoder.stream()")
        samples = audio_chunk(samples)
        self._buffer = np.concatenate([self._buffer, samples])
        self._received += samples.shape[0]
        if self.vad is not None:
            self._voice_blocks = np.concatenate([self._voice_blocks, self.vad.push(samples)])
        while self.frame_boundary((self._next_window + 1) * self._hop_frames) + self._lookahead_samples <= self._received:
            self._run_window(self._received)
        return self._emit()

    def flush(self) -> AudioFeatures:
        """End of audio: encode the remaining windows with the true end and return the last frames."""
        if self._finished:
            raise VasaError("audio stream already flushed")
        self._finished = True
        if self._received == 0:
            raise VasaError("no audio was pushed to the stream")
        if self.vad is not None:
            self._voice_blocks = np.concatenate([self._voice_blocks, self.vad.flush()])
        total_frames = int(round(self._received / SAMPLE_RATE * self.fps))
        while self._next_window * self._hop_frames < total_frames:
            self._run_window(self._received, total_frames)
        return self._emit()

    def _run_window(self, end_sample: int, total_frames: int | None = None) -> None:
        first = self._next_window * self._hop_frames
        last = first + self._hop_frames if total_frames is None else min(first + self._hop_frames, total_frames)
        start = max(0, self.frame_boundary(first) - self._left_samples)
        stop = min(end_sample, self.frame_boundary(first + self._hop_frames) + self._lookahead_samples)
        segment = self._buffer[start - self._buffer_start : stop - self._buffer_start]
        native = self.encoder.encode_window(segment)  # (N, D) at encoder.native_rate_hz
        centres_s = (np.arange(first, last) + 0.5) / self.fps - start / SAMPLE_RATE
        self._pending.append(_interpolate(native, centres_s, self.encoder.native_rate_hz, self.encoder.first_frame_s))
        self._pending_frames += last - first
        self._next_window += 1
        keep_from = max(0, self.frame_boundary(self._next_window * self._hop_frames) - self._left_samples)
        drop = keep_from - self._buffer_start
        if drop > 0 and 2 * drop >= len(self._buffer):  # drop audio no later window needs (amortised O(n))
            self._buffer = self._buffer[drop:].copy()
            self._buffer_start = keep_from

    def _emit(self) -> AudioFeatures:
        ready = self._pending_frames
        if self.vad is not None and not self._finished:
            ready = min(ready, self._voice_final_frames() - self._emitted)
        if ready <= 0:
            return self._empty()
        stacked = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        out, rest = stacked[:ready], stacked[ready:]
        self._pending = [rest] if len(rest) else []
        self._pending_frames -= ready
        voice = self._frame_voice(self._emitted, self._emitted + ready) if self.vad is not None else None
        result = AudioFeatures(np.ascontiguousarray(out), voice, self.fps, self._emitted)
        self._emitted += ready
        return result

    def _empty(self) -> AudioFeatures:
        dim = self.encoder.dim
        voice = np.zeros(0, np.float32) if self.vad is not None else None
        return AudioFeatures(np.zeros((0, dim), np.float32), voice, self.fps, self._emitted)

    def _voice_final_frames(self) -> int:
        """Frames whose every overlapping 32 ms VAD block has been computed."""
        done_samples = (self._voice_start + len(self._voice_blocks)) * BLOCK_SAMPLES
        return int(np.floor(done_samples * self.fps / SAMPLE_RATE + 1e-9))

    def _frame_voice(self, first: int, last: int) -> np.ndarray:
        """Speech probability of frames [first, last): the max over the VAD blocks each overlaps."""
        voice = np.zeros(last - first, np.float32)
        for i, frame in enumerate(range(first, last)):
            lo = self.frame_boundary(frame) // BLOCK_SAMPLES - self._voice_start
            hi = -(-self.frame_boundary(frame + 1) // BLOCK_SAMPLES) - self._voice_start
            blocks = self._voice_blocks[lo : max(hi, lo + 1)]
            voice[i] = blocks.max() if len(blocks) else 0.0
        drop = self.frame_boundary(last) // BLOCK_SAMPLES - self._voice_start
        if drop > 0:
            self._voice_blocks = self._voice_blocks[drop:]
            self._voice_start += drop
        return voice


def _interpolate(native: np.ndarray, times_s: np.ndarray, rate_hz: float, first_frame_s: float) -> np.ndarray:
    """Sample native frames (N, D) at `times_s` (relative to the window start) -> (len(times_s), D)."""
    position = np.clip((times_s - first_frame_s) * rate_hz, 0.0, native.shape[0] - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, native.shape[0] - 1)
    weight = (position - low)[:, None].astype(np.float32)
    return (native[low] * (1.0 - weight) + native[high] * weight).astype(np.float32)
