"""The mesh face latent: explicit 3D landmark geometry behind the `Appearance`/`Motion` interface.

encode: image -> aligned crop, 478 landmarks -> (canonical identity shape, pose, dynamics).
decode: identity + dynamics basis * (z - z_source) -> canonical shape -> posed -> vertex motion
-> dense backward warp of the portrait (`vasa.face.mesh.warp`) -> irises slid rigidly under the lids
(`vasa.face.mesh.eyes`) -> mouth interior where the lips part wider than in the portrait
(`vasa.face.mesh.mouth`), and the line between lips or lids where they meet over what the warp squeezed
between them (`vasa.face.mesh.seams`). Eyelids close because the lid vertices meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import cv2
import numpy as np

from vasa.errors import VasaError
from vasa.face import geometry
from vasa.face.landmarker import LandmarkDetector
from vasa.face.landmarks import FaceCrop, TrackedVideo, locate_portrait, track_video
from vasa.face.mesh import edits, eyes, mouth, warp
from vasa.face.mesh.model import INNER_LIPS_LOWER, INNER_LIPS_UPPER, FaceModel
from vasa.face.mesh.space import MeshMotionSpace
from vasa.latents import Appearance, Eyelids, Motion
from vasa.media import read_image

DEFAULT_SIZE = 512
FIELD_GRID = 256  # warp map resolution; 2 output pixels per cell at 512
NUM_MESH = 468
WARP_LANDMARKS = np.arange(NUM_MESH)  # irises are not warped: `eyes.paint_irises` moves them rigidly
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
# Anchor rings: the face outline as the camera sees it, scaled about its centre (scale, weight
# above the mouth, weight below it). The inner ring moves with the outline (hair, ears), the outer
# one partly (hair ends, neck, shoulders). Built in 2D from the projected outline, a ring can never
# be overtaken by the outline it follows, so turned heads do not tear at the silhouette.
ANCHOR_RINGS = ((1.25, 1.0, 0.85), (1.7, 0.55, 0.2))
CROP_MARGIN = 0.01
BACKGROUND_DEPTH = 10.0  # anchors and border lie behind every face vertex
# A closed mouth's inner-lip landmarks lie on one seam, often crossed by a fraction of a pixel; warp
# triangles joining the two lips across it then turn over as the mouth opens and fold the lip (a small
# dark loop under the teeth). The warp mesh's source holds the lips at least this far apart.
SEAM_GAP_PX = 1.0


@dataclass(frozen=True)
class MeshTexture:
    """The mesh backend's per-portrait render structure (its stand-in for V_app)."""

    warp: warp.WarpMesh
    source_points: np.ndarray  # (478, 2) the portrait's landmarks, crop units
    mesh_points: np.ndarray  # (478, 2) the same with the outline on the silhouette (`_on_silhouette`)
    anchor_outline: np.ndarray  # (A,) which FACE_OVAL point each kept anchor follows
    anchor_scales: np.ndarray  # (A,) its distance from the outline centre, in outline radii
    anchor_weights: np.ndarray  # (A,) how much of the outline's motion it takes
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

    # --- what the face model knows of the latent (`vasa.latents.FaceBackend`) --------------------------
    @cached_property
    def space(self) -> MeshMotionSpace:
        """The mesh latent's own relative-motion space: resting mouth, straight eyes, lids following gaze."""
        return MeshMotionSpace(self.model)

    @property
    def mouth_mask(self) -> np.ndarray:
        return self.model.group_mask("mouth")

    @cached_property
    def eyelids(self) -> Eyelids:
        model = self.model
        jacobian = np.stack([model.eye_opening(component) for component in model.basis], axis=1)  # (2, K), linear
        directions = np.stack([model.directions["eye_open_right"], model.directions["eye_open_left"]])
        return Eyelids(jacobian, directions, model.eye_opening)

    def gaze(self, appearance: Appearance) -> tuple[float, float]:
        gaze = self.model.eye_gaze(appearance.identity)
        return float(gaze[0]), float(gaze[1])

    def with_expression(self, appearance: Appearance, weights: np.ndarray) -> Appearance:
        """The portrait's canonical shape moved by the expression (`vasa.face.mesh.expressions`)."""
        if not np.asarray(weights).any():
            return appearance
        from vasa.face.mesh.expressions import with_expression

        return with_expression(appearance, self.model, weights)

    def keep_physical(self, appearance: Appearance, motion: Motion) -> Motion:
        return edits.keep_physical(self, appearance, motion)

    # --- encoding --------------------------------------------------------------------------
    def encode(self, image) -> tuple[Appearance, Motion]:
        """A portrait (path or RGB array, any size) -> (Appearance, its Motion).

        `appearance.crop` says where the aligned crop sits in the image (`FaceCrop.paste`)."""
        rgb = read_image(image)
        with LandmarkDetector() as detector:
            crop = locate_portrait(rgb, self.size, detector)
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
        mesh_points = _part_lips(_on_silhouette(points)[:, :2], SEAM_GAP_PX / self.size)
        outline, scales, weights = _anchors(mesh_points, canonical)
        anchors = _ring(mesh_points, outline, scales)
        vertices = np.concatenate([mesh_points[WARP_LANDMARKS], anchors, warp.border_points()])
        oval = points[list(FACE_OVAL), :2]
        texture = MeshTexture(
            warp=warp.build_warp_mesh(vertices, self.grid, oval, np.asarray(FACE_OVAL)),
            source_points=points[:, :2].copy(),
            mesh_points=mesh_points,
            anchor_outline=outline,
            anchor_scales=scales,
            anchor_weights=weights,
            mouth=mouth.mouth_style(cropped, points[:, :2]),
            irises=eyes.iris_texture(cropped, points[:, :2]),
        )
        return Appearance(cropped, canonical, source, crop, texture)

    def track(self, frames: Iterable[np.ndarray], progress=None) -> tuple[TrackedVideo, Motion]:
        """Track a video's face (one fixed crop) -> (tracked landmarks, Motion (T,))."""
        tracked = track_video(frames, self.size, progress)
        motions = [self.motion_from_landmarks(p) for p in tracked.landmarks]
        return tracked, Motion.stack(motions)

    # --- decoding --------------------------------------------------------------------------
    def target_points(self, appearance: Appearance, motion: Motion) -> np.ndarray:
        """Where the 478 landmarks land for `motion` (478, 3), crop units: what the tracker should
        read off the render."""
        return geometry.project(self._canonical(appearance, motion), motion.pose)

    def _canonical(self, appearance: Appearance, motion: Motion) -> np.ndarray:
        delta = motion.dynamics - appearance.source.dynamics
        return appearance.identity + self.model.decode_dynamics(delta)

    def _warp_targets(self, appearance: Appearance, motion: Motion) -> np.ndarray:
        """Where the renderer moves the landmarks (478, 3): `target_points` with the irises moved as
        far as the tracker under-reads eye rotation (`FaceModel.painted_irises`) and the face outline
        put on the silhouette (`_on_silhouette`), as it is in the warp mesh's source."""
        canonical = self.model.painted_irises(self._canonical(appearance, motion), appearance.identity)
        return _on_silhouette(geometry.project(canonical, motion.pose))

    def decode(self, appearance: Appearance, motion: Motion) -> np.ndarray:
        """Render (S, S, 3) uint8 for one Motion, or (N, S, S, 3) for a batch of N."""
        if motion.batch_shape:
            return np.stack([self.decode(appearance, motion[i]) for i in range(len(motion))])
        if motion.dynamics.shape[-1] != self.model.dim:
            raise VasaError(f"motion has {motion.dynamics.shape[-1]} dynamics coefficients, "
                            f"the face model {self.model.dim}")
        texture: MeshTexture = appearance.texture
        target = self._warp_targets(appearance, motion)
        face = target[WARP_LANDMARKS]
        source_anchors = _ring(texture.mesh_points, texture.anchor_outline, texture.anchor_scales)
        moved_anchors = _ring(target[:, :2], texture.anchor_outline, texture.anchor_scales)
        anchors = source_anchors + texture.anchor_weights[:, None] * (moved_anchors - source_anchors)
        border = warp.border_points()
        lips_apart = _part_lips(face[:, :2], SEAM_GAP_PX / appearance.size)  # as the mesh's source was made
        positions = np.concatenate([lips_apart, anchors, border])
        depth = np.concatenate([face[:, 2], np.full(len(anchors) + len(border), BACKGROUND_DEPTH)])
        map_x, map_y = warp.backward_map(texture.warp, positions, depth, appearance.size)
        frame = warp.remap(appearance.image, map_x, map_y)
        scale_ratio = motion.pose[5] / appearance.source.pose[5]
        eyes.paint_irises(frame, map_x, map_y, texture.irises, texture.source_points, target[:, :2], scale_ratio)
        eyes.paint_closing_lids(frame, texture.irises, target[:, :2])
        return mouth.paint_interior(frame, target[:, :2], texture.mouth)


def _part_lips(points: np.ndarray, gap: float) -> np.ndarray:
    """Points (N, 2) with each inner-lip pair (upper, the lower one facing it) at least `gap` apart in y:
    both move half of what is missing, away from each other."""
    out = points.copy()
    upper = list(INNER_LIPS_UPPER[1:-1])  # the corners are shared
    lower = list(INNER_LIPS_LOWER[1:-1])[::-1]  # the lower lip runs right to left
    missing = np.maximum(gap - (out[lower, 1] - out[upper, 1]), 0.0)
    out[upper, 1] -= missing / 2
    out[lower, 1] += missing / 2
    return out


def _anchors(points: np.ndarray, canonical: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anchor ring layout for a portrait: (outline index, scale, weight) of every anchor kept
    (anchors that fall outside the crop are dropped; the crop border holds that region)."""
    mouth_y = canonical[[13, 14], 1].mean()
    below = canonical[list(FACE_OVAL), 1] > mouth_y
    outline, scales, weights = [], [], []
    for scale, above_weight, below_weight in ANCHOR_RINGS:
        outline.append(np.arange(len(FACE_OVAL)))
        scales.append(np.full(len(FACE_OVAL), scale))
        weights.append(np.where(below, below_weight, above_weight))
    outline, scales, weights = (np.concatenate(v) for v in (outline, scales, weights))
    xy = _ring(points, outline, scales)
    inside = np.all((xy > CROP_MARGIN) & (xy < 1 - CROP_MARGIN), axis=1)
    return outline[inside], scales[inside], weights[inside]


def _ring(points: np.ndarray, outline: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Anchor positions (A, 2): face-outline points pushed out from the outline's centre."""
    oval = points[list(FACE_OVAL), :2]
    centre = oval.mean(axis=0)
    return centre + (oval[outline] - centre) * scales[:, None]


def _on_silhouette(points: np.ndarray) -> np.ndarray:
    """Landmarks (478, 3) with the face-outline points moved out onto the silhouette.

    In a turned head the far outline lies behind the cheek (inside the face's 2D hull). The warp
    mesh must be built on what the camera sees, or turning the head back would open the fold
    and show background through a saw-tooth edge: so in the source and in every target the
    outline points that fall inside the hull of the face are pushed out to it."""
    points = np.array(points, dtype=np.float64)
    oval = np.asarray(FACE_OVAL)
    points[oval, :2] = _onto_silhouette(points[:NUM_MESH, :2], oval)
    return points


def _onto_silhouette(points: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """Outline points (of `points` (N, 2)) that lie inside the convex hull of all points, moved
    along the ray from the outline's centre out to the hull. Returns the new outline (O, 2)."""
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    centre = points[outline].mean(axis=0)
    starts, ends = hull, np.roll(hull, -1, axis=0)
    result = points[outline].copy()
    for k, point in enumerate(points[outline]):
        if cv2.pointPolygonTest(hull.astype(np.float32), (float(point[0]), float(point[1])), True) <= 1e-4:
            continue  # already on the silhouette
        direction = point - centre
        edge = ends - starts
        # Solve centre + t * direction = start + u * edge for every hull edge.
        det = direction[0] * edge[:, 1] - direction[1] * edge[:, 0]
        offset = starts - centre
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (offset[:, 0] * edge[:, 1] - offset[:, 1] * edge[:, 0]) / det
            u = (offset[:, 0] * direction[1] - offset[:, 1] * direction[0]) / det
        hits = t[(np.abs(det) > 1e-12) & (u >= -1e-9) & (u <= 1 + 1e-9) & (t > 0)]
        if len(hits):
            result[k] = centre + hits.min() * direction
    return result
