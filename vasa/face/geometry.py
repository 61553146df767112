"""Rigid geometry of the face: rotations, similarity Procrustes, weak-perspective pose, gaze.

Frames and units
----------------
* Image frame: x to the right, y down, z away from the camera (mediapipe's convention), in units
  of the crop side (a point at the crop's bottom-right corner has x = y = 1).
* Canonical frame: the same axes for a face looking straight at the camera, centred on the
  canonical mean shape, in units where the outer eye corners are 1 apart.
* A pose maps canonical to image: ``image = scale * R @ canonical + [tx, ty, tz]`` and the
  camera sees (x, y) of it (weak perspective; mediapipe's landmarks are weak-perspective too).
* ``R = R_z(roll) @ R_y(yaw) @ R_x(pitch)`` with angles in degrees. The face looks along -z, so a
  positive yaw turns it toward the image's left, a positive pitch tilts it down (chin in) and a
  positive roll turns it clockwise on screen (y is down). A test pins that a 90° yaw maps +x to -z.
"""

from __future__ import annotations

import numpy as np

# Pose vector layout, shared by `Motion.pose`: angles in degrees, translation in crop units.
POSE_FIELDS = ("yaw", "pitch", "roll", "tx", "ty", "scale")


def rotation_x(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_y(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_z(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = R_z(roll) R_y(yaw) R_x(pitch), degrees -> (3, 3) rotation."""
    return rotation_z(roll) @ rotation_y(yaw) @ rotation_x(pitch)


def matrix_to_euler(rotation: np.ndarray) -> tuple[float, float, float]:
    """Inverse of `euler_to_matrix` for |yaw| < 90°: (yaw, pitch, roll) in degrees."""
    r = np.asarray(rotation, dtype=np.float64)
    yaw = np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return float(yaw), float(pitch), float(roll)


def similarity_procrustes(
    source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama 1991): target ≈ scale * R @ source + translation.

    source, target: (N, 3). Returns (scale, R (3, 3) proper rotation, translation (3,)).
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    w = np.ones(len(source)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mean_s = w @ source
    mean_t = w @ target
    cs = source - mean_s
    ct = target - mean_t
    covariance = (ct * w[:, None]).T @ cs  # (3, 3)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = (u * sign) @ vt
    variance_s = float(w @ (cs**2).sum(axis=1))
    scale = float((singular * sign).sum() / variance_s)
    translation = mean_t - scale * rotation @ mean_s
    return scale, rotation, translation


def pose_to_rt(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Pose vector (yaw, pitch, roll, tx, ty, scale) -> (R, translation (2,), scale)."""
    yaw, pitch, roll, tx, ty, scale = (float(v) for v in pose)
    return euler_to_matrix(yaw, pitch, roll), np.array([tx, ty]), scale


def rt_to_pose(rotation: np.ndarray, translation: np.ndarray, scale: float) -> np.ndarray:
    yaw, pitch, roll = matrix_to_euler(rotation)
    return np.array([yaw, pitch, roll, translation[0], translation[1], scale], dtype=np.float64)


def project(canonical: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Canonical points (N, 3) under a pose -> image points (N, 3) (z kept for ordering)."""
    rotation, translation, scale = pose_to_rt(pose)
    points = scale * canonical @ rotation.T
    points[:, :2] += translation
    return points


def unproject(image_points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Image points (N, 3) -> canonical (N, 3); the exact inverse of `project` given the same z."""
    rotation, translation, scale = pose_to_rt(pose)
    points = np.array(image_points, dtype=np.float64)
    points[:, :2] -= translation
    return points @ rotation / scale


def estimate_pose(
    image_points: np.ndarray, canonical_mean: np.ndarray, rigid_indices: np.ndarray
) -> np.ndarray:
    """Pose that best maps the canonical mean's rigid points onto the observed ones.

    Observed z is relative (mediapipe centres it on the face), so the pose keeps only (tx, ty);
    `depth_offset` gives the z shift that makes unprojection exact.
    """
    scale, rotation, translation = similarity_procrustes(
        canonical_mean[rigid_indices], image_points[rigid_indices]
    )
    return rt_to_pose(rotation, translation, scale)


def depth_offset(image_points: np.ndarray, canonical_mean: np.ndarray, pose: np.ndarray,
                 rigid_indices: np.ndarray) -> float:
    """The z translation that `project` leaves out, so that unprojection is exact in z too."""
    projected = project(canonical_mean[rigid_indices], pose)
    return float(np.mean(image_points[rigid_indices, 2] - projected[:, 2]))


def compose_relative_pose(source: np.ndarray, driver: np.ndarray, driver_reference: np.ndarray) -> np.ndarray:
    """Apply the driver's motion since its reference frame to the source pose.

    Rotation: R = R_drv R_ref^T R_src. Translation moves by the driver's displacement, scaled by
    the ratio of face sizes; scale multiplies by the driver's relative scale.
    """
    r_src, t_src, s_src = pose_to_rt(source)
    r_drv, t_drv, s_drv = pose_to_rt(driver)
    r_ref, t_ref, s_ref = pose_to_rt(driver_reference)
    rotation = r_drv @ r_ref.T @ r_src
    translation = t_src + (t_drv - t_ref) * (s_src / s_ref)
    scale = s_src * s_drv / s_ref
    return rt_to_pose(rotation, translation, scale)
