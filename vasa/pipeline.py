"""`TalkingHead`: one portrait + speech -> a talking video (VASA-1's whole inference path).

    head = TalkingHead.from_pretrained()                 # the shipped motion model, mesh face latent
    head.set_source("portrait.jpg")                      # encode once ...
    head.generate("speech.wav", "out.mp4", Controls(gaze=(10, 0), emotion={"happy": 1.0}))   # ... decode many

Stages, each streaming (memory stays flat for any audio length): audio -> speech features and voice
activity (`vasa.audio`, 1 s chunks) -> motion windows (`vasa.motion.MotionStream`) -> relative motion
made absolute around the portrait (the face backend's `space`, `vasa.latents.LatentSpace`) -> frames (the
face backend: `vasa.face.mesh` by default) -> H.264. The stage objects (`AudioStream` and `vasa.stages`'
`MotionStage`, `Renderer`) are the ones `vasa.streaming.StreamingSession` runs in threads for live use:
offline is streaming with one thread and 1 s chunks. The pipeline asks the face backend what its latent
knows (`vasa.latents.FaceBackend`: mouth coefficients, gaze, eyelids, expressions) and never which it is.

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
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
from tqdm import tqdm

from vasa.controls import (MAX_EMOTION_WEIGHT, MAX_GAZE_DEG, MAX_GUIDANCE, MAX_MOTION_SCALE, MAX_SEED, Controls,
                           parse_emotion)
from vasa.errors import VasaError
from vasa.provenance import Provenance
from vasa.provenance.manifest import file_sha256
from vasa.latents import FPS as MODEL_FPS  # the motion model makes one frame per 40 ms of audio
from vasa.latents import POSE_DIM, SAMPLE_RATE, Appearance, FaceBackend, LatentSpace, Motion, Reference
from vasa.stages import (EMOTION_BLEND_S, REST_POSE, SILENCE_CLOSE_FRAMES, SILENCE_HIGH, SILENCE_LOW,
                         SILENCE_OPEN_FRAMES, MotionStage, MouthGate, Renderer, Resampler, Stages, blink_control,
                         build_stages, gate_open_frames, resample)

if TYPE_CHECKING:
    from vasa.audio import AudioEncoder, VoiceActivity
    from vasa.motion import MotionDiT
    from vasa.motion.readout import MouthReadout

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MOTION_MODEL = ASSETS / "motion_default.safetensors"
# Motion models that ship in vasa/assets, by the name `--model` also takes (model cards beside them):
# "default" (Whisper features in 3 s windows, 2 s motion windows: the best lip sync and head motion)
# and "live" (Whisper features with 40 ms lookahead, 4-frame motion windows: a frame waits for at most
# 0.24 s of audio instead of 1-2.6 s; docs/serve.md).
SHIPPED_MODELS = {"default": DEFAULT_MOTION_MODEL, "live": ASSETS / "motion_live.safetensors"}
CHUNK_SECONDS = 1.0  # audio pushed through the stages per step
# lambda_A of Eq. 2 for a motion model whose file does not name its own ("cfg_audio" in its metadata):
# models trained on a few speakers did as well at 0.5 as at 2; the corpus models gain from more
DEFAULT_CFG_AUDIO = 0.5

# The user's controls (`vasa.controls`) and the stages (`vasa.stages`) live in their own modules; their
# names stay importable from here, where scripts and tests have long taken them.
__all__ = ["CHUNK_SECONDS", "DEFAULT_CFG_AUDIO", "DEFAULT_MOTION_MODEL", "EMOTION_BLEND_S", "MAX_EMOTION_WEIGHT",
           "MAX_GAZE_DEG", "MAX_GUIDANCE", "MAX_MOTION_SCALE", "MAX_SEED", "MODEL_FPS", "REST_POSE",
           "SHIPPED_MODELS", "SILENCE_CLOSE_FRAMES", "SILENCE_HIGH", "SILENCE_LOW", "SILENCE_OPEN_FRAMES",
           "Controls", "MotionStage", "MouthGate", "Renderer", "Resampler", "Source", "Stages", "TalkingHead",
           "blink_control", "build_stages", "gate_open_frames", "model_card", "motion_model_path",
           "parse_emotion", "resample"]


@dataclass
class Source:
    """An encoded portrait: what every frame of it is decoded from (encode once, decode many)."""

    appearance: Appearance
    reference: Reference  # what its relative motion is measured from (`LatentSpace.portrait_reference`)
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

    motion_model: MotionDiT
    face: FaceBackend  # vasa.face.mesh.MeshFace (default) or vasa.face.neural.NeuralFace
    encoder: AudioEncoder
    vad: VoiceActivity | None
    cfg_audio: float = DEFAULT_CFG_AUDIO  # the audio guidance scale the model was chosen with (its metadata)
    cfg_audio_pose: float | None = None  # its scale on the head pose, where the model names one ("cfg_audio_pose")
    mouth_readout: MouthReadout | None = None  # the read-out the model file carries, if any
    model_sha256: str | None = None  # the motion model file's, for the video's provenance manifest
    space: LatentSpace = field(init=False)
    source: Source | None = field(default=None, init=False)

    def __post_init__(self):
        # the face latent's relative-motion space: the mesh latent's own (gaze, lids, resting mouth), or the
        # generic one of a learned latent (no eye straightening or lids following gaze)
        self.space = self.face.space
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
        if trained_on != face.name:
            raise VasaError(f"the motion model {path} was trained on {trained_on} face latents, "
                            f"the face backend is {face.name}: use a motion model trained on records of the same backend")
        encoder = load_encoder(metadata.get("audio_encoder", "whisper"), fps=MODEL_FPS, model_path=audio_model)
        audio = _guidance_scale(path, metadata, "cfg_audio")
        return cls(model, face, encoder, VoiceActivity() if voice_activity else None,
                   DEFAULT_CFG_AUDIO if audio is None else audio, _guidance_scale(path, metadata, "cfg_audio_pose"),
                   load_mouth_readout(path), file_sha256(path))

    def source_for(self, controls: Controls, source: Source | None = None) -> Source | None:
        """The portrait as `controls` show it: wearing the requested emotion's expression
        (`FaceBackend.with_expression`); unchanged without one, or where the latent knows no expressions."""
        source = source or self.source
        if source is None or controls.emotion is None:
            return source
        return self.wearing(source, controls.emotion_vector())

    def wearing(self, source: Source, weights: np.ndarray) -> Source:
        """`source` with the expression of emotion weights (7,) on it; itself for none or where the latent
        knows no expressions."""
        appearance = self.face.with_expression(source.appearance, weights)
        return source if appearance is source.appearance else replace(source, appearance=appearance)

    def set_source(self, image) -> None:
        """Encode the portrait (path or RGB array) once; every `generate` call then only decodes."""
        self.source = self.encode_source(image)

    def encode_source(self, image) -> Source:
        """Encode a portrait (path or RGB array) without making it this head's source (one per session)."""
        from vasa.media import read_image

        photo = read_image(image)
        appearance, motion = self.face.encode(photo)
        reference = self.space.portrait_reference(motion.pose, motion.dynamics, appearance.identity)
        # no known eyes (a learned latent): no gaze to read, and the gaze condition defaults to "absent"
        return Source(appearance, reference, photo, self.face.gaze(appearance))

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

    def render(self, x: np.ndarray, source: Source | None = None) -> Iterator[np.ndarray]:
        """Relative motion x (n, 46) -> frames (S, S, 3) uint8 of the source portrait."""
        source = source or self.source
        if source is None:
            raise VasaError("no portrait: call set_source(image) first")
        pose, dynamics = self.space.to_absolute(x, source.reference)
        for k in range(len(x)):
            motion = self.face.keep_physical(source.appearance, Motion(pose[k], dynamics[k]))
            yield self.face.decode(source.appearance, motion)

    def generate(self, audio: str | os.PathLike, out: str | os.PathLike, controls: Controls = Controls(),
                 fps: float = MODEL_FPS, progress: bool = True, paste_back: bool = False,
                 source: Source | None = None, provenance: Provenance = Provenance()) -> int:
        """Write a talking video of the portrait (`source`, default this head's) speaking `audio` (any
        audio or video file) to `out` (.mp4, H.264 + the input's audio). With `paste_back` the animated
        face goes back into the whole photo. `provenance`: the frames' watermark (on by default) and the
        signed manifest's identity (vasa.provenance). Returns the number of frames; nothing is written
        on error."""
        from vasa.audio import load_audio
        from vasa.media import check_output_path, read_audio, write_video

        check_output_path(out)
        sealer = provenance.with_claims("speech", self.model_sha256).start(out)
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
            return write_video(out, counted(), fps, soundtrack, sealer=sealer)


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
