"""The contract between stages: `Appearance` (per portrait), `Motion` (per frame), the relative motion
the generator makes (`LatentSpace`) and what a face backend answers about its latents (`FaceBackend`).

Every face backend encodes an image into both and decodes (Appearance, Motion) back to an image;
the motion generator only ever sees relative motion x (`LatentSpace`). Paper symbols: Motion.pose is
z_pose, Motion.dynamics is z_dyn, Appearance.identity is z_id and Appearance.texture stands for V_app.

VASA-1 generates absolute latents of its learned face space. With one portrait, absolute values would
carry the training speakers' identities and head placements into every portrait. So the generator works
on *relative* motion, x = [pose change, dynamics change] (6 + K values): pose (yaw, pitch, roll, tx, ty)
minus the reference pose and scale / reference scale; dynamics minus the reference (neutral) dynamics.
Training takes the reference from each segment, generation from the portrait, then adds x.
`LatentSpace` is this for any face latent; a backend that knows more of its latent refines it (the mesh
latent's `vasa.face.mesh.space.MeshMotionSpace`: resting mouth, straight eyes, gaze augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

# The clocks every stage keeps and the sizes every stage agrees on (defined here only).
FPS = 25.0  # motion frames a second: the generator makes one per 40 ms of speech; video in and out is resampled
SAMPLE_RATE = 16000  # speech samples a second that every encoder, the voice activity detector and the server take
POSE_DIM = 6  # (yaw, pitch, roll, tx, ty, scale): Motion.pose, and the first entries of a motion frame
EMOTION_NAMES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")  # the emotion condition's order


@dataclass(frozen=True)
class Motion:
    """Head pose and facial dynamics of one frame (pose (6,), dynamics (K,)) or of a batch.

    pose = (yaw, pitch, roll) in degrees, (tx, ty) in crop units (0..1 across the crop) and the
    face scale in crop units per canonical unit (canonical unit = outer-eye-corner distance).
    dynamics = coefficients of the face backend's dynamics basis.
    """

    pose: np.ndarray  # (..., 6)
    dynamics: np.ndarray  # (..., K)

    def __post_init__(self):
        object.__setattr__(self, "pose", np.asarray(self.pose, dtype=np.float64))
        object.__setattr__(self, "dynamics", np.asarray(self.dynamics, dtype=np.float64))
        if self.pose.shape[:-1] != self.dynamics.shape[:-1] or self.pose.shape[-1:] != (6,):
            raise ValueError(f"pose {self.pose.shape} and dynamics {self.dynamics.shape} do not match")

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.pose.shape[:-1]

    def __len__(self) -> int:
        if not self.batch_shape:
            raise TypeError("a single frame's Motion has no length")
        return self.batch_shape[0]

    def __getitem__(self, index) -> "Motion":
        return Motion(self.pose[index], self.dynamics[index])

    def replace(self, pose: np.ndarray | None = None, dynamics: np.ndarray | None = None) -> "Motion":
        return Motion(self.pose if pose is None else pose, self.dynamics if dynamics is None else dynamics)

    def as_array(self) -> np.ndarray:
        """[pose, dynamics] concatenated on the last axis: the motion generator's x."""
        return np.concatenate([self.pose, self.dynamics], axis=-1)

    @staticmethod
    def from_array(array: np.ndarray) -> "Motion":
        array = np.asarray(array)
        return Motion(array[..., :6], array[..., 6:])

    @staticmethod
    def stack(frames: Sequence["Motion"]) -> "Motion":
        return Motion(np.stack([m.pose for m in frames]), np.stack([m.dynamics for m in frames]))


@dataclass(frozen=True)
class Appearance:
    """What stays fixed for one portrait.

    image: the aligned square crop (RGB uint8), identity: the face's canonical 3D shape (z_id),
    source: the portrait's own Motion, texture: the backend's prepared render structure
    (the mesh backend's warp mesh; a neural backend's appearance volume V_app).
    """

    image: np.ndarray  # (S, S, 3) uint8
    identity: np.ndarray
    source: Motion
    crop: Any  # vasa.face.landmarks.FaceCrop: where the crop sits in the user's image
    texture: Any

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class Reference:
    """What relative motion is measured from: a pose (6,) and neutral dynamics (K,)."""

    pose: np.ndarray
    dynamics: np.ndarray


class LatentSpace:
    """Relative motion for any face latent (the generic space): x = [pose change, dynamics - reference dynamics].

    This is all a learned latent (the neural backend) gets: its z_dyn has no known iris or mouth
    coordinates, so a segment's reference is simply its median pose and median dynamics, the portrait's
    its own, and gaze can be neither shifted (no gaze augmentation) nor straightened, nor the lids moved
    with it. `vasa.face.mesh.space.MeshMotionSpace` (the mesh latent) refines the references and adds
    the gaze operations.
    """

    can_shift_gaze = False

    def __init__(self, dynamics_dim: int):
        self.dynamics_dim = int(dynamics_dim)

    @property
    def dim(self) -> int:
        return POSE_DIM + self.dynamics_dim

    def segment_reference(self, pose: np.ndarray, dynamics: np.ndarray, gaze_deg: np.ndarray) -> Reference:
        return Reference(np.median(pose, axis=0), np.median(dynamics, axis=0))

    def portrait_reference(self, pose: np.ndarray, dynamics: np.ndarray,
                           identity: np.ndarray | None = None) -> Reference:
        """Reference of a portrait from its own Motion; `identity` (its Appearance.identity) is for spaces
        that read the portrait's face from it."""
        return Reference(np.asarray(pose, dtype=np.float64), np.asarray(dynamics, dtype=np.float64))

    def lids_for_gaze(self, from_deg: np.ndarray, to_deg: np.ndarray) -> np.ndarray:
        """Dynamics change (K,) that moves the lids with eyes turning from `from_deg` to `to_deg`: none
        where the latent has no known lids."""
        return np.zeros(self.dynamics_dim)

    # --- absolute <-> relative -----------------------------------------------------------------
    def to_relative(self, pose: np.ndarray, dynamics: np.ndarray, reference: Reference) -> np.ndarray:
        """Absolute frames (T, 6), (T, K) -> x (T, 6 + K)."""
        rel_pose = np.asarray(pose, dtype=np.float64) - reference.pose
        rel_pose[:, 5] = pose[:, 5] / reference.pose[5]
        return np.concatenate([rel_pose, np.asarray(dynamics) - reference.dynamics], axis=1)

    def to_absolute(self, x: np.ndarray, reference: Reference) -> tuple[np.ndarray, np.ndarray]:
        """x (T, 6 + K) -> absolute (pose (T, 6), dynamics (T, K)) around `reference`."""
        x = np.asarray(x, dtype=np.float64)
        pose = x[:, :POSE_DIM] + reference.pose
        pose[:, 5] = x[:, 5] * reference.pose[5]
        return pose, x[:, POSE_DIM:] + reference.dynamics

    @staticmethod
    def scale_distance(x: np.ndarray, factor: float) -> np.ndarray:
        """The head `factor` times farther away: the face scale divides by it."""
        out = np.array(x, dtype=np.float64)
        out[:, 5] /= factor
        return out


@dataclass(frozen=True)
class Eyelids:
    """How a face latent's dynamics open and close the eyes: what the blink control moves."""

    jacobian: np.ndarray  # (2, K): eye opening (right, left) per unit of each dynamics coefficient (linear)
    directions: np.ndarray  # (2, K): the dynamics directions that open the right and the left eye
    measure: Callable[[np.ndarray], np.ndarray]  # a canonical face shape -> its eye opening (right, left)

    def opening(self, appearance: Appearance) -> np.ndarray:
        """The portrait's own eye opening (2,)."""
        return self.measure(appearance.identity)


@runtime_checkable
class FaceBackend(Protocol):
    """What the pipeline asks of a face latent space: `vasa.face.mesh.MeshFace` (explicit geometry) and
    `vasa.face.neural.NeuralFace` (learned) both provide it. Where a latent does not know a part of the
    face (a learned z_dyn has no named eyes, lids, mouth or expressions), its answer says so: no mouth
    coefficients, no gaze, no eyelids, the portrait unchanged, the generic `LatentSpace`."""

    name: str  # "mesh" or "neural": a motion model records the backend it was trained on
    size: int  # side of the square frames it decodes, in pixels

    @property
    def dynamics_dim(self) -> int:
        """K, the size of Motion.dynamics (z_dyn)."""

    @property
    def space(self) -> LatentSpace:
        """The relative-motion space of its latents: the motion generator's x."""

    @property
    def mouth_mask(self) -> np.ndarray:
        """(K,) bool: the dynamics coefficients that move the mouth (the silence gate closes them); all
        False where they are not known."""

    @property
    def eyelids(self) -> Eyelids | None:
        """How the dynamics move the eyelids (the blink control); None where they are not known."""

    def encode(self, image: np.ndarray) -> tuple[Appearance, Motion]:
        """A portrait (RGB, any size) -> its appearance and its own motion."""

    def decode(self, appearance: Appearance, motion: Motion) -> np.ndarray:
        """(appearance, motion) -> a frame (size, size, 3) uint8 RGB."""

    def gaze(self, appearance: Appearance) -> tuple[float, float] | None:
        """The portrait's eye-in-head gaze (theta, phi) in degrees (the gaze condition's default); None where
        the latent has no known eyes."""

    def with_expression(self, appearance: Appearance, weights: np.ndarray) -> Appearance:
        """The portrait wearing the expression of emotion weights (7,) in EMOTION_NAMES order; `appearance`
        itself for no expression (all weights 0) or where the latent knows no expressions."""

    def keep_physical(self, appearance: Appearance, motion: Motion) -> Motion:
        """`motion` with what no face can do undone (lips pushed past closed, lids past shut); unchanged
        where the latent does not know where lips and lids meet."""
