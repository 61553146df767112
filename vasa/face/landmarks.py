"""Framing a face and following it: the square working crop, a face located in a photo, tracked through a video.

A `FaceCrop` is the similarity transform from the user's image to the square working crop;
everything downstream (pose, dynamics, rendering) lives in crop units, and the crop can paste
results back into the original image. The landmarks, blendshapes and head matrix inside a crop are
read by the tracker of `vasa.face.landmarker`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from vasa.errors import VasaError
from vasa.face.landmarker import FaceLandmarks, LandmarkDetector

log = logging.getLogger(__name__)

# Working crop: the landmark box's larger side times this is the crop side (about the framing of
# HDTF-style talking-head crops: face in the middle ~55%, hair and shoulders around it).
CROP_SIDE_PER_FACE = 1.8
# The crop centre sits this fraction of the face box height above the box centre (room for hair).
CROP_CENTER_RAISE = 0.06
MIN_CROP_SIDE_PER_FACE = 1.4


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


def _around(box: tuple[float, float, float, float]) -> FaceCrop:
    """A loose crop around a detector's face box, for the landmark pass."""
    x0, y0, x1, y1 = box
    return FaceCrop(((x0 + x1) / 2, (y0 + y1) / 2), 2.6 * max(x1 - x0, y1 - y0), 384)


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
