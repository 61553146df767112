"""The stages of one run, speech to frames, and their one wiring (`build_stages`): voice activity closes the
mouth in silence (`MouthGate`), motion windows with the controls applied (`MotionStage`), frames at the
output rate (`Renderer`, `Resampler`). Offline (`vasa.pipeline.TalkingHead`) pushes 1 s chunks through them
in one thread; `vasa.streaming.StreamingSession` runs each in a thread. Nothing here depends on the face
backend: what differs between latents the backend answers (`vasa.latents.FaceBackend`)."""

from __future__ import annotations

import math
import queue
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from vasa.controls import Controls
from vasa.errors import VasaError
from vasa.latents import EMOTION_NAMES
from vasa.latents import FPS as MODEL_FPS  # the motion model makes one frame per 40 ms of audio
from vasa.latents import POSE_DIM, LatentSpace
from vasa.motion.controls import scale_expression, scale_head_motion, still_head

if TYPE_CHECKING:
    from vasa.audio import AudioFeatures, AudioStream
    from vasa.motion.controls import Blinks
    from vasa.pipeline import Source, TalkingHead

EMOTION_BLEND_S = 0.3  # a mid-stream emotion change eases in over this long (Renderer.set_emotion)
HUSH_FRAMES = 2  # an interruption closes the mouth over this many output frames (Renderer.hush), and a
# released mouth opens again over as many
SILENCE_LOW, SILENCE_HIGH = 0.3, 0.6  # voice probability ramp over which the mouth is allowed to move
# The mouth closes once silence has lasted SILENCE_CLOSE_FRAMES and is free again SILENCE_OPEN_FRAMES before
# the voice activity detector hears speech: real speakers part their lips before the sound starts
# (freeing the mouth 3 frames ahead instead of 6 cost 0.05 / 0.15 of held-out mouth-opening r).
SILENCE_CLOSE_FRAMES = 3
SILENCE_OPEN_FRAMES = 6
REST_POSE = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])  # relative pose of the portrait itself


@dataclass
class Stages:
    """One run's chain from speech to frames: speech features and voice activity (`audio`), motion
    windows with the controls (`motion`), frames at the output rate (`renderer`, None for motion only).
    Offline runs push 1 s chunks through it in one thread; `StreamingSession` runs each in a thread."""

    audio: AudioStream
    motion: MotionStage
    renderer: Renderer | None


def build_stages(head: TalkingHead, source: Source | None = None, controls: Controls = Controls(),
                 fps: float = MODEL_FPS, step_frames: int | None = None, render: bool = True) -> Stages:
    """The one wiring of the stages for `source` (default: the head's portrait), offline and live alike.
    Voice activity keeps state, so each run gets its own detector."""
    source = source or head.source
    vad = head.vad.clone() if head.vad is not None else None
    motion = MotionStage(head, controls, head.source_for(controls, source), step_frames=step_frames)
    renderer = Renderer(head, source, fps, emotion=controls.emotion_vector()) if render else None
    return Stages(head.encoder.stream(vad), motion, renderer)


def gate_open_frames(step_frames: int) -> int:
    """Voice lookahead of the mouth gate for windows of `step_frames`: SILENCE_OPEN_FRAMES, but no more
    than the window's own lookahead (step_frames - 1)."""
    return max(0, min(SILENCE_OPEN_FRAMES, step_frames - 1))


class MouthGate:
    """Closes the mouth where voice activity says silence (users: "the mouth keeps moving in silence").

    Per frame a weight in [0, 1] from the speech probability (a ramp between SILENCE_LOW and
    SILENCE_HIGH, the largest over the SILENCE_CLOSE_FRAMES before and SILENCE_OPEN_FRAMES after the
    frame, so short pauses and word edges keep their motion) multiplies the mouth coefficients of x;
    x = 0 is the portrait's closed rest mouth. The weights need `open_frames` of voice lookahead,
    which `MotionStage` keeps within a window (`gate_open_frames`): the live model's 4-frame windows
    free the mouth 3 frames ahead instead of 6.
    """

    def __init__(self, mouth_mask: np.ndarray, enabled: bool = True, open_frames: int = SILENCE_OPEN_FRAMES):
        self.columns = POSE_DIM + np.flatnonzero(mouth_mask)
        self.enabled = enabled
        self.open_frames = open_frames
        self._ramp = np.zeros(0)  # speech weight of frames [self._offset, self._offset + len)
        self._offset = 0
        self._done = 0  # frames already gated
        self._heard = False  # any voice activity pushed at all (no VAD: nothing is gated)

    @property
    def frames_done(self) -> int:
        """Motion frames gated so far."""
        return self._done

    def push_voice(self, voice: np.ndarray | None) -> None:
        if voice is not None:
            self._heard = True
            ramp = np.clip((np.asarray(voice, np.float64) - SILENCE_LOW) / (SILENCE_HIGH - SILENCE_LOW), 0.0, 1.0)
            self._ramp = np.concatenate([self._ramp, ramp])

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.array(x, dtype=np.float64)
        first, self._done = self._done, self._done + len(x)
        if not self.enabled or not self._heard:
            return x
        weight = np.empty(len(x))
        for k, frame in enumerate(range(first, self._done)):
            lo = max(frame - SILENCE_CLOSE_FRAMES - self._offset, 0)
            hi = max(frame + self.open_frames + 1 - self._offset, 0)
            near = self._ramp[lo:hi]
            weight[k] = near.max() if len(near) else 0.0
        x[:, self.columns] *= weight[:, None]
        keep_from = max(self._done - SILENCE_CLOSE_FRAMES - self._offset, 0)  # older voice is never needed again
        self._ramp, self._offset = self._ramp[keep_from:], self._offset + keep_from
        return x


class MotionStage:
    """Audio features -> relative motion x (n, 46) at the model's 25 fps, controls applied: motion windows,
    mouth gate, amplitude scales, smoothing. `push(AudioFeatures)` as they come, `flush()` at the end.

    Chunk-invariant: a frame leaves only once the voice activity it is gated with is known
    (`MouthGate.open_frames` after it), so any chunking of the audio gives the same motion.
    """

    def __init__(self, head: TalkingHead, controls: Controls = Controls(), source: Source | None = None,
                 step_frames: int | None = None):
        from vasa.motion import Guidance, MotionStream, Sampler
        from vasa.motion.controls import Smoother

        audio = head.cfg_audio if controls.cfg_audio is None else controls.cfg_audio
        pose = head.cfg_audio_pose if controls.cfg_audio_pose is None else controls.cfg_audio_pose
        sampler = Sampler("ancestral" if controls.steps == 0 else "ddim", max(controls.steps, 1),
                          Guidance(audio=audio, gaze=controls.cfg_gaze, audio_pose=pose))
        source = source or head.source
        gaze = controls.gaze if controls.gaze is not None else (source.gaze if source else None)
        gaze = None if gaze is None else np.radians(gaze)
        self.stream = MotionStream(head.motion_model, gaze=gaze, distance=1.0,  # distance: see _controlled
                                   emotion=controls.emotion_vector(), sampler=sampler, seed=controls.seed,
                                   step_frames=step_frames)
        self.controls = controls
        # The generator learned the gaze condition as iris motion (the gaze augmentation turns the iris
        # only); the lids follow a requested change of the main gaze from the portrait's own (where the
        # latent knows the portrait's eyes and its lids: `LatentSpace.lids_for_gaze`).
        self.lids = 0.0
        if controls.gaze is not None and source is not None and source.gaze is not None:
            self.lids = head.space.lids_for_gaze(source.gaze, controls.gaze)
        self.smoother = Smoother(pose=controls.smoothing, dynamics=0.0)
        mouth = head.face.mouth_mask  # no known mouth coefficients (a learned latent): no silence gate
        self.mouth = MouthGate(mouth, controls.close_mouth_in_silence and bool(mouth.any()),
                               gate_open_frames(self.stream.step_frames))
        self.blinks = None if controls.blinks is None else blink_control(head, source, controls)
        self.readout, self.readout_blend = None, 0.0
        if head.mouth_readout is not None:
            from vasa.motion.readout import ReadoutStream

            blend = head.mouth_readout.blend if controls.mouth_readout is None else controls.mouth_readout
            if blend > 0:
                self.readout, self.readout_blend = ReadoutStream(head.mouth_readout), blend
        self._read = np.zeros((0, len(head.mouth_readout.columns) if self.readout else 0))  # read-out not yet used
        self._held = np.zeros((0, head.motion_model.config.motion_dim))  # frames waiting for voice lookahead
        self._voice_frames: int | None = None  # frames of voice activity known (None: no VAD)

    def push(self, part: AudioFeatures) -> np.ndarray:
        """`vasa.audio.AudioFeatures` -> the motion frames now final (n, 46)."""
        if part.voice is not None:
            self.mouth.push_voice(part.voice)
            self._voice_frames = (self._voice_frames or 0) + len(part.voice)
        x = self.stream.push(part.features) if len(part) else self._held[:0]
        if self.readout is not None and len(part):
            self._read = np.concatenate([self._read, self.readout.push(part.features)])
        return self._release(x, final=False)

    def flush(self) -> np.ndarray:
        if self.readout is not None:
            self._read = np.concatenate([self._read, self.readout.flush()])
        x = self._release(self.stream.flush(), final=True)
        return x if self.blinks is None else np.concatenate([x, self.blinks.flush()])

    def _release(self, x: np.ndarray, final: bool) -> np.ndarray:
        held = np.concatenate([self._held, x])
        ready = len(held)
        if not final and self._voice_frames is not None and self.mouth.enabled:
            ready = min(ready, max(self._voice_frames - self.mouth.open_frames - self.mouth.frames_done, 0))
        if not final and self.readout is not None:  # a frame waits for the audio its read-out needs
            ready = min(ready, len(self._read))
        out, self._held = held[:ready], held[ready:]
        if not len(out):
            return out
        if self.readout is not None:
            out = self._read_mouth(out)
        return self._controlled(self.mouth.apply(out))

    def _read_mouth(self, x: np.ndarray) -> np.ndarray:
        """The read-out mixed into the mouth columns of x: (1 - blend) * generated + blend * read."""
        n = min(len(x), len(self._read))
        x = np.array(x, dtype=np.float64)
        columns = list(self.readout.readout.columns)
        x[:n, columns] += self.readout_blend * (self._read[:n] - x[:n, columns])
        self._read = self._read[n:]
        return x

    def _controlled(self, x: np.ndarray) -> np.ndarray:
        controls = self.controls
        x = scale_head_motion(x, controls.head_scale, center=REST_POSE)
        if controls.still:  # rotation and position at the portrait's; the scale still follows distance
            x = still_head(x, REST_POSE)
        x = scale_expression(x, controls.expression_scale)  # around the rest face, x = 0
        x[:, POSE_DIM:] += self.lids
        if controls.distance is not None:  # after head_scale, which would scale the distance too
            x = LatentSpace.scale_distance(x, controls.distance)
        x = self.smoother.push(x)
        return x if self.blinks is None else self.blinks.push(x)


def blink_control(head: TalkingHead, source: Source | None, controls: Controls) -> Blinks:
    """The `Blinks` stage of `controls.blinks` for the face backend's eyelids and the portrait's eyes."""
    from vasa.motion.controls import Blinks

    lids = head.face.eyelids
    if lids is None:
        raise VasaError("the blink rate control needs the mesh face backend (a learned latent has no known eyelids)")
    if source is None:
        raise VasaError("no portrait: call set_source(image) first")
    return Blinks(controls.blinks, lids.jacobian, lids.directions, lids.opening(source.appearance),
                  seed=controls.seed, fps=MODEL_FPS)


class Renderer:
    """Relative motion chunks at 25 fps -> frames at `fps` (resampled), one portrait. push(x) -> frames.

    `emotion` (7,) weights put that emotion's expression on the portrait (`FaceBackend.with_expression`:
    the mesh backend's `vasa.face.mesh.expressions`); `set_emotion` changes it while frames are being made
    (live avatars), eased in over EMOTION_BLEND_S so that the face turns rather than jumps.

    `hush` closes the mouth from the next frame made, over HUSH_FRAMES frames, whatever the motion says
    (a live avatar interrupted mid-word); `release(frame)` lets it move again from output frame `frame`
    on. Frame j of the output shows time j / fps: `index` is the frame last made, `motion` its x row and
    `generation` the last hush taken up when it was made (any thread may ask; the rendering one answers).
    """

    def __init__(self, head: TalkingHead, source: Source | None = None, fps: float = MODEL_FPS,
                 emotion: np.ndarray | None = None):
        self.head, self.source = head, source or head.source
        if self.source is None:
            raise VasaError("no portrait: call set_source(image) first")
        self.resampler = Resampler(MODEL_FPS, fps)
        self.blend_frames = max(1, int(round(EMOTION_BLEND_S * fps)))
        self._weights = np.zeros(len(EMOTION_NAMES)) if emotion is None else np.asarray(emotion, np.float64)
        self._start, self._target, self._progress = self._weights, self._weights, self.blend_frames
        self._requests: queue.SimpleQueue = queue.SimpleQueue()  # from any thread; read by the rendering one
        self._shown = self.head.wearing(self.source, self._weights)
        self.mouth_columns = POSE_DIM + np.flatnonzero(head.face.mouth_mask)
        self.index = -1  # the frame last made
        self.motion: np.ndarray | None = None  # its x row, as rendered
        self.generation = 0  # the last hush taken up
        self._hushed_until = -math.inf  # the mouth is held closed for frames before this one
        self._mouth = 1.0  # how far the mouth may move now (1 free, 0 closed)

    def set_emotion(self, weights: np.ndarray | None) -> None:
        """Ease into emotion weights (7,) (None: no expression) from the next frame made; any thread."""
        self._requests.put(("emotion", np.zeros(len(EMOTION_NAMES)) if weights is None
                            else np.asarray(weights, np.float64)))

    def hush(self, generation: int) -> None:
        """Close the mouth from the next frame made until `release`; frames made from then on carry
        `generation`. Any thread."""
        self._requests.put(("hush", int(generation)))

    def release(self, frame: int) -> None:
        """Let the mouth move again from output frame `frame` on (eased in). Any thread."""
        self._requests.put(("release", int(frame)))

    def push(self, x: np.ndarray) -> list[np.ndarray]:
        return list(self.frames(x))

    def frames(self, x: np.ndarray) -> Iterator[np.ndarray]:
        """The frames of motion chunk x, made one by one as they are asked for."""
        for frame in self.resampler.push(x):
            self.index += 1
            self._advance()
            self.motion = self._held(frame)
            yield from self.head.render(self.motion[None], self._shown)

    def _advance(self) -> None:
        """Take up requests; one frame further into the current emotion blend. A new emotion request
        starts a blend from where the face is."""
        while not self._requests.empty():
            kind, value = self._requests.get()
            if kind == "emotion":
                self._start, self._target, self._progress = self._weights, value, 0
            elif kind == "hush":
                self.generation, self._hushed_until = value, math.inf
            else:  # release
                self._hushed_until = value
        if self._progress < self.blend_frames:
            self._progress += 1
            t = self._progress / self.blend_frames
            self._weights = self._start + (self._target - self._start) * t * t * (3 - 2 * t)  # smoothstep
            self._shown = self.head.wearing(self.source, self._weights)

    def _held(self, frame: np.ndarray) -> np.ndarray:
        """The motion row with the mouth as far closed as a hush asks (x = 0 is the rest mouth)."""
        target = 0.0 if self.index < self._hushed_until else 1.0
        step = 1.0 / HUSH_FRAMES
        self._mouth = min(target, self._mouth + step) if target > self._mouth else max(target, self._mouth - step)
        if self._mouth >= 1.0:
            return frame
        frame = np.array(frame, dtype=np.float64)
        frame[self.mouth_columns] *= self._mouth
        return frame


class Resampler:
    """Frames (n, D) at source_fps, chunk by chunk -> frames at target_fps by linear interpolation;
    frame j of the output shows time j / target_fps. Keeps the source frames still needed."""

    def __init__(self, source_fps: float, target_fps: float):
        self.ratio = source_fps / target_fps
        self.same = abs(source_fps - target_fps) < 1e-9
        self._history: np.ndarray | None = None  # source frames from index `_base` on
        self._base = self._emitted = self._received = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        if self.same or not len(chunk):
            return chunk
        history = chunk if self._history is None else np.concatenate([self._history, chunk])
        self._received += len(chunk)
        out = []
        while (position := self._emitted * self.ratio) <= self._received - 1:
            low = int(np.floor(position))
            high = min(low + 1, self._received - 1)
            weight = position - low
            out.append(history[low - self._base] * (1 - weight) + history[high - self._base] * weight)
            self._emitted += 1
        keep_from = max(int(np.floor(self._emitted * self.ratio)) - 1, self._base)
        self._history, self._base = history[keep_from - self._base:], keep_from
        return np.stack(out) if out else chunk[:0]


def resample(chunks: Iterator[np.ndarray], source_fps: float, target_fps: float) -> Iterator[np.ndarray]:
    """`Resampler` over an iterator of chunks (empty outputs skipped)."""
    resampler = Resampler(source_fps, target_fps)
    for chunk in chunks:
        out = resampler.push(chunk)
        if len(out):
            yield out
