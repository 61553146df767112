"""`LiveAvatar`: a portrait that talks when a voice agent speaks and keeps living while it listens.

    avatar = LiveAvatar(head, on_frame=show)   # show(AvatarFrame) is called from the avatar's thread
    avatar.start()
    avatar.say(samples, sample_rate)           # the agent's speech (TTS audio), any rate and channels
    avatar.end_utterance()                     # the TTS finished this utterance
    avatar.interrupt()                         # the user barged in: queued speech dropped, mouth closes
    avatar.close()

One `StreamingSession` runs for the avatar's whole life, so the head never jumps between utterances.
A feeder thread is the clock: every CHUNK_S of wall time it pushes CHUNK_S of audio, the agent's speech
while some is queued, silence otherwise. A pump thread reads the frames and hands each to `on_frame`
with the audio of its own 1/fps slot (the speech it shows, or None in silence), so sound and picture
leave together. States (`AvatarFrame.state`):

- listening: no speech queued or in flight. Silence goes in; the motion model keeps the head, eyes and
  blinks going and the mouth gate keeps the mouth at rest.
- speaking: the frame shows speech audio.
- interrupted: the `HUSH_FRAMES` frames after `interrupt` in which the mouth closes, whatever audio they
  were made from (`StreamingSession.interrupt`); then listening. The queued speech is dropped and speech
  already in flight is not played; the mouth stays at rest until the next speech.

Nothing here blocks the caller: `say` only queues. On a machine that cannot keep real time the clock
slips rather than letting audio pile up in the session: no more than MAX_BACKLOG_S of audio beyond the
design's wait is pushed ahead of the frames out (the time given up is `stats.slipped_s`; speech then
comes out slower than it was said, with gaps), so the avatar's lag stays bounded. A frame that still
comes out more than `max_lag_s` behind the clock is sent without its image (its audio still goes out)
and counted in `stats.late_frames`.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from vasa.controls import Controls
from vasa.errors import VasaError
from vasa.latents import SAMPLE_RATE
from vasa.provenance import stream_mark
from vasa.stages import HUSH_FRAMES
from vasa.streaming import StreamingSession

CHUNK_S = 0.02  # the feeder's step: 20 ms of audio per push
LEAD_S = 0.04  # how far the audio clock may run ahead of the wall clock
MAX_BACKLOG_S = 0.5  # audio pushed beyond the frames out and the design's wait: more and the clock slips
LISTENING_BLINKS = 16.0  # blinks per minute unless the controls say otherwise (the live model blinks
# rarely in silence on its own); the blink control holds 4 frames back (160 ms of latency)
STEPS = 5  # DDIM steps unless the controls say otherwise: as `vasa serve` (10 fall behind real time on 2 cores)
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 8


def to_model_audio(audio: np.ndarray | bytes, sample_rate: int, channels: int = 1) -> np.ndarray:
    """Speech in any common form -> mono float32 at 16 kHz. `audio`: int16 PCM bytes (interleaved) or an
    array (int16 or float in [-1, 1], (n,) or (n, channels)). A rate or channel count out of range is a
    VasaError with what was given."""
    if not isinstance(sample_rate, (int, np.integer)) or not 1000 <= sample_rate <= MAX_SAMPLE_RATE:
        raise VasaError(f"speech sample rate must be a whole number of Hz in 1000..{MAX_SAMPLE_RATE}, "
                        f"got {sample_rate!r}")
    if not isinstance(channels, (int, np.integer)) or not 1 <= channels <= MAX_CHANNELS:
        raise VasaError(f"speech channel count must be 1..{MAX_CHANNELS}, got {channels!r}")
    if isinstance(audio, (bytes, bytearray, memoryview)):
        raw = bytes(audio)
        if len(raw) % (2 * channels):
            raise VasaError(f"speech is 16-bit PCM in {channels} channel(s): {len(raw)} bytes is not a whole "
                            "number of frames")
        samples = np.frombuffer(raw, np.int16).reshape(-1, channels).astype(np.float32) / 32768.0
    else:
        samples = np.asarray(audio)
        if samples.dtype == np.int16:
            samples = samples.astype(np.float32) / 32768.0
        samples = samples.astype(np.float32).reshape(len(samples), -1)
    if not np.isfinite(samples).all():
        raise VasaError("speech contains NaN or infinite samples")
    mono = samples.mean(axis=1)
    if sample_rate != SAMPLE_RATE and len(mono):
        from scipy.signal import resample_poly

        g = math.gcd(int(sample_rate), SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // g, int(sample_rate) // g).astype(np.float32)
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class AvatarFrame:
    """One frame out: `index` at `fps`, showing stream time `time_s`; `audio` is its slot's speech (int16 at
    16 kHz, `SAMPLE_RATE / fps` samples) or None in silence and after an interruption; `starts` / `ends`:
    an utterance's first / last speech is in this frame's audio; `image` None when the frame came too
    late to be shown (its audio still plays)."""

    index: int
    time_s: float
    image: np.ndarray | None
    motion: np.ndarray | None
    audio: np.ndarray | None
    state: str  # "speaking", "listening" or "interrupted"
    starts: bool = False
    ends: bool = False


@dataclass
class AvatarStats:
    frames: int = 0  # frames handed out with an image
    late_frames: int = 0  # made more than max_lag_s behind the clock: audio only
    interrupted_frames: int = 0  # made before an interruption, dropped
    interruptions: int = 0
    speech_s: float = 0.0  # speech played
    dropped_speech_s: float = 0.0  # speech queued or in flight when an interruption came
    slipped_s: float = 0.0  # clock time given up because the machine could not keep real time
    first_frame_after_speech_s: list[float] = field(default_factory=list)  # wall time from say() to its first frame


class LiveAvatar:
    """A `StreamingSession` driven by a real-time clock; see the module doc. `head` is a loaded
    `TalkingHead`, `source` the portrait (`head.encode_source`; default the head's own); `controls`
    default to `Controls(blinks=LISTENING_BLINKS, steps=STEPS)`; `watermark`: the frames carry vasa's
    invisible watermark (default; vasa.provenance)."""

    def __init__(self, head, on_frame: Callable[[AvatarFrame], None], source=None, controls: Controls | None = None,
                 fps: float = 25.0, step_frames: int | None = None, max_lag_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, watermark: bool = True):
        if source is None and head.source is None:
            raise VasaError("the avatar needs a portrait: pass source= or call head.set_source(image) first")
        controls = controls if controls is not None else Controls(blinks=LISTENING_BLINKS, steps=STEPS)
        self.session = StreamingSession(head, source, controls=controls, fps=fps, step_frames=step_frames,
                                        mark=stream_mark(watermark))
        self.fps, self.on_frame, self.max_lag_s, self.clock = fps, on_frame, max_lag_s, clock
        self.stats = AvatarStats()
        self._lock = threading.Lock()
        self._queue: collections.deque = collections.deque()  # speech arrays and END markers
        self._queued = 0  # speech samples queued
        self._said_at: collections.deque = collections.deque()  # wall time of each utterance's first say()
        self._fresh = True  # the next speech pushed starts an utterance
        self._new_utterance = True  # the next say() starts one
        # what was pushed, from sample self._base on: the audio, whether it is speech to play
        self._pushed = np.zeros(0, np.float32)
        self._speech = np.zeros(0, bool)
        self._base = 0
        self._starts: collections.deque = collections.deque()  # sample positions where utterances start
        self._ends: collections.deque = collections.deque()  # and end
        self._hushed = False  # interrupted, and no speech since: the next speech releases the mouth
        self._cut: int | None = None  # frames from this index on were made after the last interruption
        self._fed = 0  # samples pushed
        self._stopped = threading.Event()
        self._threads = [threading.Thread(target=self._feed, name="vasa-avatar-feed", daemon=True),
                         threading.Thread(target=self._pump, name="vasa-avatar-pump", daemon=True)]
        self._t0: float | None = None
        self._next_time_s: float | None = None  # stream time of the frame after the last one out
        self.error: BaseException | None = None

    # --- the agent's side ---------------------------------------------------------------------
    def start(self) -> None:
        self._t0 = self.clock()
        for thread in self._threads:
            thread.start()

    def say(self, audio: np.ndarray | bytes, sample_rate: int = SAMPLE_RATE, channels: int = 1) -> None:
        """Queue speech (see `to_model_audio` for the forms); empty audio is ignored. Never blocks."""
        samples = to_model_audio(audio, sample_rate, channels)
        if not len(samples):
            return
        with self._lock:
            if self._new_utterance:
                self._said_at.append(time.perf_counter())
                self._new_utterance = False
            self._queue.append(samples)
            self._queued += len(samples)

    def end_utterance(self) -> None:
        """The agent's utterance is complete: what follows the queued speech is silence, not a pause."""
        with self._lock:
            self._queue.append(None)
            self._new_utterance = True

    def interrupt(self) -> None:
        """The user barged in: drop the queued speech, play none of what is in flight, close the mouth."""
        with self._lock:
            self.stats.interruptions += 1
            self.stats.dropped_speech_s += self._queued / SAMPLE_RATE
            self._queue.clear()
            self._queued = 0
            self._said_at.clear()
            self._fresh = self._new_utterance = True
            self.stats.dropped_speech_s += float(self._speech.sum()) / SAMPLE_RATE
            self._speech[:] = False  # speech pushed and not yet played: never played
            self._starts.clear()
            self._ends.clear()
            self._hushed, self._cut = True, -1
            self.session.interrupt()

    @property
    def queued_s(self) -> float:
        """Speech queued and not yet pushed, in seconds."""
        return self._queued / SAMPLE_RATE

    @property
    def speaking(self) -> bool:
        with self._lock:
            return self._queued > 0 or bool(self._speech.any())

    def close(self) -> None:
        self._stopped.set()
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout=5.0)
        self.session.close()

    # --- the feeder: the clock ----------------------------------------------------------------
    def _take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n samples for the next push: queued speech first, silence after; utterance marks recorded."""
        out, speech = np.zeros(n, np.float32), np.zeros(n, bool)
        filled = 0
        at = self._fed  # the sample position this push starts at
        with self._lock:
            while filled < n and self._queue:
                head = self._queue[0]
                if head is None:  # end of an utterance
                    self._queue.popleft()
                    if not self._fresh:
                        self._ends.append(at + filled)
                    self._fresh = True
                    continue
                if self._fresh:
                    self._starts.append(at + filled)
                    self._fresh = False
                    if self._hushed:  # the next utterance: the mouth moves again from here
                        self._hushed = False
                        self.session.release_mouth((at + filled) / SAMPLE_RATE)
                take = min(n - filled, len(head))
                out[filled:filled + take], speech[filled:filled + take] = head[:take], True
                if take == len(head):
                    self._queue.popleft()
                else:
                    self._queue[0] = head[take:]
                self._queued -= take
                filled += take
            self._pushed = np.concatenate([self._pushed, out])
            self._speech = np.concatenate([self._speech, speech])
            self._fed += n
        return out, speech

    def _feed(self) -> None:
        chunk = int(round(CHUNK_S * SAMPLE_RATE))
        try:
            while not self._stopped.is_set():
                due = self.clock() - self._t0 + LEAD_S
                if self.session.pushed_s >= due:
                    time.sleep(CHUNK_S / 2)
                    continue
                if self._backlog_s() > MAX_BACKLOG_S:  # the machine is behind: the clock slips, no audio piles up
                    before = self.clock()
                    time.sleep(CHUNK_S / 2)
                    slipped = self.clock() - before
                    self._t0 += slipped
                    self.stats.slipped_s += slipped
                    continue
                samples, _ = self._take(chunk)
                self.session.push(samples)
        except Exception as error:  # the session was closed under it, or failed: the pump reports it
            if not self._stopped.is_set():
                self.error = error

    def _backlog_s(self) -> float:
        """Audio pushed beyond what the frames out so far and the design's wait account for."""
        shown = self._next_time_s if self._next_time_s is not None else 0.0
        return self.session.pushed_s - shown - self.session.algorithmic_latency_s

    # --- the pump: frames out with their audio ------------------------------------------------
    def _slot(self, index: int) -> tuple[np.ndarray | None, bool, bool]:
        """Frame `index`'s audio (int16 speech or None), and whether an utterance starts / ends in it."""
        a = int(round(index * SAMPLE_RATE / self.fps))
        b = int(round((index + 1) * SAMPLE_RATE / self.fps))
        with self._lock:
            lo, hi = a - self._base, b - self._base
            audio, speech = self._pushed[max(lo, 0):max(hi, 0)], self._speech[max(lo, 0):max(hi, 0)]
            starts = ends = False
            while self._starts and self._starts[0] < b:
                starts = self._starts.popleft() >= a or starts
            while self._ends and self._ends[0] <= b:
                ends = True
                self._ends.popleft()
            keep = max(hi, 0)  # nothing before this frame's end is asked for again
            self._pushed, self._speech, self._base = self._pushed[keep:], self._speech[keep:], self._base + keep
        if not speech.any():
            return None, starts, ends
        pcm = np.where(speech, audio, 0.0)
        pcm = np.pad(pcm, (0, b - a - len(pcm)))
        return (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16), starts, ends

    def _pump(self) -> None:
        try:
            while not self._stopped.is_set():
                frame = self.session.next_frame(timeout=0.05)
                if frame is None:
                    continue
                self.stats.interrupted_frames = self.session.stats.interrupted_frames
                self._next_time_s = frame.time_s + 1.0 / self.fps
                audio, starts, ends = self._slot(frame.index)
                with self._lock:
                    if self._cut == -1:  # the first frame made after the interruption
                        self._cut = frame.index
                    hushing = self._cut is not None and frame.index < self._cut + HUSH_FRAMES
                state = "speaking" if audio is not None else ("interrupted" if hushing else "listening")
                late = (self.clock() - self._t0) - frame.time_s - self.session.algorithmic_latency_s > self.max_lag_s
                out = AvatarFrame(frame.index, frame.time_s, None if late else frame.image, frame.motion, audio,
                                  state, starts, ends)
                if late:
                    self.stats.late_frames += 1
                else:
                    self.stats.frames += 1
                if audio is not None:
                    self.stats.speech_s += len(audio) / SAMPLE_RATE
                if starts:
                    with self._lock:
                        said = self._said_at.popleft() if self._said_at else None
                    if said is not None:
                        self.stats.first_frame_after_speech_s.append(time.perf_counter() - said)
                self.on_frame(out)
        except Exception as error:
            if not self._stopped.is_set():
                self.error = error
                self._stopped.set()


__all__ = ["AvatarFrame", "AvatarStats", "LiveAvatar", "to_model_audio"]
