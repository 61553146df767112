"""Semantic edits in the mesh latent: turn the head, open the mouth, blink, look somewhere.

Dynamics edits move z along the face model's data-derived directions (E[z | measure]) until the
measured quantity on the resulting canonical shape reaches the requested value.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from vasa.face.mesh.model import EYEBALL_RADIUS
from vasa.latents import Appearance, Motion

ADJUST_STEPS = 4


def turn(motion: Motion, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> Motion:
    """Add angles (degrees) to the head pose."""
    pose = motion.pose.copy()
    pose[..., :3] += np.array([yaw, pitch, roll])
    return motion.replace(pose=pose)


def _canonical(face, appearance: Appearance, dynamics: np.ndarray) -> np.ndarray:
    return appearance.identity + face.model.decode_dynamics(dynamics - appearance.source.dynamics)


def _adjust(face, appearance: Appearance, motion: Motion, direction: np.ndarray,
            measure: Callable[[np.ndarray], float], target: float) -> Motion:
    """Move z along `direction` until measure(canonical) == target (secant steps)."""
    z = motion.dynamics.copy()
    step_gain = 1.0
    for _ in range(ADJUST_STEPS):
        current = measure(_canonical(face, appearance, z))
        error = target - current
        if abs(error) < 1e-5:
            break
        probe = z + direction * error * step_gain
        gained = measure(_canonical(face, appearance, probe)) - current
        if abs(gained) > 1e-9:
            step_gain *= error / gained if abs(error / gained) < 10 else 1.0
        z = z + direction * error * step_gain
    return motion.replace(dynamics=z)


def open_mouth(face, appearance: Appearance, motion: Motion, opening: float) -> Motion:
    """Set the inner-lip gap to `opening` canonical units (0 closed, ~0.2 wide open)."""
    return _adjust(face, appearance, motion, face.model.directions["mouth_open"],
                   lambda c: float(face.model.mouth_opening(c)), opening)


def blink(face, appearance: Appearance, motion: Motion, closure: float = 1.0) -> Motion:
    """Close both eyes by `closure` (1 = lids meet), each eye along its own direction."""
    opening = face.model.eye_opening(_canonical(face, appearance, motion.dynamics))
    for eye, name in enumerate(("eye_open_right", "eye_open_left")):
        motion = _adjust(face, appearance, motion, face.model.directions[name],
                         lambda c, eye=eye: float(face.model.eye_opening(c)[eye]),
                         float(opening[eye]) * (1 - closure))
    return motion


def look(face, appearance: Appearance, motion: Motion, theta: float, phi: float) -> Motion:
    """Turn the eyes to (θ, φ) degrees in the head frame (θ > 0 image right, φ > 0 up).

    The iris offset is linear in z, so both angles are solved together (a 2x2 system along the
    gaze_x / gaze_y directions) rather than one after the other. The lids follow the vertical turn
    (`FaceModel.lids_following_gaze`); they do not move the iris landmarks."""
    model = face.model
    target = model.neutral_gaze + EYEBALL_RADIUS * np.array([np.sin(np.radians(theta)),
                                                               -np.sin(np.radians(phi))])
    directions = np.stack([model.directions["gaze_x"], model.directions["gaze_y"]])  # (2, K)
    offset = lambda z: model.iris_offset(_canonical(face, appearance, z))  # noqa: E731
    current = offset(motion.dynamics)
    jacobian = np.stack([offset(motion.dynamics + d) - current for d in directions], axis=1)  # (2, 2)
    amounts = np.linalg.solve(jacobian, target - current)
    lids = model.lids_following_gaze() * (target - current)[1]  # the lids follow the eyes up or down
    return motion.replace(dynamics=motion.dynamics + amounts @ directions + lids)


def keep_physical(face, appearance: Appearance, motion: Motion) -> Motion:
    """Undo what no face can do: lips pushed past closed, eyelids past shut.

    Relative motion transfer can ask for it (a driver that starts mid-word, then closes its
    mouth); the crossed lips would render as a dark smear."""
    canonical = _canonical(face, appearance, motion.dynamics)
    if face.model.mouth_opening(canonical) < 0:
        motion = open_mouth(face, appearance, motion, 0.0)
    opening = face.model.eye_opening(_canonical(face, appearance, motion.dynamics))
    for eye, name in enumerate(("eye_open_right", "eye_open_left")):
        if opening[eye] < 0:
            motion = _adjust(face, appearance, motion, face.model.directions[name],
                             lambda c, eye=eye: float(face.model.eye_opening(c)[eye]), 0.0)
    return motion
