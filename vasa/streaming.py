"""`StreamingSession`: push audio as it is heard, get frames stamped on the audio clock. No sockets.

    session = StreamingSession(head, source, Controls(seed=0), encode=jpeg)
    session.push(samples)                    # mono float32 at 16 kHz, any chunk size (blocks when behind)
    frame = session.next_frame(timeout=0.1)  # StreamFrame(index, time_s, image, data) or None
    session.interrupt()                      # a live avatar cut off: the mouth closes now (HUSH_FRAMES)
    session.release_mouth(at_s)              # ... and moves again with the audio from at_s on
    session.end()                            # no more audio: the last frames follow, then None for good
    session.close()                          # stop the stage threads (also on abort)

Stages, each a thread running one generic loop, joined by bounded queues (a full queue blocks the
stage before it, so a slow stage slows the producer instead of growing memory):

    audio chunks -> features (Whisper + voice activity, `vasa.audio.AudioStream`)
                 -> motion (windows of `vasa.motion.MotionStream`, mouth gate, scales, smoothing)
                 -> render (`TalkingHead.render`, resampled to `fps`)
                 -> encode (an optional `encode(image) -> bytes`, e.g. JPEG for a browser)

These are the stage objects `TalkingHead.motion` / `frames` / `generate` run in one thread, so for the
same seed a session gives the same frames as offline generation, whatever the chunk sizes.

Timestamps. Frame j shows the audio from `time_s = j / fps` on: the clock is the count of samples
pushed, never the wall clock. Latency (frame j ready after its audio) is the audio the frame waits for
(features: hop + lookahead = 1.0 s with Whisper; motion: the rest of its window, `step_frames`) plus
compute; docs/serve.md works it out.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from vasa.audio import SAMPLE_RATE
from vasa.audio.streaming import audio_chunk
from vasa.errors import VasaError
from vasa.pipeline import MODEL_FPS, Controls, Source, TalkingHead, build_stages

POLL_S = 0.05  # how often a blocked stage looks whether the session was closed
QUEUE_ITEMS = {"audio": 64, "features": 8, "motion": 8, "frames": 50, "encoded": 50}  # bounded queues


@dataclass(frozen=True)
class StreamFrame:
    """One output frame: `index` at `fps`, showing the audio from `time_s` on (audio clock)."""

    index: int
    time_s: float
    image: np.ndarray  # (S, S, 3) uint8 RGB
    data: bytes | None = None  # the encoded image when the session has an encoder
    ready_s: float = 0.0  # wall time (time.perf_counter) the frame left the last stage
    motion: np.ndarray | None = None  # the relative motion row x (46,) it shows, as rendered


@dataclass(frozen=True)
class _Made:
    """A rendered frame on its way out, stamped by the renderer."""

    index: int
    generation: int  # the interruptions the renderer had taken up when it made the frame
    motion: np.ndarray
    image: np.ndarray


class _End:
    """Marker that follows the last item through the queues."""


@dataclass
class _Failure:
    error: BaseException


@dataclass
class StageStats:
    busy_s: float = 0.0  # time spent in the stage's own work
    items: int = 0


class _Stage(threading.Thread):
    """The one stage loop: take an item from `inbox`, `step(item)` -> outputs into `outbox`; at the end
    marker `finish()` and pass the marker on. A failure travels downstream to the reader. A closed
    session stops every loop at its next poll, also one blocked on a full queue."""

    def __init__(self, name: str, step: Callable, finish: Callable, inbox: queue.Queue, outbox: queue.Queue,
                 stopped: threading.Event, stats: StageStats):
        super().__init__(name=f"vasa-{name}", daemon=True)
        self.step, self.finish, self.inbox, self.outbox = step, finish, inbox, outbox
        self.stopped, self.stats = stopped, stats

    def run(self) -> None:
        try:
            while not self.stopped.is_set():
                try:
                    item = self.inbox.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if isinstance(item, (_End, _Failure)):
                    if isinstance(item, _End):
                        self._emit(self.finish)
                    self._put(item)
                    return
                self._emit(lambda: self.step(item))
        except Exception as error:  # handed to the reader, who raises it
            self._put(_Failure(error))

    def _emit(self, work: Callable) -> None:
        """Run `work` (its outputs may be a generator: each goes downstream as soon as it is made)."""
        start = time.perf_counter()
        outputs = iter(work())
        while True:
            try:
                output = next(outputs)
            except StopIteration:
                self.stats.busy_s += time.perf_counter() - start
                return
            self.stats.busy_s += time.perf_counter() - start
            self.stats.items += 1
            self._put(output)
            start = time.perf_counter()

    def _put(self, item) -> None:
        while not self.stopped.is_set():
            try:
                self.outbox.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue


@dataclass
class SessionStats:
    """What a session measured: stage busy times, first-frame latency, frames out."""

    stages: dict[str, StageStats] = field(default_factory=dict)
    started_s: float | None = None  # wall time of the first push
    first_frame_s: float | None = None  # wall time the first frame was read
    first_frame_audio_s: float | None = None  # audio pushed (seconds) when the first frame was read
    frames: int = 0
    interrupted_frames: int = 0  # frames made before an interruption and dropped by it


def one_opencv_thread() -> int:
    """Run OpenCV on one thread (process-wide) and return the count it had. A stream's stages already run
    in parallel threads; OpenCV's own worker threads then fight them and the torch threads: with the
    frame watermark on, the live model's render stage took ~5 ms more a frame at 256 px on 2 cores with
    OpenCV's default 2 threads and ~1 ms more with one (docs/benchmarks.md). `vasa serve` and the
    streaming runs of `vasa bench` call it; a process that streams with `StreamingSession` or
    `vasa.agent` may call it too."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    return before


class StreamingSession:
    """One live stream of one portrait. `push` audio, read `next_frame`; `end` then drain; `close`.

    head: a loaded `TalkingHead` (its models are shared between sessions; only this session's state is
    here). source: the encoded portrait (`head.encode_source`), default `head.source`. step_frames:
    motion frames per generator window (default: the model's window; smaller = lower latency, more
    compute; see `vasa.motion.MotionStream`). encode: optional image -> bytes run in its own stage.
    mark: optional image -> image applied to every frame as it is rendered (the watermark of
    vasa.provenance: `mark=Watermarker(ident).mark`).
    """

    def __init__(self, head: TalkingHead, source: Source | None = None, controls: Controls = Controls(),
                 fps: float = MODEL_FPS, step_frames: int | None = None,
                 encode: Callable[[np.ndarray], bytes] | None = None,
                 mark: Callable[[np.ndarray], np.ndarray] | None = None):
        source = source or head.source
        if source is None:
            raise VasaError("no portrait: pass source= or call head.set_source(image) first")
        self.fps = fps
        stages = build_stages(head, source, controls, fps, step_frames)  # the same wiring as offline
        audio, motion, renderer = stages.audio, stages.motion, stages.renderer
        self._renderer = renderer
        gate, readout = controls.close_mouth_in_silence, motion.readout is not None
        held_s = 0.0 if motion.blinks is None else motion.blinks.lookahead_frames / MODEL_FPS  # blink-rate control
        self.algorithmic_latency_s = design_latency_s(head, step_frames, gate, readout=readout) + held_s  # worst wait
        self.first_frame_wait_s = design_latency_s(head, step_frames, gate, first=True, readout=readout) + held_s
        self._stopped = threading.Event()
        self._ended = False
        self._pushed_samples = 0
        self._read = 0  # frames read
        self._generation = 0  # interruptions so far
        self.stats = SessionStats()
        names = ["features", "motion", "render"] + (["encode"] if encode else [])
        queues = [queue.Queue(QUEUE_ITEMS["audio"])] + [queue.Queue(QUEUE_ITEMS[k])
                                                         for k in ("features", "motion", "frames", "encoded")]
        steps = {
            "features": (lambda chunk: [audio.push(chunk)], lambda: [audio.flush()]),
            "motion": (lambda part: [x] if len(x := motion.push(part)) else [],
                       lambda: [x] if len(x := motion.flush()) else []),
            "render": (lambda x: (_Made(renderer.index, renderer.generation, renderer.motion,
                                        image if mark is None else mark(image))
                                  for image in renderer.frames(x)), lambda: []),  # one frame at a time
            "encode": (lambda made: [(made, encode(made.image))], lambda: []),
        }
        self._stages = []
        for k, name in enumerate(names):
            self.stats.stages[name] = StageStats()
            step, finish = steps[name]
            self._stages.append(_Stage(name, step, finish, queues[k], queues[k + 1], self._stopped,
                                       self.stats.stages[name]))
        self._inbox, self._outbox = queues[0], queues[len(names)]
        self._done = False
        for stage in self._stages:
            stage.start()

    @property
    def pushed_s(self) -> float:
        """Seconds of audio pushed so far: the session's audio clock."""
        return self._pushed_samples / SAMPLE_RATE

    def push(self, samples: np.ndarray, timeout: float | None = None) -> None:
        """Mono float32 samples at 16 kHz. Blocks while the pipeline is a full queue behind (up to
        `timeout` s, then raises TimeoutError: the caller decides whether to drop or wait)."""
        if self._ended:
            raise VasaError("this session has ended; start a new one for more audio")
        samples = audio_chunk(samples)
        if not len(samples):
            return
        if self.stats.started_s is None:
            self.stats.started_s = time.perf_counter()
        self._put(samples, timeout)
        self._pushed_samples += len(samples)

    def set_emotion(self, emotion: dict[str, float] | None) -> None:
        """Change the expression on the face from the next frame rendered, eased in over EMOTION_BLEND_S
        (`Renderer.set_emotion`); None takes it off. The motion generator keeps the emotion condition
        the session started with (the shipped model barely responds to it)."""
        weights = Controls(emotion=emotion).emotion_vector() if emotion else None  # names and weights checked
        self._renderer.set_emotion(weights)

    def interrupt(self) -> None:
        """Cut the speech off: the next frames close the mouth over HUSH_FRAMES frames whatever audio
        they were made from, and frames made before the call that are not read yet are dropped
        (`stats.interrupted_frames`). The head, eyes and timing go on; the mouth stays closed until
        `release_mouth`. Any thread."""
        self._generation += 1
        self._renderer.hush(self._generation)

    def release_mouth(self, at_s: float | None = None) -> None:
        """After `interrupt`: the mouth follows the audio again from stream time `at_s` on (default: the
        audio pushed so far, i.e. what is pushed next)."""
        at_s = self.pushed_s if at_s is None else float(at_s)
        self._renderer.release(math.ceil(at_s * self.fps - 1e-9))

    def end(self, timeout: float | None = None) -> None:
        """No more audio: the pipeline flushes and the last frames follow."""
        if not self._ended:
            self._ended = True
            if self._pushed_samples == 0:
                raise VasaError("no audio was pushed before end()")
            self._put(_End(), timeout)

    def _put(self, item, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped.is_set():
            try:
                self._inbox.put(item, timeout=POLL_S)
                return
            except queue.Full:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("the pipeline is behind; audio chunk not taken") from None
        raise VasaError("this session is closed")

    def next_frame(self, timeout: float | None = None) -> StreamFrame | None:
        """The next frame, or None after the last one (after `end`) or when `timeout` s pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done:
            try:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                item = self._outbox.get(timeout=wait)
            except queue.Empty:
                return None
            if isinstance(item, _Failure):
                self._done = True
                self.close()
                raise item.error
            if isinstance(item, _End):
                self._done = True
                return None
            made, data = item if isinstance(item, tuple) else (item, None)
            if made.generation < self._generation:  # made before an interruption
                self.stats.interrupted_frames += 1
                continue
            now = time.perf_counter()
            frame = StreamFrame(made.index, made.index / self.fps, made.image, data, now, made.motion)
            if self._read == 0:
                self.stats.first_frame_s, self.stats.first_frame_audio_s = now, self.pushed_s
            self._read += 1
            self.stats.frames = self._read
            return frame
        return None

    @property
    def finished(self) -> bool:
        """True once the last frame has been read."""
        return self._done

    def frames(self):
        """Iterate over frames until the last one (blocks between them)."""
        while (frame := self.next_frame(timeout=None)) is not None:
            yield frame

    def close(self) -> None:
        """Stop the stage threads (unread frames are dropped). Safe to call more than once."""
        self._stopped.set()
        for stage in self._stages:
            if stage is not threading.current_thread():
                stage.join(timeout=5.0)

    def __enter__(self) -> "StreamingSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def design_latency_s(head: TalkingHead, step_frames: int | None = None, gate: bool = True,
                     first: bool = False, readout: bool = True) -> float:
    """Audio a frame waits for before it can be made, compute not included: the worst frame of a
    periodic stretch, or with `first` the first frame. Feature frame g is final when its hop has ended
    plus the lookahead (and, with voice activity, when the last 32 ms VAD block over it is done); a
    motion frame needs every feature frame of its window, with the mouth gate the voice activity
    of `gate_open_frames(step)` frames after it, and with a mouth read-out (`readout`) the features
    of its `lookahead_frames` after it."""
    from vasa.audio.vad import BLOCK_SAMPLES
    from vasa.pipeline import gate_open_frames

    config = head.motion_model.config
    step = config.window_frames if step_frames is None else step_frames
    schedule = head.encoder.schedule
    hop = schedule.hop_frames(MODEL_FPS)
    block_s = BLOCK_SAMPLES / SAMPLE_RATE

    def features_final_s(g: int) -> float:
        final = (g // hop + 1) * hop / MODEL_FPS + schedule.lookahead_s
        if head.vad is not None:
            final = max(final, math.ceil((g + 1) / MODEL_FPS / block_s - 1e-9) * block_s)
        return final

    hold = gate_open_frames(step) if gate and head.vad is not None else 0
    if readout and head.mouth_readout is not None:
        hold = max(hold, head.mouth_readout.lookahead_frames)
    worst = 0.0
    for f in range(1 if first else 4 * step * hop):
        window_last = (f // step + 1) * step - 1
        ready = max(features_final_s(window_last), features_final_s(f + hold))
        worst = max(worst, ready - f / MODEL_FPS)
    return worst
