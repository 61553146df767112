"""Post-controls in motion space: known answers, and the causal smoother streams like offline."""

from __future__ import annotations

import numpy as np
import pytest

from vasa.motion.controls import BLINK_PROFILE, Blinks, Smoother, scale_expression, scale_head_motion, still_head


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
    assert np.allclose(still_head(frames)[:, :5], frames[0, :5])
    pose = np.array([10.0, 0, 0, 0.5, 0.5, 3.0])
    still = still_head(frames, pose)
    assert np.allclose(still[:, :5], pose[:5]) and np.array_equal(still[:, 5:], frames[:, 5:])  # scale: distance's


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


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="strength"):
        Smoother(pose=1.0)
    with pytest.raises(ValueError, match="motion frames"):
        scale_head_motion(np.zeros((5, 6)), 1.0)


# A toy lid model for `Blinks`: dynamics 0 and 1 open the right and left eye, 2 and 3 do something else.
LIDS = np.eye(2, 4)
REST = np.array([0.1, 0.1])


def openings(frames: np.ndarray) -> np.ndarray:
    return REST + frames[:, 6:] @ LIDS.T


def closing(signal: np.ndarray, w: int = 2) -> np.ndarray:
    """Running max then running min over +-w frames, edges repeated (written out, as a reference)."""
    n = len(signal)
    at = lambda i: signal[min(max(i, 0), n - 1)]  # noqa: E731
    dilated = {s: max(at(s + k) for k in range(-w, w + 1)) for s in range(-w, n + w)}
    return np.array([min(dilated[t + k] for k in range(-w, w + 1)) for t in range(n)])


def lids_clip(frames: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames whose eyes narrow slowly (a squint) with three 2-frame generated blinks; and the slow part."""
    rng = np.random.default_rng(seed)
    x = np.zeros((frames, 10))
    x[:, :6] = rng.standard_normal((frames, 6))
    x[:, 8:] = rng.standard_normal((frames, 2))
    slow = -0.03 * np.sin(np.pi * np.arange(frames) / frames)  # the lids close 30 % and open again
    x[:, 6] = x[:, 7] = slow
    for start in (20, 51, 90):
        x[start:start + 2, 6:8] -= 0.08
    return x, slow


def test_blinks_zero_takes_out_the_generated_blinks_and_keeps_the_squint():
    x, slow = lids_clip()
    blinks = Blinks(0, LIDS, LIDS, REST)
    out = np.concatenate([blinks.push(x), blinks.flush()])
    assert out.shape == x.shape
    assert np.abs(openings(out) - (REST + slow[:, None])).max() < 0.002  # dips gone, the squint kept
    assert np.array_equal(out[:, :6], x[:, :6]) and np.array_equal(out[:, 8:], x[:, 8:])  # only the lids


@pytest.mark.parametrize("rate", [10, 40])
def test_blinks_come_at_the_requested_rate_and_close_the_eyes(rate):
    minutes = 20
    blinks = Blinks(rate, LIDS, LIDS, REST, seed=3)
    out = np.concatenate([blinks.push(np.zeros((minutes * 60 * 25, 10))), blinks.flush()])
    closed = openings(out)[:, 0] < 0.5 * REST[0]
    starts = np.flatnonzero(closed[1:] & ~closed[:-1])
    assert abs(len(starts) / minutes - rate) < 0.1 * rate
    assert np.diff(starts).min() >= len(BLINK_PROFILE)  # one blink ends before the next starts
    assert np.allclose(openings(out).min(axis=0), 0.0)  # a blink shuts the lids
    assert np.allclose(openings(out)[:, 0], openings(out)[:, 1])  # both eyes together


@pytest.mark.parametrize("chunk", [1, 7, 100])
def test_blinks_stream_like_offline(chunk):
    x, _ = lids_clip(150, seed=1)
    whole = Blinks(30, LIDS, LIDS, REST, seed=5)
    offline = np.concatenate([whole.push(x), whole.flush()])
    blinks = Blinks(30, LIDS, LIDS, REST, seed=5)
    parts = [blinks.push(x[i:i + chunk]) for i in range(0, len(x), chunk)] + [blinks.flush()]
    assert all(len(part) <= chunk + 4 for part in parts[:-1])  # at most 2 x 2 frames of lookahead held back
    assert np.allclose(np.concatenate(parts), offline)


def test_blinks_zero_leaves_no_narrow_dip():
    x, _ = lids_clip(200, seed=2)
    x[:, 6:8] += 0.02 * np.random.default_rng(0).standard_normal((200, 2))  # jittery lids
    blinks = Blinks(0, LIDS, LIDS, REST)
    out = openings(np.concatenate([blinks.push(x), blinks.flush()]))
    for eye in range(2):
        assert np.allclose(out[:, eye], closing(openings(x)[:, eye]))
        assert np.allclose(closing(out[:, eye]), out[:, eye])  # a closing leaves a closed signal alone


def test_bad_blink_rate():
    with pytest.raises(ValueError, match="blinks per minute"):
        Blinks(-1, LIDS, LIDS, REST)
    with pytest.raises(ValueError, match="blinks per minute"):
        Blinks(200, LIDS, LIDS, REST)
