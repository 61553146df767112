"""Identity similarity to the source portrait with dlib's 128-d face descriptor (ResNet, face_recognition_models).

dlib's descriptor puts two photos of the same person within Euclidean distance 0.6 of each other (the
threshold its authors give; same person ~0.2-0.4 here, different people ~0.7+). The report gives the mean
distance of the generated frames' descriptors to the portrait's and the cosine similarity. Needs the
optional packages `dlib-bin` and `face_recognition_models` (pip install "vasa[eval]"); without them the
metric is skipped with that message. Faces are found with dlib's HOG detector, aligned with its 5-point
predictor (the pairing face_recognition_models ships), on frames upsampled to at least 256 px.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from vasa.errors import VasaError

SAME_PERSON_DISTANCE = 0.6  # dlib's threshold for "same person"
MIN_SIDE = 256  # frames smaller than this are upscaled before detection


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or importlib.util.find_spec("dlib") is None:
        raise VasaError("identity similarity needs dlib and its models: pip install dlib-bin face_recognition_models")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def available() -> bool:
    try:
        _models_dir()
    except VasaError:
        return False
    return True


class FaceDescriptor:
    """RGB uint8 image -> (128,) dlib descriptor of its largest face, or None when no face is found."""

    def __init__(self):
        import dlib

        models = _models_dir()
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        import cv2

        side = min(image.shape[:2])
        if side < MIN_SIDE:
            factor = MIN_SIDE / side
            image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        image = np.ascontiguousarray(image[..., :3])
        boxes = self._detector(image, 0)
        if not boxes:
            return None
        box = max(boxes, key=lambda b: b.width() * b.height())
        return np.array(self._net.compute_face_descriptor(image, self._shape(image, box)))


def identity_similarity(descriptor: FaceDescriptor, portrait: np.ndarray, frames: list[np.ndarray]) -> dict:
    """Mean descriptor distance and cosine similarity of frames to the portrait (frames without a face skipped)."""
    reference = descriptor(portrait)
    if reference is None:
        raise VasaError("dlib finds no face in the portrait")
    found = [d for d in (descriptor(f) for f in frames) if d is not None]
    if not found:
        return {"distance": float("nan"), "cosine": float("nan"), "frames": 0, "same_person_fraction": float("nan")}
    d = np.stack(found)  # (N, 128)
    distance = np.linalg.norm(d - reference, axis=1)
    cosine = d @ reference / (np.linalg.norm(d, axis=1) * np.linalg.norm(reference))
    return {"distance": float(distance.mean()), "cosine": float(cosine.mean()), "frames": len(found),
            "same_person_fraction": float((distance < SAME_PERSON_DISTANCE).mean())}
