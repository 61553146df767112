"""The mesh face latent: explicit 3D landmark geometry behind the `Appearance`/`Motion` interface.

encode: image -> aligned crop, 478 landmarks -> (canonical identity shape, pose, dynamics).
decode: identity + dynamics basis * (z - z_source) -> canonical shape -> posed -> vertex motion
-> dense backward warp of the portrait (`vasa.face.warp`) -> mouth interior where the lips part
wider than in the portrait (`vasa.face.mouth`). Eyelids close because the lid vertices meet;
irises move because the iris-centre vertices move inside the fixed eye contour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from vasa.errors import VasaError
from vasa.face import eyes, geometry, mouth, warp
from vasa.face.landmarks import FaceCrop, LandmarkDetector, TrackedVideo, locate_face, track_video
from vasa.face.model import FaceModel
from vasa.latents import Appearance, Motion
from vasa.media import read_image

DEFAULT_SIZE = 512
FIELD_GRID = 256  # warp map resolution; 2 output pixels per cell at 512
NUM_MESH = 468
WARP_LANDMARKS = np.arange(NUM_MESH)  # irises are not warped: `eyes.paint_irises` moves them rigidly
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
# Anchor rings around the face oval: (scale from the face centre, weight above the mouth, below it).
# Inner ring moves with the head (hair, ears); outer ring partly (hair ends, neck, shoulders).
ANCHOR_RINGS = ((1.25, 1.0, 0.85), (1.7, 0.55, 0.2))
CROP_MARGIN = 0.01
BACKGROUND_DEPTH = 10.0  # anchors and border lie behind every face vertex


@dataclass(frozen=True)
class MeshTexture:
    """The mesh backend's per-portrait render structure (its stand-in for V_app)."""

    warp: warp.WarpMesh
    source_points: np.ndarray  # (478, 2) crop units
    anchors: np.ndarray  # (A, 3) canonical positions of the anchor points kept
    anchor_weights: np.ndarray  # (A,)
    mouth: mouth.MouthStyle
    irises: eyes.IrisTexture


class MeshFace:
    """Face backend built from geometry: works on any portrait, no training, CPU real time."""

    name = "mesh"

    def __init__(self, model: FaceModel | None = None, size: int = DEFAULT_SIZE, grid: int = FIELD_GRID):
        if size < 64 or size % 2:
            raise VasaError(f"output size must be an even number of pixels, at least 64; got {size}")
        self.model = model or FaceModel.load()
        self.size = size
        self.grid = grid

    @property
    def dynamics_dim(self) -> int:
        return self.model.dim

    # --- encoding --------------------------------------------------------------------------
    def encode(self, image) -> tuple[Appearance, Motion]:
        """A portrait (path or RGB array, any size) -> (Appearance, its Motion)."""
        rgb = read_image(image)
        with LandmarkDetector(tracking=False) as detector:
            crop, _ = locate_face(rgb, self.size, detector)
            cropped = crop.apply(rgb)
            points = detector.landmarks(cropped)
        if points is None:
            raise VasaError("no face found in the aligned crop of the image")
        appearance = self.appearance_from_landmarks(cropped, points, crop)
        return appearance, appearance.source

    def motion_from_landmarks(self, points: np.ndarray) -> Motion:
        """Landmarks (478, 3) in crop units -> Motion (pose, dynamics)."""
        canonical, pose, _ = self.model.canonicalize(points)
        return Motion(pose, self.model.encode_dynamics(canonical))

    def appearance_from_landmarks(self, cropped: np.ndarray, points: np.ndarray, crop: FaceCrop) -> Appearance:
        canonical, pose, _ = self.model.canonicalize(points)
        source = Motion(pose, self.model.encode_dynamics(canonical))
        anchors, weights = self._anchors(canonical, pose)
        vertices = np.concatenate([points[WARP_LANDMARKS, :2], geometry.project(anchors, pose)[:, :2],
                                   warp.border_points()])
        oval = points[list(FACE_OVAL), :2]
        texture = MeshTexture(
            warp=warp.build_warp_mesh(vertices, self.grid, oval),
            source_points=points[:, :2].copy(),
            anchors=anchors,
            anchor_weights=weights,
            mouth=mouth.mouth_style(cropped, points[:, :2]),
            irises=eyes.iris_texture(cropped, points[:, :2]),
        )
        return Appearance(cropped, canonical, source, crop, texture)

    def _anchors(self, canonical: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        oval = canonical[list(FACE_OVAL)]
        centre = oval.mean(axis=0)
        mouth_y = canonical[[13, 14], 1].mean()
        points, weights = [], []
        for scale, above, below in ANCHOR_RINGS:
            ring = centre + (oval - centre) * np.array([scale, scale, 1.0])
            ring[:, 2] += 0.1 * (scale - 1)  # a little behind the face outline
            points.append(ring)
            weights.append(np.where(ring[:, 1] < mouth_y, above, below))
        points, weights = np.concatenate(points), np.concatenate(weights)
        xy = geometry.project(points, pose)[:, :2]
        inside = np.all((xy > CROP_MARGIN) & (xy < 1 - CROP_MARGIN), axis=1)
        return points[inside], weights[inside]

    def track(self, frames: Iterable[np.ndarray], progress=None) -> tuple[TrackedVideo, Motion]:
        """Track a video's face (one fixed crop) -> (tracked landmarks, Motion (T,))."""
        tracked = track_video(frames, self.size, progress)
        motions = [self.motion_from_landmarks(p) for p in tracked.landmarks]
        return tracked, Motion.stack(motions)

    # --- decoding --------------------------------------------------------------------------
    def target_points(self, appearance: Appearance, motion: Motion) -> np.ndarray:
        """Where the 478 landmarks land for `motion` (478, 3), crop units."""
        delta = motion.dynamics - appearance.source.dynamics
        canonical = appearance.identity + self.model.decode_dynamics(delta)
        return geometry.project(canonical, motion.pose)

    def decode(self, appearance: Appearance, motion: Motion) -> np.ndarray:
        """Render (S, S, 3) uint8 for one Motion, or (N, S, S, 3) for a batch of N."""
        if motion.batch_shape:
            return np.stack([self.decode(appearance, motion[i]) for i in range(len(motion))])
        if motion.dynamics.shape[-1] != self.model.dim:
            raise VasaError(f"motion has {motion.dynamics.shape[-1]} dynamics coefficients, "
                            f"the face model {self.model.dim}")
        texture: MeshTexture = appearance.texture
        target = self.target_points(appearance, motion)
        face = target[WARP_LANDMARKS]
        source_anchors = geometry.project(texture.anchors, appearance.source.pose)
        moved_anchors = geometry.project(texture.anchors, motion.pose)
        weights = texture.anchor_weights[:, None]
        anchors = source_anchors + weights * (moved_anchors - source_anchors)
        border = warp.border_points()
        positions = np.concatenate([face[:, :2], anchors[:, :2], border])
        depth = np.concatenate([face[:, 2], np.full(len(anchors) + len(border), BACKGROUND_DEPTH)])
        map_x, map_y = warp.backward_map(texture.warp, positions, depth, appearance.size)
        frame = warp.remap(appearance.image, map_x, map_y)
        scale_ratio = motion.pose[5] / appearance.source.pose[5]
        eyes.paint_irises(frame, map_x, map_y, texture.irises, texture.source_points, target[:, :2], scale_ratio)
        return mouth.paint_interior(frame, target[:, :2], texture.mouth)
