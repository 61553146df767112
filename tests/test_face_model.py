"""The shipped face model: its shape, its provenance, and exact encode/decode of dynamics and pose."""

import numpy as np
import pytest

from vasa.errors import VasaError
from vasa.face import geometry
from vasa.face.landmarker import NUM_LANDMARKS
from vasa.face.mesh.model import LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS, FaceModel


@pytest.fixture(scope="module")
def model():
    return FaceModel.load()


def test_model_dimensions(model):
    assert model.mean_shape.shape == (NUM_LANDMARKS, 3)
    assert model.basis.ndim == 3 and model.basis.shape[1:] == (NUM_LANDMARKS, 3)
    assert 32 <= model.dim <= 64
    assert len(model.groups) == model.dim
    assert np.isfinite(model.basis).all() and np.isfinite(model.mean_shape).all()


def test_groups_cover_mouth_eyes_iris_and_brows(model):
    assert {"mouth", "eyes", "iris", "brows"} <= set(model.groups)


def test_rigid_points_are_distinct_landmarks(model):
    rigid = model.rigid_indices
    assert len(rigid) >= 10 and len(np.unique(rigid)) == len(rigid)
    assert rigid.min() >= 0 and rigid.max() < NUM_LANDMARKS


def test_edit_directions_have_one_coefficient_per_component(model):
    # Every direction `vasa.face.mesh.edits` moves along must ship with the model.
    for name in ("mouth_open", "eye_open_right", "eye_open_left", "gaze_x", "gaze_y"):
        assert model.directions[name].shape == (model.dim,)


def test_mean_shape_is_in_canonical_units(model):
    # Outer eye corners 1 apart, on the x axis (face looking at the camera), rigid points centred.
    right, left = model.mean_shape[RIGHT_EYE_CORNERS[0]], model.mean_shape[LEFT_EYE_CORNERS[0]]
    np.testing.assert_allclose(left - right, [1.0, 0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(model.mean_shape[model.rigid_indices].mean(axis=0), 0.0, atol=1e-5)


def test_provenance_records_its_sources(model):
    provenance = model.provenance
    assert provenance["sources"], "no source videos recorded"
    for source in provenance["sources"]:
        assert source["file"] and source["frames"] > 0
    assert sum(s["frames"] for s in provenance["sources"]) == provenance["statistics"]["frames"]
    counts = {name: model.groups.count(name) for name in set(model.groups)}
    assert provenance["components"] == counts


def test_dynamics_round_trip(model):
    rng = np.random.default_rng(0)
    z = rng.normal(scale=0.5, size=(8, model.dim))
    shapes = model.mean_shape + model.decode_dynamics(z)  # (8, 478, 3)
    np.testing.assert_allclose(model.encode_dynamics(shapes), z, atol=1e-3 * np.abs(z).max())


def test_mean_shape_has_zero_dynamics(model):
    np.testing.assert_allclose(model.encode_dynamics(model.mean_shape), 0.0, atol=1e-12)


@pytest.mark.parametrize("pose", [
    (0.0, 0.0, 0.0, 0.5, 0.5, 0.3),
    (25.0, -12.0, 8.0, 0.45, 0.55, 0.25),
    (-40.0, 20.0, -15.0, 0.6, 0.4, 0.35),
])
def test_canonicalize_recovers_a_known_pose(model, pose):
    points = geometry.project(model.mean_shape, np.array(pose))
    points[:, 2] += 0.7  # an unknown depth offset, as mediapipe's relative z has
    canonical, recovered, depth = model.canonicalize(points)
    np.testing.assert_allclose(recovered[:3], pose[:3], atol=0.5)
    np.testing.assert_allclose(recovered[3:], pose[3:], atol=1e-6)
    np.testing.assert_allclose(canonical, model.mean_shape, atol=1e-6)
    assert depth == pytest.approx(0.7, abs=1e-6)


def test_canonical_shape_does_not_depend_on_the_pose_it_was_seen_in(model):
    # Procrustes is equivariant: an expressive shape seen under any pose canonicalizes to the
    # same shape (and dynamics) as when seen frontally, even though the expression moves rigid points.
    rng = np.random.default_rng(1)
    shape = model.mean_shape + model.decode_dynamics(rng.normal(scale=0.5, size=model.dim))
    frontal, _, _ = model.canonicalize(shape)
    for pose in ([15.0, 5.0, -5.0, 0.5, 0.5, 0.3], [-30.0, -10.0, 12.0, 0.4, 0.6, 0.2]):
        canonical, _, _ = model.canonicalize(geometry.project(shape, np.array(pose)))
        np.testing.assert_allclose(canonical, frontal, atol=1e-9)


def test_measures_on_the_mean_shape(model):
    assert float(model.mouth_opening(model.mean_shape)) >= -0.01  # neutral lips are closed, not crossed
    assert (model.eye_opening(model.mean_shape) > 0.03).all()  # neutral eyes are open
    np.testing.assert_allclose(model.eye_gaze(model.mean_shape), 0.0, atol=5.0)  # looking ahead


def test_save_load_round_trip(model, tmp_path):
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = FaceModel.load(path)
    np.testing.assert_allclose(loaded.basis, model.basis, atol=1e-6)
    np.testing.assert_allclose(loaded.mean_shape, model.mean_shape, atol=1e-6)
    np.testing.assert_array_equal(loaded.rigid_indices, model.rigid_indices)
    assert loaded.groups == model.groups and loaded.provenance == model.provenance
    assert loaded.directions.keys() == model.directions.keys()


def test_missing_model_file_raises(tmp_path):
    with pytest.raises(VasaError, match="not found"):
        FaceModel.load(tmp_path / "missing.npz")


def test_lids_follow_vertical_gaze_by_the_measured_coupling(model):
    """One canonical unit of iris travel down moves the mid upper lid ~UPPER_LID_PER_IRIS down and the
    lower lid ~LOWER_LID_PER_IRIS; the eye-in-head gaze does not change (the gaze directions do that)."""
    from vasa.face.mesh.model import LEFT_EYE_LIDS, LOWER_LID_PER_IRIS, RIGHT_EYE_LIDS, UPPER_LID_PER_IRIS

    z = model.lids_following_gaze()
    assert np.all(z[~(model.group_mask("eyes") | model.group_mask("iris"))] == 0)
    moved = model.decode_dynamics(z)  # (478, 3) per unit of iris travel along +y
    np.testing.assert_allclose(model.eye_gaze(model.mean_shape + 0.02 * moved), model.eye_gaze(model.mean_shape),
                               atol=1e-6)
    upper = moved[[RIGHT_EYE_LIDS[0], LEFT_EYE_LIDS[0]], 1]
    lower = moved[[RIGHT_EYE_LIDS[1], LEFT_EYE_LIDS[1]], 1]
    np.testing.assert_allclose(upper, UPPER_LID_PER_IRIS, rtol=0.1)
    np.testing.assert_allclose(lower, LOWER_LID_PER_IRIS, rtol=0.25)
    assert np.all(model.eye_opening(model.mean_shape + 0.01 * moved) < model.eye_opening(model.mean_shape))


def test_painted_irises_divide_the_iris_move_by_the_tracker_gain(model):
    from vasa.face.mesh.model import GAZE_READ_GAIN, LEFT_IRIS, RIGHT_IRIS

    reference = model.mean_shape
    looked = reference.copy()
    looked[list(RIGHT_IRIS) + list(LEFT_IRIS), :2] += [0.01, -0.02]
    painted = model.painted_irises(looked, reference)
    np.testing.assert_allclose(model.iris_offset(painted) - model.iris_offset(reference),
                               np.array([0.01, -0.02]) / np.array(GAZE_READ_GAIN), atol=1e-12)
    irises = np.zeros(len(reference), bool)
    irises[list(RIGHT_IRIS) + list(LEFT_IRIS)] = True
    np.testing.assert_array_equal(painted[~irises], looked[~irises])  # only the irises move
    np.testing.assert_allclose(model.painted_irises(reference, reference), reference)  # nothing asked, nothing moved
