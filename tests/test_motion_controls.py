"""Post-controls in motion space: known answers, and the causal smoother streams like offline."""

from __future__ import annotations

import numpy as np
import pytest

from vasa.motion.controls import Smoother, scale_expression, scale_head_motion, smooth_zero_phase, still_head


def clip(frames: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((frames, 46))


def test_head_motion_scale():
    frames = clip()
    assert np.allclose(scale_head_motion(frames, 1.0), frames)
    calm = scale_head_motion(frames, 0.0)
    assert np.allclose(calm[:, :6], frames[:, :6].mean(0)) and np.array_equal(calm[:, 6:], frames[:, 6:])
    center = np.arange(6.0)
    double = scale_head_motion(frames, 2.0, center=center)
    assert np.allclose(double[:, :6] - center, 2 * (frames[:, :6] - center))


def test_expression_scale():
    frames = clip()
    neutral = np.linspace(-1, 1, 40)
    assert np.allclose(scale_expression(frames, 1.0, neutral), frames)
    flat = scale_expression(frames, 0.0, neutral)
    assert np.allclose(flat[:, 6:], neutral) and np.array_equal(flat[:, :6], frames[:, :6])
    assert np.allclose(scale_expression(frames, 1.5)[:, 6:], 1.5 * frames[:, 6:])


def test_still_head():
    frames = clip()
    assert np.allclose(still_head(frames)[:, :6], frames[0, :6])
    pose = np.array([10.0, 0, 0, 0.5, 0.5, 3.0])
    still = still_head(frames, pose)
    assert np.allclose(still[:, :6], pose) and np.array_equal(still[:, 6:], frames[:, 6:])


def test_smoother_leaves_a_constant_alone_and_reduces_jitter():
    constant = np.tile(clip(1), (20, 1))
    assert np.allclose(Smoother(pose=0.8, dynamics=0.5).push(constant), constant)
    frames = clip()
    smooth = Smoother(pose=0.8, dynamics=0.0).push(frames)
    assert np.diff(smooth[:, :6], axis=0).std() < 0.5 * np.diff(frames[:, :6], axis=0).std()
    assert np.array_equal(smooth[:, 6:], frames[:, 6:])  # dynamics strength 0: untouched


@pytest.mark.parametrize("chunk", [1, 7, 100])
def test_smoother_streaming_equals_offline(chunk):
    frames = clip(45)
    offline = Smoother(pose=0.6, dynamics=0.3).push(frames)
    smoother = Smoother(pose=0.6, dynamics=0.3)
    streamed = np.concatenate([smoother.push(frames[i:i + chunk]) for i in range(0, len(frames), chunk)])
    assert np.allclose(streamed, offline)


def test_zero_phase_smoothing_has_no_lag():
    t = np.arange(101)
    frames = np.zeros((101, 46))
    frames[:, 0] = np.exp(-0.5 * ((t - 50) / 4.0) ** 2)  # a yaw bump at frame 50
    assert np.argmax(smooth_zero_phase(frames, pose=0.7)[:, 0]) == 50
    assert np.argmax(Smoother(pose=0.7).push(frames)[:, 0]) > 50  # the causal filter lags


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="strength"):
        Smoother(pose=1.0)
    with pytest.raises(ValueError, match="motion frames"):
        scale_head_motion(np.zeros((5, 6)), 1.0)
