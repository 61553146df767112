"""SyncNet (`vasa.metrics.syncnet`): shapes with random weights, the MFCC front end, the scoring protocol."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vasa.errors import VasaError
from vasa.metrics import syncnet


@pytest.fixture(scope="module")
def model() -> syncnet.SyncNet:
    torch.manual_seed(0)
    return syncnet.SyncNet().eval()


def test_embedding_shapes(model):
    with torch.no_grad():
        assert model.forward_audio(torch.randn(3, 1, 13, 20)).shape == (3, 1024)
        assert model.forward_video(torch.randn(2, 3, 5, 224, 224)).shape == (2, 1024)


def test_mfcc_rate_and_loudness_only_moves_coefficient_zero():
    rng = np.random.default_rng(0)
    speechy = rng.normal(0, 0.1, 16000).astype(np.float32)  # 1 s
    coefficients = syncnet.mfcc(speechy)
    assert coefficients.shape == (1 + int(np.ceil((16000 - 400) / 160)), 13)  # 100 per second
    louder = syncnet.mfcc(4 * speechy)
    np.testing.assert_allclose(louder[:, 1:], coefficients[:, 1:], atol=1e-3)  # a gain only adds a constant log
    np.testing.assert_allclose(louder[:, 0], coefficients[:, 0] + 2 * np.log(4), atol=1e-3)


def test_filterbank_triangles_peak_at_one_and_cover_the_band():
    bank = syncnet.mel_filterbank()
    assert bank.shape == (26, 257)
    np.testing.assert_allclose(bank.max(axis=1), 1.0)
    assert (bank.sum(axis=0)[2:250] > 0).all()


@pytest.mark.parametrize("delay", [-4, 0, 3])
def test_offset_search_finds_a_known_delay(delay):
    """Audio embeddings = video embeddings delayed by `delay` frames: the protocol's offset is -delay, the
    distance there is the smallest, and the confidence positive."""
    rng = np.random.default_rng(1)
    video = rng.normal(size=(60, 32)).astype(np.float32)
    audio = np.roll(video, delay, axis=0)  # audio frame j holds video frame j - delay
    distances = syncnet.offset_distances(torch.from_numpy(video), torch.from_numpy(audio))
    score = syncnet.sync_score(distances)
    assert distances.shape == (31,)
    assert score.offset == -delay
    assert score.distance < 0.2 * np.median(distances) and score.confidence > 0


def test_scoring_a_short_video_with_random_weights(model):
    crops = np.random.default_rng(2).integers(0, 255, (8, 224, 224, 3), dtype=np.uint8)
    waveform = np.random.default_rng(3).normal(0, 0.1, 8 * 640).astype(np.float32)
    score = syncnet.syncnet_score(model, crops, waveform, max_offset=2)
    assert np.isfinite(score.distance) and score.confidence >= 0 and score.distances.shape == (5,)
    with pytest.raises(VasaError, match="224"):
        syncnet.syncnet_score(model, crops[:, :100, :100], waveform)


def test_weights_load_strictly_from_safetensors_and_state_dicts(model, tmp_path):
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "syncnet.safetensors"))
    torch.save(state, tmp_path / "syncnet_v2.model")
    x = torch.randn(2, 1, 13, 20)
    for name in ("syncnet.safetensors", "syncnet_v2.model"):
        loaded = syncnet.load_syncnet(tmp_path / name)
        with torch.no_grad():
            torch.testing.assert_close(loaded.forward_audio(x), model.forward_audio(x))
    del state["netfcaud.3.bias"]
    torch.save(state, tmp_path / "broken.model")
    with pytest.raises(VasaError, match="missing"):
        syncnet.load_syncnet(tmp_path / "broken.model")
    with pytest.raises(VasaError, match="no SyncNet weights"):
        syncnet.load_syncnet(tmp_path / "absent.model")
    for name in ("garbage.safetensors", "garbage.model"):
        (tmp_path / name).write_bytes(b"not weights")
        with pytest.raises(VasaError, match="cannot read SyncNet weights"):
            syncnet.load_syncnet(tmp_path / name)
