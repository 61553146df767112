"""Fréchet distance and the I3D network (`vasa.metrics.fvd`), with random weights."""

import numpy as np
import pytest
import torch

from vasa.errors import VasaError
from vasa.metrics import fvd


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6))
    assert fvd.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert fvd.frechet_distance(a, a + 2.0) == pytest.approx(6 * 4.0, rel=1e-6)  # only the means differ
    b = rng.normal(size=(500, 6)) * 3.0  # covariance 9 I vs I: Tr(I + 9I - 2 * 3I) = 4 per dimension
    assert fvd.frechet_distance(rng.normal(size=(20000, 6)), rng.normal(size=(20000, 6)) * 3) == pytest.approx(24, rel=0.05)
    assert fvd.frechet_distance(a, b) > fvd.frechet_distance(a, rng.normal(size=(500, 6)))
    with pytest.raises(VasaError):
        fvd.frechet_distance(a, a[:, :3])


def test_i3d_shapes_on_a_small_clip():
    torch.manual_seed(0)
    model = fvd.I3D().eval()
    with torch.no_grad():
        clips = torch.randn(2, 3, 8, 64, 64)
        assert model.features(clips).shape == (2, 1024)
        assert model(clips).shape == (2, 400)


def test_clips_are_cut_resized_and_scaled():
    frames = np.full((55, 100, 120, 3), 255, np.uint8)
    clips = fvd.i3d_clips(frames, clip_frames=25)
    assert clips.shape == (2, 3, 25, 224, 224)
    assert clips.max() == pytest.approx(1.0) and clips.min() == pytest.approx(1.0)
    with pytest.raises(VasaError, match="fewer"):
        fvd.i3d_clips(frames[:10])


def test_i3d_weights_load_strictly(tmp_path):
    model = fvd.I3D()
    state = model.state_dict()
    assert "Mixed_4b.b1b.conv3d.weight" in state and "logits.conv3d.bias" in state  # the documented layout
    torch.save(state, tmp_path / "i3d.pt")
    assert isinstance(fvd.load_i3d(tmp_path / "i3d.pt"), fvd.I3D)
    del state["Conv3d_1a_7x7.bn.running_var"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(VasaError, match="missing"):
        fvd.load_i3d(tmp_path / "broken.pt")
