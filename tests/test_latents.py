"""Motion and Appearance: the contract between stages."""

import numpy as np
import pytest

from vasa.latents import Motion


def test_motion_converts_to_float64():
    motion = Motion(np.zeros(6, np.float32), [1, 2, 3])
    assert motion.pose.dtype == np.float64 and motion.dynamics.dtype == np.float64


@pytest.mark.parametrize("pose, dynamics", [
    (np.zeros(5), np.zeros(4)),  # pose must have 6 numbers
    (np.zeros((3, 6)), np.zeros((2, 4))),  # batch sizes differ
    (np.zeros((3, 6)), np.zeros(4)),  # batched pose, single dynamics
])
def test_mismatched_shapes_are_rejected(pose, dynamics):
    with pytest.raises(ValueError):
        Motion(pose, dynamics)


@pytest.mark.parametrize("batch", [(), (1,), (7,), (2, 3)])
def test_array_round_trip_over_batch_shapes(batch):
    rng = np.random.default_rng(0)
    motion = Motion(rng.normal(size=(*batch, 6)), rng.normal(size=(*batch, 5)))
    array = motion.as_array()
    assert array.shape == (*batch, 11)
    back = Motion.from_array(array)
    np.testing.assert_array_equal(back.pose, motion.pose)
    np.testing.assert_array_equal(back.dynamics, motion.dynamics)
    assert back.batch_shape == batch


def test_stack_index_and_length():
    frames = [Motion(np.full(6, i), np.full(3, -i)) for i in range(4)]
    stacked = Motion.stack(frames)
    assert len(stacked) == 4 and stacked.batch_shape == (4,)
    np.testing.assert_array_equal(stacked[2].pose, frames[2].pose)
    np.testing.assert_array_equal(stacked[1:3].dynamics, [[-1] * 3, [-2] * 3])


def test_single_frame_has_no_length():
    with pytest.raises(TypeError):
        len(Motion(np.zeros(6), np.zeros(3)))


def test_replace_keeps_the_other_field():
    motion = Motion(np.zeros(6), np.ones(3))
    moved = motion.replace(pose=np.ones(6))
    np.testing.assert_array_equal(moved.dynamics, motion.dynamics)
    np.testing.assert_array_equal(moved.pose, np.ones(6))
    np.testing.assert_array_equal(motion.pose, np.zeros(6))  # frozen: the original is untouched
