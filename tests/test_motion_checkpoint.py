"""MotionDiT checkpoints: round trip with the config, strict keys."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from test_motion_dit import TINY, make_conditions, randomized, window
from vasa.errors import VasaError
from vasa.motion.checkpoint import CONFIG_KEY, load_motion_model, save_motion_model


def test_round_trip_keeps_config_weights_and_statistics(tmp_path):
    model = randomized()
    model.motion_mean.fill_(0.5)
    path = tmp_path / "motion.safetensors"
    save_motion_model(path, model)
    loaded = load_motion_model(path)
    assert loaded.config == TINY and torch.equal(loaded.motion_mean, model.motion_mean)
    x_t, t = window(TINY, 2)
    cond = make_conditions(TINY, 2)
    assert torch.equal(loaded(x_t, t, cond), model(x_t, t, cond))


def test_a_missing_key_or_config_is_a_clear_error(tmp_path):
    path = tmp_path / "motion.safetensors"
    save_motion_model(path, randomized())
    state = load_file(str(path))
    del state["head.weight"]
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken), metadata={CONFIG_KEY: json.dumps(TINY.__dict__)})
    with pytest.raises(VasaError, match="head.weight"):
        load_motion_model(broken)
    save_file(state, str(broken))
    with pytest.raises(VasaError, match="metadata"):
        load_motion_model(broken)
    with pytest.raises(VasaError, match="no motion model"):
        load_motion_model(tmp_path / "absent.safetensors")


def test_a_corrupt_file_is_a_clear_error_and_saving_leaves_no_temp_file(tmp_path):
    from vasa.motion.dit import MotionDiT

    path = tmp_path / "motion.safetensors"
    save_motion_model(path, MotionDiT(TINY))
    assert [p.name for p in tmp_path.iterdir()] == ["motion.safetensors"]
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.raises(VasaError, match="cannot read motion model"):
        load_motion_model(path)
