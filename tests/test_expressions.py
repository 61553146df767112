"""Emotional expressions of the mesh face (`vasa.face.mesh.expressions`): FACS prototypes as landmark
displacements, linear in their weights, irises left alone, and read by the packaged FER classifier."""

from __future__ import annotations

import numpy as np
import pytest

from vasa.metrics.emotion import EmotionClassifier, face_box_crop
from vasa.latents import EMOTION_NAMES
from vasa.face.mesh.expressions import IRISES, PROTOTYPES, expression_displacement, with_expression
from vasa.face.mesh.model import FaceModel, MOUTH_CORNERS


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return FaceModel.load()


def weights(**named: float) -> np.ndarray:
    return np.array([named.get(name, 0.0) for name in EMOTION_NAMES])


def test_neutral_is_no_change_and_weights_add_linearly(model):
    assert not expression_displacement(model, weights(neutral=1.0)).any()
    happy, sad = (expression_displacement(model, weights(**{name: 1.0})) for name in ("happy", "sad"))
    assert np.allclose(expression_displacement(model, weights(happy=0.5, sad=2.0)), 0.5 * happy + 2.0 * sad)
    for name in EMOTION_NAMES[1:]:
        moved = expression_displacement(model, weights(**{name: 1.0}))
        assert np.abs(moved).max() > 0.02 and not moved[list(IRISES)].any()  # gaze is the motion's
    with pytest.raises(ValueError, match="7 emotion weights"):
        expression_displacement(model, np.ones(3))


@pytest.mark.parametrize("name, corners_up, corners_out", [("happy", True, True), ("sad", False, None),
                                                           ("fear", None, True), ("anger", None, False)])
def test_lip_corners_move_as_the_action_units_say(model, name, corners_up, corners_out):
    """AU12 (happy) pulls the corners up and out, AU15 (sad) down, AU20 (fear) sideways, AU23 (anger) in;
    mirrored, so both sides move alike."""
    moved = expression_displacement(model, weights(**{name: 1.0}))[list(MOUTH_CORNERS)]  # (right, left)
    outward = np.array([-moved[0, 0], moved[1, 0]])  # the right corner goes out toward -x
    assert np.allclose(outward[0], outward[1], atol=1e-3) and np.allclose(moved[0, 1], moved[1, 1], atol=1e-3)
    if corners_up is not None:
        assert (moved[:, 1] < -0.03).all() if corners_up else (moved[:, 1] > 0.03).all()  # y runs down
    if corners_out is not None:
        assert (outward > 0.02).all() if corners_out else (outward < -0.01).all()


def test_brows_rise_for_surprise_and_fall_for_anger(model):
    brows = [105, 334]
    assert (expression_displacement(model, weights(surprise=1.0))[brows, 1] < -0.08).all()
    assert (expression_displacement(model, weights(anger=1.0))[[107, 336], 1] > 0.04).all()


def test_every_prototype_names_known_landmarks(model):
    for actions in PROTOTYPES.values():
        for action in actions:
            assert all(0 <= anchor < len(model.mean_shape) for anchor in action.anchors) and action.radius > 0


@pytest.mark.parametrize("name", ["happy", "sad"])
def test_fer_reads_the_requested_emotion_on_a_rendered_portrait(face, grace_hopper, detector, name):
    """Grace Hopper's portrait reads as neutral to FER (~0.9); with the expression the requested class
    gains clearly (measured 0.00 -> 0.62 happy, 0.03 -> 0.16 sad at 256 px)."""
    appearance, motion = face.encode(grace_hopper)
    classifier, k = EmotionClassifier(), EMOTION_NAMES.index(name)

    def probability(frame: np.ndarray) -> float:
        points = detector.landmarks(frame)[:, :2] * np.array([frame.shape[1], frame.shape[0]])
        return float(classifier.probabilities(face_box_crop(frame, points))[0, k])

    plain = probability(face.decode(appearance, motion))
    expressive = probability(face.decode(with_expression(appearance, face.model, weights(**{name: 1.0})), motion))
    assert expressive > plain + 0.1
