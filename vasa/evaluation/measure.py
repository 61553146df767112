"""Every metric on one video (any method's), and on a generated video beside its real counterpart.

`Judges` holds what the metrics need once (tracker size, face model, audio encoder, the contrastive
judges, and SyncNet / I3D / dlib when their weights or packages exist); `measure_video_file` and
`measure_frames` give a `VideoMeasures` (per-frame tracks and features, kept for plots and set-level
distances); `video_metrics` and `paired_metrics` turn them into numbers. A metric that cannot run says
why in the numbers ("skipped: ...") instead of failing the whole report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from vasa.audio import load_audio, load_encoder
from vasa.errors import VasaError
from vasa.evaluation.pictures import tile
from vasa.face.landmarks import track_video
from vasa.face.mesh.model import FaceModel
from vasa.latents import FPS, SAMPLE_RATE
from vasa.media import iter_video_frames
from vasa.metrics import contrastive, identity, landmarks, syncnet
from vasa.metrics.contrastive import ContrastiveJudge, lip_features, pose_features

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_CAPP = ASSETS / "capp.safetensors"
DEFAULT_LIPSYNC = ASSETS / "lipsync.safetensors"
IDENTITY_EVERY = 10  # dlib's descriptor on every 10th frame (~175 ms a face on CPU)
LIPSYNC_MAX_SHIFT = 15  # frames searched either way by the lip-sync judge, as SyncNet does
SKIPPED_SYNCNET = "skipped: no weights (--syncnet PATH)"
SKIPPED_I3D = "skipped: no weights (--i3d PATH)"
SHIFT_S = 1.0  # the shifted-audio negative control: the audio rolled (circularly) by this much


@dataclass
class Judges:
    """Models and settings shared by all videos of one evaluation."""

    size: int = 256  # side of the tracker's face crop
    capp: contrastive.Judge | None = None
    lipsync: contrastive.Judge | None = None
    syncnet: syncnet.SyncNet | None = None
    i3d: object | None = None  # vasa.metrics.fvd.I3D
    descriptor: identity.FaceDescriptor | None = None
    face_model: FaceModel = field(default_factory=FaceModel.load)
    encoder: object = None  # vasa.audio.AudioEncoder: the features the judges were trained on
    notes: dict = field(default_factory=dict)  # metric -> why it is skipped

    @classmethod
    def load(cls, size: int = 256, capp: str | os.PathLike | None = None, lipsync: str | os.PathLike | None = None,
             syncnet_path: str | os.PathLike | None = None, i3d_path: str | os.PathLike | None = None,
             identity_metric: bool = True) -> "Judges":
        judges = cls(size=size)
        encoders = {}  # judge name -> the speech features it was trained on
        for name, given, default in (("capp", capp, DEFAULT_CAPP), ("lipsync", lipsync, DEFAULT_LIPSYNC)):
            path = Path(given) if given else default
            if path.is_file():
                setattr(judges, name, contrastive.load_judge(path))
                encoders[name] = contrastive.judge_metadata(path).get("audio_encoder", "whisper")
            elif given:
                raise VasaError(f"no {name} judge at {path}")
            else:
                judges.notes[name] = f"skipped: no judge weights ({default.name} not shipped; --{name} PATH)"
        if len(set(encoders.values())) > 1:
            raise VasaError("the judges were trained on different speech features ("
                            + ", ".join(f"{k}: {v}" for k, v in encoders.items()) + "): give judges of one encoder")
        judges.encoder = load_encoder(next(iter(encoders.values()), "whisper"), fps=FPS)
        if syncnet_path:
            judges.syncnet = syncnet.load_syncnet(syncnet_path)
        else:
            judges.notes["syncnet"] = SKIPPED_SYNCNET
        if i3d_path:
            from vasa.metrics.fvd import load_i3d

            judges.i3d = load_i3d(i3d_path)
        else:
            judges.notes["fvd"] = SKIPPED_I3D
        if identity_metric and identity.available():
            judges.descriptor = identity.FaceDescriptor()
        else:
            judges.notes["identity"] = ("skipped: pip install dlib-bin face_recognition_models" if identity_metric
                                        else "skipped: --no-identity")
        return judges


@dataclass
class VideoMeasures:
    """One video, measured: frames at 25 fps, its audio, landmarks and speech features. The frames may be
    dropped once measured (set to []): the length is the track's."""

    name: str
    frames: list[np.ndarray]  # (T,) of (H, W, 3) RGB uint8
    waveform: np.ndarray  # (samples,) mono 16 kHz
    track: landmarks.Track
    crop_frames: list[np.ndarray]  # (T,) the tracker's fixed face crop of each frame, (size, size, 3)
    audio: np.ndarray  # (T_audio, D) speech features at 25 fps

    def __len__(self) -> int:
        return len(self.track)


def measure_frames(judges: Judges, name: str, frames: list[np.ndarray], waveform: np.ndarray) -> VideoMeasures:
    """Track the face through frames (25 fps) and encode the audio."""
    if not frames:
        raise VasaError(f"{name}: no frames")
    tracked = track_video(frames, judges.size)
    track = landmarks.canonical_track(judges.face_model, tracked.landmarks, tracked.found)
    crops = [tracked.crop.apply(f) for f in frames]
    audio = judges.encoder.encode(waveform).features if len(waveform) else np.zeros((0, judges.encoder.dim))
    return VideoMeasures(name, frames, waveform, track, crops, audio)


def measure_video_file(judges: Judges, path: str | os.PathLike, audio: str | os.PathLike | None = None) -> VideoMeasures:
    """A video file at 25 fps; its own soundtrack unless `audio` (any audio/video file) is given."""
    path = Path(path)
    frames = list(iter_video_frames(path, FPS))
    try:
        waveform = load_audio(audio if audio is not None else path)
    except VasaError as error:
        raise VasaError(f"{path.name}: no audio to judge it by ({error}); give the speech with --audio") from None
    return measure_frames(judges, path.stem, frames, waveform)


# --- per video --------------------------------------------------------------------------------------------
def frame_rms(waveform: np.ndarray, frames: int) -> np.ndarray:
    """(frames,) RMS of the audio under each video frame (640 samples at 25 fps; silence past the end)."""
    step = int(SAMPLE_RATE / FPS)
    padded = np.pad(waveform, (0, max(0, frames * step - len(waveform))))
    return np.sqrt(np.mean(padded[:frames * step].reshape(frames, step) ** 2, axis=1))


def mouth_energy_r(track: landmarks.Track, waveform: np.ndarray) -> float:
    """Pearson r of the mouth opening and the audio RMS per frame, over the frames with a face."""
    return landmarks.pearson(track.mouth()[track.found], frame_rms(waveform, len(track))[track.found])


def shifted_waveform(waveform: np.ndarray, seconds: float = SHIFT_S) -> np.ndarray:
    """The negative control's audio: the waveform (16 kHz) rolled circularly by `seconds` (same length)."""
    return np.roll(waveform, int(round(seconds * SAMPLE_RATE)))


def judge_inputs(judges: Judges, m: VideoMeasures, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(motion features, audio features) of a video over their common length, for CAPP or the lip judge."""
    n = min(len(m.track), len(m.audio))
    if kind == "capp":
        motion = pose_features(m.track.pose[:n])
    else:  # the lip judge was trained on landmarks through the face model's dynamics basis: do the same
        canonical = m.track.canonical[:n]
        dynamics = judges.face_model.encode_dynamics(canonical)
        motion = lip_features(judges.face_model.mean_shape + judges.face_model.decode_dynamics(dynamics))
    return motion, m.audio[:n].astype(np.float32)


def video_metrics(judges: Judges, m: VideoMeasures, portrait: np.ndarray | None = None) -> dict:
    """Metrics that need only the video (and its audio, and optionally the source portrait)."""
    track = m.track
    mouth = track.mouth()
    out = {
        "frames": len(m), "face_found": float(track.found.mean()),
        "pose_variation_deg": landmarks.pose_variation(track.pose, track.found),
        "blinks_per_min": landmarks.blink_rate(track, FPS),
        "jitter": landmarks.jitter(track.canonical, track.found),
        "mouth_opening_std": float(np.std(mouth[track.found])),
        "mouth_audio_energy_r": mouth_energy_r(track, m.waveform),
    }
    out.update(judge_metrics(judges, m))
    if judges.syncnet is not None:
        crops = np.stack([tile(c, syncnet.CROP_SIDE) for c in m.crop_frames])
        score = syncnet.syncnet_score(judges.syncnet, crops, m.waveform)
        out.update(syncnet_confidence=score.confidence, syncnet_distance=score.distance, syncnet_offset=score.offset)
    else:
        out.update(syncnet_confidence=judges.notes["syncnet"], syncnet_distance=judges.notes["syncnet"])
    if judges.descriptor is not None and portrait is not None:
        found = identity.identity_similarity(judges.descriptor, portrait, m.frames[::IDENTITY_EVERY])
        out.update(identity_distance=found["distance"], identity_cosine=found["cosine"],
                   identity_same_person=found["same_person_fraction"])
    else:
        note = judges.notes.get("identity", "skipped: no source portrait")
        out.update(identity_distance=note, identity_cosine=note)
    return out


def judge_metrics(judges: Judges, m: VideoMeasures) -> dict:
    out = {}
    if judges.capp is not None:
        motion, audio = judge_inputs(judges, m, "capp")
        out["capp"] = contrastive.sequence_score(judges.capp, motion, audio) \
            if len(motion) >= judges.capp.config.window_frames else "skipped: shorter than 3 s"
    else:
        out["capp"] = judges.notes["capp"]
    if judges.lipsync is not None:
        motion, audio = judge_inputs(judges, m, "lipsync")
        shift = min(LIPSYNC_MAX_SHIFT, (len(motion) - judges.lipsync.config.window_frames) // 2)
        if shift >= 1:
            found = contrastive.offset_scores(judges.lipsync, motion, audio, shift)
            out.update(lipsync_score=found["score"], lipsync_confidence=found["confidence"],
                       lipsync_offset=found["best_shift"], lipsync_curve=found["scores"])
        else:
            out["lipsync_score"] = "skipped: too short"
    else:
        out["lipsync_score"] = judges.notes["lipsync"]
    return out


def shifted_audio_metrics(judges: Judges, m: VideoMeasures, seconds: float = SHIFT_S) -> dict:
    """A negative control: the audio-dependent metrics of a video with its audio rolled (circularly) by
    `seconds`; the speech features are rolled with it. On a real video every one of them should drop."""
    frames = int(round(seconds * FPS))
    rolled = replace(m, waveform=shifted_waveform(m.waveform, seconds), audio=np.roll(m.audio, frames, axis=0))
    out = {"mouth_audio_energy_r": mouth_energy_r(m.track, rolled.waveform)}
    out.update(judge_metrics(judges, rolled))
    return out


def paired_metrics(generated: VideoMeasures, real: VideoMeasures) -> dict:
    """Per-frame comparison with the real video of the same audio (landmarks, mouth opening)."""
    found = landmarks.compare(generated.track, real.track, FPS)
    return {"mouth_correlation": found["mouth_correlation"], "lip_distance": found["lip_distance_centred"],
            "lip_distance_raw": found["lip_distance_raw"], "frames_compared": found["frames_compared"]}


def motion_descriptors(m: VideoMeasures) -> np.ndarray:
    """Per-frame motion descriptors (T-1, 8) for the offline Fréchet distance: head angles (centred on the
    clip's mean), their frame-to-frame change, mouth opening and mean eye opening (canonical units)."""
    track = m.track[np.flatnonzero(m.track.found)]
    angles = track.pose[:, :3] - track.pose[:, :3].mean(axis=0)
    return np.concatenate([angles[1:], np.diff(angles, axis=0), track.mouth()[1:, None], track.eyes()[1:, None]],
                          axis=1)


@torch.no_grad()
def sanity_tables(judges: Judges, reals: list[VideoMeasures], shifts=(0, 1, 2, 3, 5, 10, 25),
                  scales=(0.0, 0.5, 1.0, 1.5, 2.0, 4.0)) -> dict:
    """VASA-1's CAPP sanity checks in miniature, on the real videos: the mean score with the audio shifted
    by k frames (either way), and with the pose variation scaled by s around each window's mean (the
    window centring inside the judge makes scaling the centred pose the same as scaling the pose; a
    read-out CAPP, a correlation, has no scale table). The lip judge gets the shift table too."""
    out = {}
    for kind, model in (("capp", judges.capp), ("lipsync", judges.lipsync)):
        if model is None:
            continue
        pairs = [judge_inputs(judges, m, kind) for m in reals]
        rows = {}
        for k in shifts:
            values = []
            for motion, audio in pairs:
                for sign in ((1,) if k == 0 else (1, -1)):
                    if len(motion) - k >= model.config.window_frames:
                        values.append(contrastive.window_scores(model, motion, audio, shift=sign * k).mean())
            rows[k] = float(np.mean(values)) if values else float("nan")
        out[f"{kind}_shift"] = rows
        if kind == "capp" and isinstance(model, ContrastiveJudge):  # a read-out judge's r does not see scale
            rows = {}
            for s in scales:
                scaled = [(m.mean(axis=0) + s * (m - m.mean(axis=0)), a) for m, a in pairs]
                values = [contrastive.window_scores(model, m, a).mean() for m, a in scaled
                          if len(m) >= model.config.window_frames]
                rows[s] = float(np.mean(values)) if values else float("nan")
            out["capp_pose_scale"] = rows
    return out
