"""Face detection, square crop and the 478 3D landmarks (mediapipe's packaged face mesh with iris).

A `FaceCrop` is the similarity transform from the user's image to the square working crop;
everything downstream (pose, dynamics, rendering) lives in crop units, and the crop can paste
results back into the original image.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

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


class LandmarkDetector:
    """mediapipe face detection + face mesh (refine_landmarks: 468 mesh + 10 iris points).

    `tracking=True` reuses the previous frame's face region (video); `False` detects afresh
    on every image (photos). Landmarks come back as (478, 3) in units of the image width
    (x, z) and height (y), i.e. pixels / size for the square crops used here.
    """

    def __init__(self, tracking: bool = False):
        import mediapipe as mp  # heavy import, only when a detector is made

        self._mp = mp
        self.tracking = tracking
        with _native_logs_silenced():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=not tracking, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=0.5, min_tracking_confidence=0.5,
            )
        self._calls = 0
        self._detectors = None

    def close(self) -> None:
        with _native_logs_silenced():
            self._mesh.close()
            for detector in self._detectors or ():
                detector.close()

    def __enter__(self) -> "LandmarkDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def detect_small_faces(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """`detect_faces` on overlapping tiles of a half, a third, then a quarter of the image, until
        one shows a face: the detectors see an image at 128-192 px, where a face of a few percent of a
        large photo is too small to find."""
        h, w = image.shape[:2]
        boxes = []
        for parts in (2, 3, 4):
            side = int(np.ceil(max(h, w) / parts))
            for y in _tile_starts(h, side):
                for x in _tile_starts(w, side):
                    boxes += [(x0 + x, y0 + y, x1 + x, y1 + y)
                              for x0, y0, x1, y1 in self.detect_faces(image[y:y + side, x:x + side])]
            if boxes:
                return _distinct(sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])))
        return []

    def detect_faces(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Face boxes (x0, y0, x1, y1) in pixels, largest first: full-range model, then short-range."""
        if self._detectors is None:
            fd = self._mp.solutions.face_detection
            with _native_logs_silenced():
                self._detectors = [fd.FaceDetection(model_selection=1, min_detection_confidence=0.5),
                                   fd.FaceDetection(model_selection=0, min_detection_confidence=0.5)]
        h, w = image.shape[:2]
        shrink = min(1.0, DETECTION_MAX_SIDE / max(h, w))
        small = cv2.resize(image, (round(w * shrink), round(h * shrink)), interpolation=cv2.INTER_AREA) \
            if shrink < 1.0 else image
        for detector in self._detectors:
            with _native_logs_silenced():
                result = detector.process(np.ascontiguousarray(small))
            if result.detections:
                boxes = []
                for detection in result.detections:
                    box = detection.location_data.relative_bounding_box
                    boxes.append((box.xmin * w, box.ymin * h, (box.xmin + box.width) * w,
                                  (box.ymin + box.height) * h))
                return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
        return []

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """(478, 3) landmarks of the face in `image` (RGB uint8) or None when none is found."""
        self._calls += 1
        if self._calls <= 5:  # the graph logs its set-up on the first frames
            with _native_logs_silenced():
                result = self._mesh.process(np.ascontiguousarray(image))
        else:
            result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        points = result.multi_face_landmarks[0].landmark
        return np.array([[p.x, p.y, p.z] for p in points], dtype=np.float64)


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
    detector = detector or LandmarkDetector(tracking=False)
    try:
        boxes = detector.detect_faces(image)
        # The detector can miss faces that fill the whole frame; the mesh's own detector sees them.
        loose = _around(boxes[0]) if boxes else \
            FaceCrop((image.shape[1] / 2, image.shape[0] / 2), float(max(image.shape[:2])), 512)
        points = detector.landmarks(loose.apply(image))
        if points is None and not boxes:  # or the face is small in a large photo
            boxes = detector.detect_small_faces(image)
            if boxes:
                loose = _around(boxes[0])
                points = detector.landmarks(loose.apply(image))
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

    @property
    def num_frames(self) -> int:
        return len(self.found)


class VideoTracker:
    """Landmarks frame after frame with one fixed crop, framed on the first frame with a face.

    A fixed crop makes head motion show up as pose rather than as a moving crop. Calling it
    returns (478, 3) crop-unit landmarks, or None while no face has been seen / when lost.
    """

    def __init__(self, size: int):
        self.size = size
        self.crop: FaceCrop | None = None
        self.first_frame: np.ndarray | None = None
        self._tracker = LandmarkDetector(tracking=True)
        self._finder = LandmarkDetector(tracking=False)

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        if self.crop is None:
            try:
                self.crop, _ = locate_face(frame, self.size, self._finder)
            except VasaError:
                return None
        cropped = self.crop.apply(frame)
        points = self._tracker.landmarks(cropped)
        if points is not None and self.first_frame is None:
            self.first_frame = cropped
        return points

    def close(self) -> None:
        self._tracker.close()
        self._finder.close()

    def __enter__(self) -> "VideoTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track_video(frames, size: int, progress=None) -> TrackedVideo:
    """Track the largest face through an iterable of RGB frames (see `VideoTracker`).

    Frames without a face repeat the nearest earlier landmarks and are flagged in `found`.
    """
    points_list: list[np.ndarray | None] = []
    with VideoTracker(size) as tracker:
        for frame in frames:
            points_list.append(tracker(frame))
            if progress is not None:
                progress.update(1)
        crop, first = tracker.crop, tracker.first_frame
    if not points_list:
        raise VasaError("the video has no frames")
    if crop is None or first is None:
        raise VasaError("no face found in any frame of the video")
    found = np.array([p is not None for p in points_list])
    filled = []
    last = next(p for p in points_list if p is not None)
    for p in points_list:
        last = p if p is not None else last
        filled.append(last)
    return TrackedVideo(crop, np.stack(filled), found, first)
