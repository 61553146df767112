"""Known-answer tests of the landmark metrics (`vasa.metrics.landmarks`)."""

import numpy as np
import pytest

from vasa.face import geometry
from vasa.face.mesh import edits
from vasa.face.mesh.model import FaceModel
from vasa.metrics import landmarks
from vasa.metrics.landmarks import Track


@pytest.fixture(scope="module")
def model() -> FaceModel:
    return FaceModel.load()


def synthetic_track(model: FaceModel, poses: np.ndarray) -> Track:
    """The mean face projected under known poses, read back by canonicalize."""
    points = np.stack([geometry.project(model.mean_shape, p) for p in poses])  # (T, 478, 3)
    return landmarks.canonical_track(model, points, np.ones(len(poses), bool))


def test_known_pose_sequence_round_trips_and_gives_its_pose_variation(model):
    t = np.arange(40)
    poses = np.zeros((40, 6))
    poses[:, 0] = 10 * np.sin(t / 5)  # yaw, degrees
    poses[:, 1] = 4 * np.cos(t / 7)
    poses[:, 2] = 0.1 * t
    poses[:, 3:5] = 0.5
    poses[:, 5] = 0.3
    track = synthetic_track(model, poses)
    np.testing.assert_allclose(track.pose[:, :3], poses[:, :3], atol=1e-6)
    np.testing.assert_allclose(track.pose[:, 5], poses[:, 5], rtol=1e-6)
    expected = np.abs(np.diff(poses[:, :3], axis=0)).mean()
    assert landmarks.pose_variation(track.pose, track.found) == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(track.canonical, np.broadcast_to(model.mean_shape, track.canonical.shape), atol=1e-9)


def test_constant_pose_has_zero_variation_and_zero_jitter(model):
    track = synthetic_track(model, np.tile([5.0, -3.0, 2.0, 0.5, 0.5, 0.3], (20, 1)))
    assert landmarks.pose_variation(track.pose) == pytest.approx(0.0, abs=1e-9)
    assert landmarks.jitter(track.canonical) == pytest.approx(0.0, abs=1e-9)


def test_pose_variation_skips_steps_without_a_face():
    pose = np.zeros((5, 6))
    pose[2, 0] = 90.0  # a tracking failure
    found = np.array([True, True, False, True, True])
    assert landmarks.pose_variation(pose, found) == 0.0
    assert landmarks.pose_variation(pose) > 0.0


def test_jitter_is_zero_for_uniform_motion_and_grows_with_noise(model):
    drift = np.linspace(0, 0.1, 30)[:, None, None] * np.array([1.0, 0.5, 0.0])
    moving = model.mean_shape[None] + drift  # constant velocity: no acceleration
    assert landmarks.jitter(moving) == pytest.approx(0.0, abs=1e-12)
    noisy = moving + np.random.default_rng(0).normal(0, 0.01, moving.shape)
    assert landmarks.jitter(noisy) > 0.01


def test_identical_clips_have_zero_lip_distance_and_mouth_r_one(model):
    rng = np.random.default_rng(1)
    canonical = model.mean_shape[None] + rng.normal(0, 0.01, (30, 478, 3))
    track = Track(canonical, np.zeros((30, 6)), np.ones(30, bool))
    figures = landmarks.compare(track, track)
    assert figures["lip_distance_centred"] == pytest.approx(0.0, abs=1e-12)
    assert figures["lip_distance_raw"] == pytest.approx(0.0, abs=1e-12)
    assert figures["mouth_correlation"] == pytest.approx(1.0)
    assert figures["mouth_lag_frames"] == 0 and figures["mouth_correlation_best_lag"] == pytest.approx(1.0)
    other = Track(canonical[::-1].copy(), np.zeros((30, 6)), np.ones(30, bool))
    assert landmarks.compare(other, track)["lip_distance_centred"] > 0.005


def test_compare_finds_a_generated_mouth_that_moves_early(model):
    rng = np.random.default_rng(2)
    canonical = model.mean_shape[None] + rng.normal(0, 0.01, (60, 478, 3))
    found = np.ones(60, bool)
    found[[10, 40]] = False  # frames without a face are left out, not compared
    real = Track(canonical[:-2], np.zeros((58, 6)), found[:-2])
    early = Track(canonical[2:], np.zeros((58, 6)), found[2:])  # frame t shows the real frame t + 2
    figures = landmarks.compare(early, real)
    assert figures["mouth_lag_frames"] == 2 and figures["mouth_correlation_best_lag"] == pytest.approx(1.0)
    assert figures["mouth_correlation"] < 0.5
    curve = landmarks.lagged_correlation(np.arange(10.0), np.arange(10.0), 3, valid=np.arange(10) != 4)
    assert curve.shape == (7,) and np.allclose(curve, 1.0)


def test_blink_counter_known_answer():
    signal = np.full(200, 0.3)
    for start, length in ((10, 1), (30, 4), (60, 10), (100, 11)):  # 11 frames: eyes closed, not a blink
        signal[start:start + length] = 0.05
    signal[150:153] = 0.55 * 0.3  # not deep enough
    assert landmarks.count_blinks(signal) == 3
    assert landmarks.count_blinks(np.full(50, 0.3)) == 0
    assert landmarks.count_blinks(np.r_[0.05, np.full(50, 0.3), 0.05]) == 2


def test_distance_error_reads_a_smaller_face_as_farther():
    portrait = np.array([0, 0, 0, 0.5, 0.5, 0.4])
    pose = np.tile(portrait, (10, 1))
    pose[:, 5] = 0.4 / 1.25  # the face 1.25 x smaller
    error, measured = landmarks.distance_error(Track(np.zeros((10, 478, 3)), pose, np.ones(10, bool)), portrait, 1.25)
    assert measured == pytest.approx(1.25) and error == pytest.approx(0.0, abs=1e-12)


def test_rendered_head_turns_round_trip_through_pixels(face, encoded):
    """Frames rendered at known yaw offsets, re-extracted: the measured yaw follows the requested one (the
    2D warp of a photo shows a turn smaller than asked: a gain below 1 is the renderer's, not the metric's)."""
    appearance, source = encoded
    yaws = np.array([0.0, 6.0, 12.0, 6.0, 0.0])
    frames = [face.decode(appearance, edits.turn(source, yaw=y)) for y in yaws]
    track = landmarks.measure_crops(face.model, frames)
    assert track.found.all()
    measured = track.pose[:, 0] - track.pose[0, 0]
    gain = measured[2] / yaws[2]
    assert 0.4 < gain < 1.2
    # a pose reads the same however it was reached (no hysteresis: each frame is read on its own) ...
    assert abs(measured[1] - measured[3]) < 0.1 and abs(measured[4]) < 0.1
    # ... and half the turn reads about half as far (the warp's gain falls a little with the angle: 0.55-0.58
    # of the full turn with OpenCV 4.14 / 5.1)
    assert 0.45 < measured[1] / measured[2] < 0.65
    # ΔP averages the three angles: a yaw-only turn counts a third
    assert landmarks.pose_variation(track.pose) == pytest.approx(gain * np.abs(np.diff(yaws)).mean() / 3, abs=0.3)
