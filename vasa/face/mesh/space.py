"""The mesh latent's relative-motion space: the generic `vasa.latents.LatentSpace` refined where the
face model names the face's parts.

The generator's x is motion relative to a face's own neutral (`vasa.latents`): pose change and
dynamics minus the neutral dynamics, where in the mesh latent the neutral is the face at rest (mouth:
median of its most closed-mouth frames; the rest: median of all frames) with its eyes turned to look
straight ahead (eye-in-head gaze 0, 0). The iris coefficients of x therefore hold the absolute
eye-in-head gaze, which is what the gaze condition controls.

Training takes the reference from each segment (median pose, neutral dynamics); generation takes it
from the portrait (its own pose; its dynamics with the eyes straightened and, if its mouth is open,
the mouth closed), then adds x. Two augmentations change x and its condition together (the data has
only a few gaze directions and distances): `shift_gaze` turns the eyes by a known angle and
`scale_distance` moves the head away by a known factor.
"""

from __future__ import annotations

import numpy as np

from vasa.face.mesh.model import EYEBALL_RADIUS, FaceModel
from vasa.latents import POSE_DIM, LatentSpace, Reference

CLOSED_MOUTH_PERCENTILE = 10  # frames this closed (or more) define a segment's resting mouth
CLOSED_MOUTH_OPENING = 0.01  # canonical units: a portrait's mouth more open than this is closed first


class MeshMotionSpace(LatentSpace):
    """Conversions between the mesh backend's absolute Motion arrays and the generator's relative x."""

    can_shift_gaze = True

    def __init__(self, model: FaceModel | None = None):
        self.model = model or FaceModel.load()
        super().__init__(self.model.dim)
        basis = self.model.basis  # (K, 478, 3)
        self.iris_jacobian = np.stack([self.model.iris_offset(b) for b in basis], axis=1)  # (2, K)
        self.gaze_directions = np.stack([self.model.directions["gaze_x"], self.model.directions["gaze_y"]])  # (2, K)
        # dynamics change per unit change of iris offset, along the gaze directions: (K, 2)
        self._offset_to_dynamics = self.gaze_directions.T @ np.linalg.inv(self.iris_jacobian @ self.gaze_directions.T)

    # --- gaze <-> iris offset ------------------------------------------------------------------
    def gaze_to_offset(self, gaze_deg: np.ndarray) -> np.ndarray:
        """Eye-in-head gaze (..., 2) degrees -> iris offset (..., 2), canonical units (inverse of eye_gaze)."""
        g = np.radians(np.asarray(gaze_deg, dtype=np.float64))
        return self.model.neutral_gaze + EYEBALL_RADIUS * np.stack([np.sin(g[..., 0]), -np.sin(g[..., 1])], -1)

    def straighten_eyes(self, dynamics: np.ndarray, gaze_deg: np.ndarray) -> np.ndarray:
        """Dynamics (K,) whose eyes look at `gaze_deg` -> the same with the eyes at (0, 0)."""
        change = self.model.neutral_gaze - self.gaze_to_offset(gaze_deg)
        return dynamics + self._offset_to_dynamics @ change

    def lids_for_gaze(self, from_deg: np.ndarray, to_deg: np.ndarray) -> np.ndarray:
        """Dynamics change (K,) that moves the lids as eyes turning from `from_deg` to `to_deg` (2,)
        carry them (lid-eye coupling, `FaceModel.lids_following_gaze`); the iris is not moved."""
        change = self.gaze_to_offset(np.asarray(to_deg)) - self.gaze_to_offset(np.asarray(from_deg))
        return self.model.lids_following_gaze() * change[1]

    # --- references ----------------------------------------------------------------------------
    def segment_reference(self, pose: np.ndarray, dynamics: np.ndarray, gaze_deg: np.ndarray) -> Reference:
        """Reference of a training segment: median pose; resting dynamics with straight eyes."""
        shapes = self.model.mean_shape + self.model.decode_dynamics(dynamics)  # (T, 478, 3)
        opening = self.model.mouth_opening(shapes)
        closed = opening <= np.percentile(opening, CLOSED_MOUTH_PERCENTILE)
        mouth = self.model.group_mask("mouth")
        rest = np.where(mouth, np.median(dynamics[closed], axis=0), np.median(dynamics, axis=0))
        # the iris offset the resting face would show, from every frame (the offset is linear in z)
        offsets = self.gaze_to_offset(gaze_deg) - (dynamics - rest) @ self.iris_jacobian.T  # (T, 2)
        rest = rest + self._offset_to_dynamics @ (self.model.neutral_gaze - offsets.mean(axis=0))
        reference_pose = np.median(pose, axis=0)
        return Reference(reference_pose, rest)

    def portrait_reference(self, pose: np.ndarray, dynamics: np.ndarray, identity: np.ndarray) -> Reference:
        """Reference of a portrait: its own pose; its dynamics with straight eyes and, if the mouth of its
        canonical shape `identity` is open, closed along the face model's mouth direction (the generator
        adds speech to a closed mouth)."""
        rest = self.straighten_eyes(dynamics, self.model.eye_gaze(identity))
        opening = float(self.model.mouth_opening(identity))
        if opening > CLOSED_MOUTH_OPENING:
            direction = self.model.directions["mouth_open"]
            per_unit = float(self.model.mouth_opening(self.model.decode_dynamics(direction)))  # linear in z
            if abs(per_unit) > 1e-9:
                rest = rest + direction * (CLOSED_MOUTH_OPENING - opening) / per_unit
        return Reference(np.asarray(pose, dtype=np.float64), rest)

    def eye_gaze(self, x: np.ndarray) -> np.ndarray:
        """Eye-in-head gaze (T, 2) degrees that relative frames x show."""
        offset = self.model.neutral_gaze + np.asarray(x)[:, POSE_DIM:] @ self.iris_jacobian.T
        rel = (offset - self.model.neutral_gaze) / EYEBALL_RADIUS
        return np.degrees(np.stack([np.arcsin(np.clip(rel[:, 0], -1, 1)), np.arcsin(np.clip(-rel[:, 1], -1, 1))], -1))

    # --- augmentations that keep x and its conditions consistent --------------------------------------
    def shift_gaze(self, x: np.ndarray, main_gaze_deg: np.ndarray, delta_deg: np.ndarray) -> np.ndarray:
        """Turn the eyes of every frame by `delta_deg` (2,) around the segment's main gaze."""
        change = self.gaze_to_offset(np.asarray(main_gaze_deg) + delta_deg) - self.gaze_to_offset(main_gaze_deg)
        out = np.array(x, dtype=np.float64)
        out[:, POSE_DIM:] += self._offset_to_dynamics @ change
        return out
