"""`TalkingHead`: one portrait + speech -> a talking video (VASA-1's whole inference path).

    head = TalkingHead.from_pretrained()                 # the shipped motion model, mesh face latent
    head.set_source("portrait.jpg")                      # encode once ...
    head.generate("speech.wav", "out.mp4", Controls(gaze=(10, 0), emotion={"happy": 1.0}))   # ... decode many

Stages, each streaming (memory stays flat for any audio length): audio -> speech features and voice
activity (`vasa.audio`, 1 s chunks) -> motion windows (`vasa.motion.MotionStream`) -> relative motion
made absolute around the portrait (`vasa.latents.LatentSpace`) -> frames (`vasa.face.mesh`) -> H.264.
The stage objects (`AudioStream`, `MotionStage`, `Renderer`) are the ones `vasa.streaming.StreamingSession`
runs in threads for live use: offline is streaming with one thread and 1 s chunks.

Controls act in two places: gaze and emotion are the generator's conditions (with Eq. 2 guidance
scales `cfg_audio`, `cfg_gaze`); head distance, head/expression scale, smoothing, still head,
closing the mouth in silence and the blink rate act on the generated motion. Distance is applied
exactly: in the relative motion space a head `d` times farther away is, by definition (the
augmentation that teaches the distance condition), the scale divided by `d`, while the trained
model's own response to its distance condition overshot (0.8 -> 0.67, 1.25 -> 1.59), so the
generator runs at distance 1. Relative motion
makes the scales simple: the portrait's rest pose and face are x = 0 (scale 1), so scaling x scales
the motion around them.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import queue
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from vasa.data.records import EMOTION_NAMES
from vasa.face.mesh_space import MeshMotionSpace as MotionSpace
from vasa.latents import LatentSpace
from vasa.errors import VasaError
from vasa.latents import FPS as MODEL_FPS  # the motion model makes one frame per 40 ms of audio
from vasa.latents import POSE_DIM, SAMPLE_RATE, FaceBackend
from vasa.motion.controls import MAX_BLINKS_PER_MINUTE, scale_expression, scale_head_motion, still_head

EMOTION_BLEND_S = 0.3  # a mid-stream emotion change eases in over this long (Renderer.set_emotion)
MAX_EMOTION_WEIGHT = 1.5  # 1 = a clear expression (vasa.face.expressions); 1.5 already exaggerates, more distorts

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MOTION_MODEL = ASSETS / "motion_default.safetensors"
# Motion models that ship in vasa/assets, by the name `--model` also takes (model cards beside them):
# "default" (Whisper features in 3 s windows, 2 s motion windows: the best lip sync and head motion)
# and "live" (Whisper features with 40 ms lookahead, 4-frame motion windows: a frame waits for at most
# 0.24 s of audio instead of 1-2.6 s; docs/serve.md).
SHIPPED_MODELS = {"default": DEFAULT_MOTION_MODEL, "live": ASSETS / "motion_live.safetensors"}
CHUNK_SECONDS = 1.0  # audio pushed through the stages per step
SILENCE_LOW, SILENCE_HIGH = 0.3, 0.6  # voice probability ramp over which the mouth is allowed to move
# The mouth closes once silence has lasted SILENCE_CLOSE_FRAMES and is free again SILENCE_OPEN_FRAMES before
# the voice activity detector hears speech: real speakers part their lips before the sound starts
# (freeing the mouth 3 frames ahead instead of 6 cost 0.05 / 0.15 of held-out mouth-opening r).
SILENCE_CLOSE_FRAMES = 3
SILENCE_OPEN_FRAMES = 6
# lambda_A of Eq. 2 for a motion model whose file does not name its own ("cfg_audio" in its metadata):
# models trained on a few speakers did as well at 0.5 as at 2; the corpus models gain from more
DEFAULT_CFG_AUDIO = 0.5
MAX_GUIDANCE = 10.0  # beyond it the guided motion leaves the range the face can show
MAX_MOTION_SCALE = 4.0  # head / expression amplitude: 4 times the model's motion is already a caricature
MAX_GAZE_DEG = 60.0  # the eyes cannot turn further in the head
MAX_SEED = 2**63 - 1  # torch.manual_seed's range
REST_POSE = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])  # relative pose of the portrait itself


@dataclass(frozen=True)
class Controls:
    """What a user can ask of a generated clip.

    gaze: main eye direction (theta, phi) in degrees in the head's frame (theta > 0 toward the image's
    right, phi > 0 up; (0, 0) straight ahead); None = the portrait's own gaze. distance: head distance
    relative to the portrait (1.25 = a quarter farther away, so the face looks 20 % smaller); None
    = 1, as in the photo. emotion: {name: weight} over EMOTION_NAMES; None = model's choice.
    """

    gaze: tuple[float, float] | None = None
    distance: float | None = None
    emotion: dict[str, float] | None = None
    cfg_audio: float | None = None  # lambda_A of Eq. 2; None = the motion model's own (`TalkingHead.cfg_audio`)
    # lambda_A on the head pose alone; None = the motion model's own (`TalkingHead.cfg_audio_pose`), or the
    # face's scale above where the model names none
    cfg_audio_pose: float | None = None
    cfg_gaze: float = 1.0  # lambda_g of Eq. 2
    steps: int = 10  # DDIM steps (0 = the 50-step ancestral sampler)
    seed: int = 0
    head_scale: float = 1.0  # head-motion amplitude around the portrait's pose
    expression_scale: float = 1.0  # facial-motion amplitude around the portrait's rest face
    smoothing: float = 0.6  # causal low-pass strength on head pose, [0, 1): ~60 ms lag, jitter to real levels
    still: bool = False  # keep the head at the portrait's pose
    close_mouth_in_silence: bool = True  # voice activity below threshold closes the mouth
    blinks: float | None = None  # blinks per minute (0 = none); None = the motion model's own blinks
    # share of the mouth read-out (`vasa.motion.readout`) in the mouth coefficients, 0..1 (0 = the
    # generator's mouth alone); None = the motion model file's own (0 where it carries no read-out)
    mouth_readout: float | None = None

    def __post_init__(self):
        """The one check of a user's numbers (CLI, Python API and server alike): right type, finite, in range."""
        _number("distance", self.distance, 0.3, 3.0, optional=True, hint="1 = as in the photo")
        if self.gaze is not None:
            if not isinstance(self.gaze, (tuple, list)) or len(self.gaze) != 2:
                raise VasaError(f"gaze must be two angles in degrees (theta, phi), got {self.gaze!r}")
            for angle in self.gaze:
                _number("gaze", angle, -MAX_GAZE_DEG, MAX_GAZE_DEG, hint="degrees")
        if self.emotion is not None:
            if not isinstance(self.emotion, dict):
                raise VasaError(f"emotion must be a mapping of name to weight, got {self.emotion!r}")
            unknown = {name for name in self.emotion if name not in EMOTION_NAMES}
            if unknown:
                raise VasaError(f"unknown emotion {sorted(map(str, unknown))}; choose from {', '.join(EMOTION_NAMES)}")
            for name, weight in self.emotion.items():
                _number(f"emotion weight of {name}", weight, 0.0, MAX_EMOTION_WEIGHT, hint="1 = a clear expression")
        _number("smoothing", self.smoothing, 0.0, 1.0, below_high=True)
        for name in ("cfg_audio", "cfg_audio_pose", "cfg_gaze"):
            _number(name, getattr(self, name), 0.0, MAX_GUIDANCE, optional=name != "cfg_gaze", hint="a guidance scale")
        _number("steps", self.steps, 0, 50, integer=True, hint="0 = the 50-step ancestral sampler, else DDIM steps")
        _number("seed", self.seed, 0, MAX_SEED, integer=True)
        _number("head_scale", self.head_scale, 0.0, MAX_MOTION_SCALE, hint="1 = the model's motion, 0 = none")
        _number("expression_scale", self.expression_scale, 0.0, MAX_MOTION_SCALE, hint="1 = the model's motion")
        _number("blinks", self.blinks, 0.0, MAX_BLINKS_PER_MINUTE, optional=True,
                hint="a minute; people blink 10-40 times")
        _number("mouth_readout", self.mouth_readout, 0.0, 1.0, optional=True,
                hint="0 = the generator's mouth alone, 1 = the read-out's")
        for name in ("still", "close_mouth_in_silence"):
            if not isinstance(getattr(self, name), bool):
                raise VasaError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def emotion_vector(self) -> np.ndarray | None:
        if self.emotion is None:
            return None
        return np.array([float(self.emotion.get(name, 0.0)) for name in EMOTION_NAMES])


def _number(name: str, value, low: float, high: float, *, integer: bool = False, optional: bool = False,
            below_high: bool = False, hint: str = "") -> None:
    """VasaError unless value is a finite number (an integer where asked; a bool is neither) in [low, high]
    (or [low, high) with below_high)."""
    if value is None and optional:
        return
    kind = numbers.Integral if integer else numbers.Real
    what = f"{name} must be {'an integer' if integer else 'a number'} between {low:g} and {high:g}"
    what += f" (excluded {high:g})" if below_high else ""
    what += f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise VasaError(f"{what}, got {value!r}")
    if not low <= value <= high or (below_high and value == high):
        raise VasaError(f"{what}, got {value!r}")


def parse_emotion(items: list[str] | None) -> dict[str, float] | None:
    """['happy=1', 'surprise=0.5'] -> {'happy': 1.0, 'surprise': 0.5}; a bare name weighs 1."""
    if not items:
        return None
    out = {}
    for item in items:
        name, _, weight = item.partition("=")
        try:
            out[name.strip().lower()] = float(weight) if weight else 1.0
        except ValueError:
            raise VasaError(f"emotion weight must be a number: {item!r}") from None
    return out


@dataclass
class Source:
    """An encoded portrait: what every frame of it is decoded from (encode once, decode many)."""

    appearance: object
    reference: object
    photo: np.ndarray  # the whole portrait (RGB), for pasting the animated crop back
    gaze: tuple[float, float] | None  # the portrait's own eye-in-head gaze, degrees: the default gaze condition


def _guidance_scale(path, metadata: dict, key: str) -> float | None:
    """A guidance scale a motion model file names ("cfg_audio", "cfg_audio_pose"), None where it names none."""
    if key not in metadata:
        return None
    try:
        value = float(metadata[key])
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and 0.0 <= value <= MAX_GUIDANCE):
        raise VasaError(f"{path}: its {key} {metadata[key]!r} is not a guidance scale between 0 and {MAX_GUIDANCE:g}")
    return value


@dataclass
class TalkingHead:
    """The generation pipeline: a motion model, a face backend, an audio encoder and a VAD."""

    motion_model: object  # vasa.motion.MotionDiT
    face: FaceBackend  # vasa.face.mesh.MeshFace (default) or vasa.face.neural.NeuralFace
    encoder: object  # vasa.audio.AudioEncoder
    vad: object | None  # vasa.audio.VoiceActivity
    cfg_audio: float = DEFAULT_CFG_AUDIO  # the audio guidance scale the model was chosen with (its metadata)
    cfg_audio_pose: float | None = None  # its scale on the head pose, where the model names one ("cfg_audio_pose")
    mouth_readout: object | None = None  # vasa.motion.readout.MouthReadout the model file carries, if any
    space: LatentSpace = field(init=False)
    source: Source | None = field(default=None, init=False)

    def __post_init__(self):
        self.mesh = getattr(self.face, "name", "mesh") == "mesh"
        # the mesh latent's own space (gaze, lids, resting mouth); a learned latent gets the generic one,
        # without eye straightening, lids following gaze or the silence gate (no known mouth coefficients)
        self.space = MotionSpace(self.face.model) if self.mesh else LatentSpace(self.face.dynamics_dim)
        if self.motion_model.config.motion_dim != self.space.dim:
            raise VasaError(f"the motion model makes {self.motion_model.config.motion_dim}-d motion, "
                            f"the face backend needs {self.space.dim}")
        if self.motion_model.config.audio_dim != self.encoder.dim:
            raise VasaError(f"the motion model takes {self.motion_model.config.audio_dim}-d audio features, "
                            f"the {type(self.encoder).__name__} makes {self.encoder.dim}")
        readout = self.mouth_readout
        if readout is not None and (readout.audio_dim != self.encoder.dim
                                    or not all(POSE_DIM <= c < self.space.dim for c in readout.columns)):
            raise VasaError(f"the motion model's mouth read-out reads {readout.audio_dim}-d features into columns "
                            f"{min(readout.columns)}..{max(readout.columns)}: it does not fit the model")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, size: int = 512,
                        audio_model: str | os.PathLike | None = None, voice_activity: bool = True,
                        face=None) -> "TalkingHead":
        """Load a motion model (default: the one shipped in vasa/assets) with the audio encoder it was trained on.
        `face`: the face backend (default: the mesh backend at `size`)."""
        from vasa.audio import VoiceActivity, load_encoder
        from vasa.face.mesh import MeshFace
        from vasa.motion import load_motion_model
        from vasa.motion.checkpoint import load_mouth_readout, read_metadata

        path = motion_model_path(path)
        model = load_motion_model(path)
        metadata = read_metadata(path)
        face = face or MeshFace(size=size)
        trained_on = metadata.get("face_backend", "mesh")
        if trained_on != getattr(face, "name", "mesh"):
            raise VasaError(f"the motion model {path} was trained on {trained_on} face latents, "
                            f"the face backend is {face.name}: use a motion model trained on records of the same backend")
        encoder = load_encoder(metadata.get("audio_encoder", "whisper"), fps=MODEL_FPS, model_path=audio_model)
        audio = _guidance_scale(path, metadata, "cfg_audio")
        return cls(model, face, encoder, VoiceActivity() if voice_activity else None,
                   DEFAULT_CFG_AUDIO if audio is None else audio, _guidance_scale(path, metadata, "cfg_audio_pose"),
                   load_mouth_readout(path))

    def source_for(self, controls: Controls, source: Source | None = None) -> Source | None:
        """The portrait as `controls` show it: wearing the requested emotion's expression on the mesh
        face (`vasa.face.expressions`); unchanged without one, or on a learned latent (no known expressions)."""
        source = source or self.source
        if source is None or controls.emotion is None:
            return source
        return self.wearing(source, controls.emotion_vector())

    def wearing(self, source: Source, weights: np.ndarray) -> Source:
        """`source` with the expression of emotion weights (7,) on it; itself on a learned latent or for none."""
        if not self.mesh or not np.asarray(weights).any():
            return source
        from vasa.face.expressions import with_expression

        return replace(source, appearance=with_expression(source.appearance, self.face.model, weights))

    def set_source(self, image) -> None:
        """Encode the portrait (path or RGB array) once; every `generate` call then only decodes."""
        self.source = self.encode_source(image)

    def encode_source(self, image) -> Source:
        """Encode a portrait (path or RGB array) without making it this head's source (one per session)."""
        from vasa.media import read_image

        photo = read_image(image)
        appearance, motion = self.face.encode(photo)
        if not self.mesh:  # a learned latent: no eye gaze to read (the gaze condition defaults to "absent")
            return Source(appearance, self.space.portrait_reference(motion.pose, motion.dynamics), photo, None)
        reference = self.space.portrait_reference(motion.pose, motion.dynamics, appearance.identity)
        gaze = self.face.model.eye_gaze(appearance.identity)
        return Source(appearance, reference, photo, (float(gaze[0]), float(gaze[1])))

    # --- motion ---------------------------------------------------------------------------------
    def motion(self, waveform: np.ndarray, controls: Controls = Controls(), step_frames: int | None = None,
               source: Source | None = None) -> Iterator[np.ndarray]:
        """Relative motion x (n, 46) chunk by chunk for a mono 16 kHz waveform, controls applied, for
        `source` (default: this head's portrait). The stages of `build_stages`, as streaming runs them,
        fed CHUNK_SECONDS of audio at a time in this thread."""
        yield from _motion_chunks(build_stages(self, source, controls, step_frames=step_frames, render=False),
                                  waveform)

    # --- frames ---------------------------------------------------------------------------------
    def frames(self, waveform: np.ndarray, controls: Controls = Controls(), fps: float = MODEL_FPS,
               step_frames: int | None = None, source: Source | None = None) -> Iterator[np.ndarray]:
        """Rendered frames (S, S, 3) uint8 at `fps` (motion resampled from the model's 25 fps)."""
        stages = build_stages(self, source, controls, fps, step_frames)
        for x in _motion_chunks(stages, waveform):
            yield from stages.renderer.push(x)

    def render(self, x: np.ndarray, source: "Source | None" = None) -> Iterator[np.ndarray]:
        """Relative motion x (n, 46) -> frames (S, S, 3) uint8 of the source portrait."""
        from vasa.face.edits import keep_physical
        from vasa.latents import Motion

        source = source or self.source
        if source is None:
            raise VasaError("no portrait: call set_source(image) first")
        pose, dynamics = self.space.to_absolute(x, source.reference)
        for k in range(len(x)):
            motion = Motion(pose[k], dynamics[k])
            if self.mesh:
                motion = keep_physical(self.face, source.appearance, motion)
            yield self.face.decode(source.appearance, motion)

    def generate(self, audio: str | os.PathLike, out: str | os.PathLike, controls: Controls = Controls(),
                 fps: float = MODEL_FPS, progress: bool = True, paste_back: bool = False,
                 source: Source | None = None) -> int:
        """Write a talking video of the portrait (`source`, default this head's) speaking `audio` (any
        audio or video file) to `out` (.mp4, H.264 + the input's audio). With `paste_back` the animated
        face goes back into the whole photo. Returns the number of frames; nothing is written on error."""
        from vasa.audio import load_audio
        from vasa.media import check_output_path, read_audio, write_video

        check_output_path(out)
        source = source or self.source
        if source is None:
            raise VasaError("no portrait: call set_source(image) first")
        waveform = load_audio(audio)
        total = int(round(len(waveform) / SAMPLE_RATE * fps))
        if total == 0:
            raise VasaError(f"{audio} is shorter than one video frame ({1000 / fps:.0f} ms)")
        soundtrack = read_audio(audio)
        canvas = None
        if paste_back:
            from vasa.reenact import paste_canvas

            canvas = paste_canvas(source.photo, source.appearance)
        with tqdm(total=total, desc="generate", unit="frame", disable=not progress) as bar:
            def counted():
                for frame in self.frames(waveform, controls, fps, source=source):
                    bar.update(1)
                    yield frame if canvas is None else canvas[1].paste(frame, canvas[0])
            return write_video(out, counted(), fps, soundtrack)


@dataclass
class Stages:
    """One run's chain from speech to frames: speech features and voice activity (`audio`), motion
    windows with the controls (`motion`), frames at the output rate (`renderer`, None for motion only).
    Offline runs push 1 s chunks through it in one thread; `StreamingSession` runs each in a thread."""

    audio: object  # vasa.audio.AudioStream
    motion: "MotionStage"
    renderer: "Renderer | None"


def build_stages(head: TalkingHead, source: Source | None = None, controls: Controls = Controls(),
                 fps: float = MODEL_FPS, step_frames: int | None = None, render: bool = True) -> Stages:
    """The one wiring of the stages for `source` (default: the head's portrait), offline and live alike.
    Voice activity keeps state, so each run gets its own detector."""
    source = source or head.source
    vad = head.vad.clone() if head.vad is not None else None
    motion = MotionStage(head, controls, head.source_for(controls, source), step_frames=step_frames)
    renderer = Renderer(head, source, fps, emotion=controls.emotion_vector()) if render else None
    return Stages(head.encoder.stream(vad), motion, renderer)


def _motion_chunks(stages: Stages, waveform: np.ndarray) -> Iterator[np.ndarray]:
    """Offline: the whole waveform through the audio and motion stages, CHUNK_SECONDS at a time."""
    chunk = int(CHUNK_SECONDS * SAMPLE_RATE)
    for start in range(0, len(waveform), chunk):
        x = stages.motion.push(stages.audio.push(waveform[start:start + chunk]))
        if len(x):
            yield x
    for x in (stages.motion.push(stages.audio.flush()), stages.motion.flush()):
        if len(x):
            yield x


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
        # only); the lids follow a requested change of the main gaze from the portrait's own.
        self.lids = 0.0
        if controls.gaze is not None and source is not None and head.mesh:
            self.lids = head.space.lids_for_gaze(source.gaze, controls.gaze)
        self.smoother = Smoother(pose=controls.smoothing, dynamics=0.0)
        mouth = head.face.model.group_mask("mouth") if head.mesh else np.zeros(head.space.dynamics_dim, bool)
        self.mouth = MouthGate(mouth, controls.close_mouth_in_silence and head.mesh,
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

    def push(self, part) -> np.ndarray:
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
            x = MotionSpace.scale_distance(x, controls.distance)
        x = self.smoother.push(x)
        return x if self.blinks is None else self.blinks.push(x)


def blink_control(head: TalkingHead, source: Source | None, controls: Controls):
    """The `Blinks` stage of `controls.blinks` for the mesh backend's lids and the portrait's eyes."""
    from vasa.motion.controls import Blinks

    if not head.mesh:
        raise VasaError("the blink rate control needs the mesh face backend (a learned latent has no known eyelids)")
    if source is None:
        raise VasaError("no portrait: call set_source(image) first")
    model = head.face.model
    jacobian = np.stack([model.eye_opening(component) for component in model.basis], axis=1)  # (2, K), linear
    directions = np.stack([model.directions["eye_open_right"], model.directions["eye_open_left"]])
    return Blinks(controls.blinks, jacobian, directions, model.eye_opening(source.appearance.identity),
                  seed=controls.seed, fps=MODEL_FPS)


class Renderer:
    """Relative motion chunks at 25 fps -> frames at `fps` (resampled), one portrait. push(x) -> frames.

    `emotion` (7,) weights put that emotion's expression on the portrait (`vasa.face.expressions`, mesh
    backend); `set_emotion` changes it while frames are being made (live avatars), eased in over
    EMOTION_BLEND_S so that the face turns rather than jumps."""

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

    def set_emotion(self, weights: np.ndarray | None) -> None:
        """Ease into emotion weights (7,) (None: no expression) from the next frame made; any thread."""
        self._requests.put(np.zeros(len(EMOTION_NAMES)) if weights is None else np.asarray(weights, np.float64))

    def push(self, x: np.ndarray) -> list[np.ndarray]:
        return list(self.frames(x))

    def frames(self, x: np.ndarray) -> Iterator[np.ndarray]:
        """The frames of motion chunk x, made one by one as they are asked for."""
        for frame in self.resampler.push(x):
            self._advance()
            yield from self.head.render(frame[None], self._shown)

    def _advance(self) -> None:
        """One frame further into the current blend; a new request starts one from where the face is."""
        while not self._requests.empty():
            self._start, self._target, self._progress = self._weights, self._requests.get(), 0
        if self._progress < self.blend_frames:
            self._progress += 1
            t = self._progress / self.blend_frames
            self._weights = self._start + (self._target - self._start) * t * t * (3 - 2 * t)  # smoothstep
            self._shown = self.head.wearing(self.source, self._weights)


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


def motion_model_path(model: str | os.PathLike | None = None) -> Path:
    """A motion model's file: a shipped model's name (`SHIPPED_MODELS`), a path, or None for the default."""
    if model is None:
        return DEFAULT_MOTION_MODEL
    if isinstance(model, str) and model in SHIPPED_MODELS:
        return SHIPPED_MODELS[model]
    if not Path(model).exists():
        raise VasaError(f"no motion model at {model}: give a .safetensors file or a shipped model's name "
                        f"({', '.join(SHIPPED_MODELS)})")
    return Path(model)


def model_card(path: str | os.PathLike | None = None) -> dict:
    """What a report should say about the motion model it measured: its file, a short sha256, the
    metadata in the file (config, audio encoder, training step, guidance scales) and the Markdown card
    that ships beside it (None for a model without one)."""
    import hashlib

    from vasa.checkpoints import read_weights_metadata

    model = motion_model_path(path)
    card = model.with_suffix(".md")
    metadata = read_weights_metadata(model, "motion model")
    config = json.loads(metadata.pop("vasa.motion.config", "{}"))
    return {"file": model.name, "sha256": hashlib.sha256(model.read_bytes()).hexdigest()[:16],
            "card": card.name if card.exists() else None, "config": config, **metadata}
