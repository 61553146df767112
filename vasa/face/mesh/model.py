"""The shipped face model: canonical neutral mean shape, rigid points and the dynamics basis.

Facial dynamics z_dyn are coefficients of a grouped PCA basis over canonical-frame landmark
displacements: ``canonical = mean_shape + identity_offset + z @ basis``. Groups keep the
coefficients readable: mouth (lips and jaw), eyelids, iris (gaze), brows and a small residual.
The file records how it was made (`provenance`); `python -m vasa.face.mesh.derive` re-derives it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from vasa.errors import VasaError
from vasa.face import geometry

ASSET_DIR = Path(__file__).parent / "assets"
DEFAULT_MODEL = ASSET_DIR / "face_model.npz"

# mediapipe face-mesh indices. "Right"/"left" are the subject's (the image-left eye is the right eye).
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
RIGHT_EYE_LIDS = (159, 145)  # upper, lower (mid-lid)
LEFT_EYE_LIDS = (386, 374)
RIGHT_IRIS = (468, 469, 470, 471, 472)  # centre first
LEFT_IRIS = (473, 474, 475, 476, 477)
IRIS_CENTERS = (468, 473)
INNER_LIPS_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LIPS_LOWER = (308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)
INNER_LIP_MIDDLE = (13, 14)
OUTER_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
MOUTH_CORNERS = (61, 291)
RIGHT_EYE_CONTOUR = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE_CONTOUR = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
# Lid-eye coupling: the lids follow the eye's vertical rotation. Measured on the 2 567 open-eye frames
# of the seven talking clips in ../shared/media (`scripts/data_facts.py`): per canonical unit of
# vertical iris-centre motion, the mid upper lid moves 1.36 units the same way, the lower lid 0.42.
UPPER_LID_PER_IRIS = 1.36
LOWER_LID_PER_IRIS = 0.42
# A human eyeball's radius (~12 mm) over the outer-eye-corner distance (~90 mm): the iris centre
# moves about this far (canonical units) for 90° of eye rotation.
EYEBALL_RADIUS = 0.13
# How much of an eye's rotation the landmark tracker reads, (horizontal, vertical). A speaker who keeps
# looking at the camera while the head turns counter-rotates the eyes by the head's angle; on the same
# seven clips the tracked eye-in-head gaze follows the tracked head yaw with slope 0.71 and the pitch
# with 0.44, not 1 (`scripts/data_facts.py`, fact 5). Gaze in vasa is always the tracker's reading
# (what records hold and the motion model learns), so the renderer paints each iris's move divided by
# this gain (`FaceModel.painted_irises`). Renders read back most of what was asked (the tracker reads
# them a little shorter still than real eyes; docs/benchmarks.md, "Controls").
GAZE_READ_GAIN = (0.71, 0.44)


@dataclass(frozen=True)
class FaceModel:
    mean_shape: np.ndarray  # (478, 3) canonical neutral mean shape
    rigid_indices: np.ndarray  # (R,) landmarks that move least with expression: used for pose
    basis: np.ndarray  # (K, 478, 3) dynamics basis, canonical units
    groups: tuple[str, ...]  # (K,) group name of each component
    directions: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (K,) edit directions
    neutral_gaze: np.ndarray = field(default_factory=lambda: np.zeros(2))  # iris offset read as (0°, 0°)
    provenance: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.basis.shape[0])

    @property
    def _projector(self) -> np.ndarray:
        return _projector(self.basis.tobytes(), self.basis.shape)

    # --- dynamics --------------------------------------------------------------------------
    def encode_dynamics(self, canonical: np.ndarray) -> np.ndarray:
        """Canonical shape(s) (..., 478, 3) -> dynamics coefficients (..., K) (least squares)."""
        flat = (np.asarray(canonical) - self.mean_shape).reshape(*np.shape(canonical)[:-2], -1)
        return flat @ self._projector.T

    def decode_dynamics(self, dynamics: np.ndarray) -> np.ndarray:
        """Coefficients (..., K) -> canonical displacement (..., 478, 3)."""
        return np.tensordot(np.asarray(dynamics), self.basis, axes=([-1], [0]))

    def lids_following_gaze(self) -> np.ndarray:
        """z (K,) of the eyelid components that moves the lids as far as the eyes' vertical rotation
        carries them (`UPPER_LID_PER_IRIS`, `LOWER_LID_PER_IRIS`) per canonical unit of iris motion
        along +y (down), leaving the eye-in-head gaze as it is. The gaze directions move the iris only;
        add this times the iris change."""
        lids = _lid_direction(self.basis.tobytes(), self.basis.shape, self.groups)
        # The corners the lids drag along would change the iris offset read from them: turn the
        # irises back by that much along the gaze directions, so the eye-in-head gaze stays.
        gaze = np.stack([self.directions["gaze_x"], self.directions["gaze_y"]])  # (2, K)
        per_gaze = np.stack([self.iris_offset(self.decode_dynamics(g)) for g in gaze], axis=1)  # (2, 2)
        drift = self.iris_offset(self.decode_dynamics(lids))  # (2,): linear in z
        return lids - np.linalg.solve(per_gaze, drift) @ gaze

    def group_mask(self, name: str) -> np.ndarray:
        return np.array([g == name for g in self.groups])

    # --- rigid pose ------------------------------------------------------------------------
    def canonicalize(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Landmarks (478, 3) in crop units -> (canonical shape, pose (6,), depth offset)."""
        pose = geometry.estimate_pose(points, self.mean_shape, self.rigid_indices)
        depth = geometry.depth_offset(points, self.mean_shape, pose, self.rigid_indices)
        shifted = np.array(points, dtype=np.float64)
        shifted[:, 2] -= depth
        return geometry.unproject(shifted, pose), pose, depth

    # --- measures on canonical shapes (canonical units: outer eye corners 1 apart) --------------
    @staticmethod
    def mouth_opening(canonical: np.ndarray) -> np.ndarray:
        """Inner-lip gap at the middle of the mouth, (...,)."""
        c = np.asarray(canonical)
        return c[..., INNER_LIP_MIDDLE[1], 1] - c[..., INNER_LIP_MIDDLE[0], 1]

    @staticmethod
    def eye_opening(canonical: np.ndarray) -> np.ndarray:
        """Lid gap of the (right, left) eye, (..., 2)."""
        c = np.asarray(canonical)
        right = c[..., RIGHT_EYE_LIDS[1], 1] - c[..., RIGHT_EYE_LIDS[0], 1]
        left = c[..., LEFT_EYE_LIDS[1], 1] - c[..., LEFT_EYE_LIDS[0], 1]
        return np.stack([right, left], axis=-1)

    @staticmethod
    def iris_offset(canonical: np.ndarray) -> np.ndarray:
        """Mean (x, y) offset of the iris centres from their eye-corner midpoints, (..., 2)."""
        return _iris_offsets(canonical).mean(axis=-2)

    @staticmethod
    def painted_irises(canonical: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Canonical shape (478, 3) with each eye's iris landmarks moved so that the iris's offset from
        its eye-corner midpoint changes from `reference`'s by the change in `canonical` divided by
        `GAZE_READ_GAIN`: where a renderer paints the irises for the tracker to read `canonical`'s gaze."""
        out = np.array(canonical, dtype=np.float64)
        extra = (1 / np.asarray(GAZE_READ_GAIN) - 1) * (_iris_offsets(out) - _iris_offsets(reference))  # (2 eyes, 2)
        for eye, iris in enumerate((RIGHT_IRIS, LEFT_IRIS)):
            out[list(iris), :2] += extra[eye]
        return out

    def eye_gaze(self, canonical: np.ndarray) -> np.ndarray:
        """Eye-in-head gaze (θ yaw, φ pitch) in degrees, (..., 2). θ > 0: toward image right; φ > 0: up."""
        offset = (self.iris_offset(canonical) - self.neutral_gaze) / EYEBALL_RADIUS
        theta = np.degrees(np.arcsin(np.clip(offset[..., 0], -1, 1)))
        phi = np.degrees(np.arcsin(np.clip(-offset[..., 1], -1, 1)))
        return np.stack([theta, phi], axis=-1)

    def gaze_direction(self, canonical: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """Gaze relative to the camera, (θ, φ) degrees: eye-in-head gaze plus head rotation.

        θ > 0 looks toward the image's right, φ > 0 up; (0, 0) looks into the camera. A positive
        head yaw turns the face toward the image's left and a positive pitch tilts it down (see
        `geometry`), hence the signs. First order in the head angles.
        """
        eye = self.eye_gaze(canonical)
        pose = np.asarray(pose)
        return np.stack([eye[..., 0] - pose[..., 0], eye[..., 1] - pose[..., 1]], axis=-1)

    def head_distance(self, pose: np.ndarray) -> np.ndarray:
        """Head-to-camera distance as a normalised scalar: 1 at the standard portrait framing
        (`landmarks.CROP_SIDE_PER_FACE`), 2 when the face looks half as large, ..."""
        from vasa.face.landmarks import CROP_SIDE_PER_FACE

        extent = float(np.ptp(self.mean_shape[:, :2], axis=0).max())
        reference_scale = 1.0 / (CROP_SIDE_PER_FACE * extent)
        return reference_scale / np.asarray(pose)[..., 5]

    # --- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        path = Path(path)
        arrays = {
            "mean_shape": self.mean_shape.astype(np.float32),
            "rigid_indices": self.rigid_indices.astype(np.int32),
            "basis": self.basis.astype(np.float32),
            "groups": np.array(self.groups),
            "neutral_gaze": self.neutral_gaze.astype(np.float32),
        }
        for name, vector in self.directions.items():
            arrays[f"direction_{name}"] = vector.astype(np.float32)
        temporary = path.with_name(f".{path.stem}.tmp.npz")
        np.savez_compressed(temporary, **arrays)
        temporary.replace(path)
        path.with_suffix(".json").write_text(json.dumps(self.provenance, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path | None = None) -> "FaceModel":
        path = Path(path) if path is not None else DEFAULT_MODEL
        return _load(str(path))


@lru_cache(maxsize=4)
def _load(path: str) -> FaceModel:
    if not Path(path).exists():
        raise VasaError(f"face model file not found: {path}")
    with np.load(path) as data:
        directions = {k[len("direction_"):]: data[k].astype(np.float64) for k in data.files
                      if k.startswith("direction_")}
        model = FaceModel(
            mean_shape=data["mean_shape"].astype(np.float64),
            rigid_indices=data["rigid_indices"].astype(np.int64),
            basis=data["basis"].astype(np.float64),
            groups=tuple(str(g) for g in data["groups"]),
            directions=directions,
            neutral_gaze=data["neutral_gaze"].astype(np.float64),
        )
    meta = Path(path).with_suffix(".json")
    provenance = json.loads(meta.read_text()) if meta.exists() else {}
    return FaceModel(**{**model.__dict__, "provenance": provenance})


def _iris_offsets(canonical: np.ndarray) -> np.ndarray:
    """(x, y) offset of each iris centre from its eye-corner midpoint, (..., 2 eyes (right, left), 2)."""
    c = np.asarray(canonical)
    offsets = []
    for centre, corners in ((IRIS_CENTERS[0], RIGHT_EYE_CORNERS), (IRIS_CENTERS[1], LEFT_EYE_CORNERS)):
        middle = (c[..., corners[0], :2] + c[..., corners[1], :2]) / 2
        offsets.append(c[..., centre, :2] - middle)
    return np.stack(offsets, axis=-2)


@lru_cache(maxsize=4)
def _projector(basis_bytes: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Ridge-regularised pseudo-inverse (K, 478*3) of the (non-orthogonal) grouped basis."""
    basis = np.frombuffer(basis_bytes, dtype=np.float64).reshape(shape[0], -1)
    gram = basis @ basis.T
    ridge = 1e-6 * np.trace(gram) / len(gram)
    return np.linalg.solve(gram + ridge * np.eye(len(gram)), basis)


@lru_cache(maxsize=4)
def _lid_direction(basis_bytes: bytes, shape: tuple[int, ...], groups: tuple[str, ...]) -> np.ndarray:
    """Least squares over the eyelid components: lid points move (0, per_iris * sin(pi t)) in x, y where
    t runs from one eye corner (0) to the other (1); the corners stay; other points are free. The
    eyelid components move the corners a little too, which `lids_following_gaze` compensates."""
    basis = np.frombuffer(basis_bytes, dtype=np.float64).reshape(shape)
    mask = np.array([g == "eyes" for g in groups])
    points, target = [], []
    for contour in (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR):  # corner, 7 upper, corner, 7 lower
        for k, index in enumerate(contour):
            lid, t = (UPPER_LID_PER_IRIS, k / 8) if k <= 8 else (LOWER_LID_PER_IRIS, (k - 8) / 8)
            points.append(index)
            target.append(lid * np.sin(np.pi * t))
    a = basis[mask][:, points, :2].transpose(1, 2, 0).reshape(-1, mask.sum())  # (P * 2, E): x, y per component
    b = np.stack([np.zeros(len(target)), np.array(target)], axis=1).ravel()  # (P * 2,)
    coefficients, *_ = np.linalg.lstsq(a, b, rcond=None)
    direction = np.zeros(shape[0])
    direction[mask] = coefficients
    return direction
