"""Known-answer rigid geometry: rotations, Procrustes, projection, relative pose."""

import numpy as np
import pytest

from vasa.face import geometry


def random_angles(rng, count):
    # |yaw| < 90 keeps the Euler decomposition unique; pitch and roll may take any value in (-180, 180).
    return np.c_[rng.uniform(-85, 85, count), rng.uniform(-175, 175, count), rng.uniform(-175, 175, count)]


def random_pose(rng):
    yaw, pitch, roll = random_angles(rng, 1)[0]
    return np.array([yaw, pitch, roll, rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.5)])


def test_rotations_are_orthonormal_with_determinant_one():
    rng = np.random.default_rng(0)
    for angles in random_angles(rng, 50):
        r = geometry.euler_to_matrix(*angles)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-12)


def test_yaw_90_maps_plus_x_to_minus_z():
    np.testing.assert_allclose(geometry.euler_to_matrix(90, 0, 0) @ [1, 0, 0], [0, 0, -1], atol=1e-12)


def test_pitch_and_roll_turn_about_x_and_z():
    np.testing.assert_allclose(geometry.euler_to_matrix(0, 90, 0) @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(geometry.euler_to_matrix(0, 0, 90) @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_euler_round_trip():
    rng = np.random.default_rng(1)
    for angles in random_angles(rng, 50):
        recovered = geometry.matrix_to_euler(geometry.euler_to_matrix(*angles))
        np.testing.assert_allclose(recovered, angles, atol=1e-9)


def test_procrustes_recovers_a_known_similarity():
    rng = np.random.default_rng(2)
    source = rng.normal(size=(40, 3))
    rotation = geometry.euler_to_matrix(*random_angles(rng, 1)[0])
    scale, translation = 2.7, np.array([0.3, -1.2, 5.0])
    target = scale * source @ rotation.T + translation
    s, r, t = geometry.similarity_procrustes(source, target)
    assert s == pytest.approx(scale, rel=1e-10)
    np.testing.assert_allclose(r, rotation, atol=1e-10)
    np.testing.assert_allclose(t, translation, atol=1e-10)


def test_weighted_procrustes_ignores_zero_weight_outliers():
    rng = np.random.default_rng(3)
    source = rng.normal(size=(30, 3))
    rotation = geometry.euler_to_matrix(20, -35, 10)
    target = 0.5 * source @ rotation.T + [1.0, 2.0, 3.0]
    weights = rng.uniform(0.5, 2.0, 30)
    target[:5] += rng.normal(scale=3.0, size=(5, 3))  # outliers...
    weights[:5] = 0.0  # ...that carry no weight
    s, r, t = geometry.similarity_procrustes(source, target, weights)
    assert s == pytest.approx(0.5, rel=1e-10)
    np.testing.assert_allclose(r, rotation, atol=1e-10)
    np.testing.assert_allclose(t, [1.0, 2.0, 3.0], atol=1e-10)


def test_procrustes_returns_a_proper_rotation_for_mirrored_points():
    rng = np.random.default_rng(4)
    source = rng.normal(size=(20, 3))
    mirrored = source * [-1.0, 1.0, 1.0]
    _, r, _ = geometry.similarity_procrustes(source, mirrored)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-12)


def test_unproject_inverts_project():
    rng = np.random.default_rng(5)
    points = rng.normal(size=(100, 3))
    for _ in range(10):
        pose = random_pose(rng)
        np.testing.assert_allclose(geometry.unproject(geometry.project(points, pose), pose), points, atol=1e-10)


def test_project_applies_scale_rotation_and_translation():
    pose = np.array([0.0, 0.0, 90.0, 0.5, 0.25, 2.0])  # roll 90: +x -> +y
    np.testing.assert_allclose(geometry.project(np.array([[1.0, 0.0, 0.0]]), pose), [[0.5, 2.25, 0.0]], atol=1e-12)


def test_relative_pose_with_driver_at_reference_keeps_the_source():
    rng = np.random.default_rng(6)
    source, driver = random_pose(rng), random_pose(rng)
    np.testing.assert_allclose(geometry.compose_relative_pose(source, driver, driver), source, atol=1e-9)


def test_relative_pose_adds_the_driver_turn_to_a_frontal_source():
    source = np.array([0.0, 0.0, 0.0, 0.5, 0.45, 0.3])
    reference = np.array([0.0, 0.0, 0.0, 0.4, 0.5, 0.2])
    driver = reference + [10.0, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(geometry.compose_relative_pose(source, driver, reference),
                               source + [10.0, 0, 0, 0, 0, 0], atol=1e-9)


def test_relative_pose_scales_the_driver_displacement_by_face_size():
    source = np.array([0.0, 0.0, 0.0, 0.5, 0.5, 0.4])
    reference = np.array([0.0, 0.0, 0.0, 0.5, 0.5, 0.2])
    driver = np.array([0.0, 0.0, 0.0, 0.55, 0.5, 0.3])  # moved 0.05 right and grew 1.5x
    composed = geometry.compose_relative_pose(source, driver, reference)
    np.testing.assert_allclose(composed[3:], [0.6, 0.5, 0.6], atol=1e-12)
