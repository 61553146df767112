"""Contrastive judges (`vasa.metrics.contrastive`): shapes, invariances, checkpoints, and a tiny judge
trained on synthetic data that must tell true pairs from shifted ones."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vasa.errors import VasaError
from vasa.metrics import contrastive
from vasa.metrics.contrastive import PRESETS, ContrastiveJudge


@pytest.fixture()
def tiny() -> ContrastiveJudge:
    torch.manual_seed(0)
    return ContrastiveJudge(PRESETS["tiny"]).eval()


@pytest.mark.parametrize("batch", [1, 3])
def test_embeddings_are_unit_vectors_and_scores_cosines(tiny, batch):
    motion, audio = torch.randn(batch, 10, 6), torch.randn(batch, 10, 16)
    zm, za = tiny.embed(motion, audio)
    assert zm.shape == za.shape == (batch, 8)
    torch.testing.assert_close(zm.norm(dim=-1), torch.ones(batch))
    score = tiny.score(motion, audio)
    assert score.shape == (batch,) and (score.abs() <= 1 + 1e-6).all()


def test_score_ignores_where_the_head_rests(tiny):
    """Each window's motion is centred: a constant offset (identity, resting pose) changes nothing."""
    motion, audio = torch.randn(4, 10, 6), torch.randn(4, 10, 16)
    torch.testing.assert_close(tiny.score(motion + 7.0, audio), tiny.score(motion, audio))


def test_roc_auc_known_answers():
    assert contrastive.roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert contrastive.roc_auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    assert contrastive.roc_auc(np.ones(3), np.ones(4)) == 0.5


def test_pose_features_take_the_log_of_the_scale():
    pose = np.array([[10.0, -5.0, 2.0, 0.5, 0.4, 0.3]])
    np.testing.assert_allclose(contrastive.pose_features(pose), [[10.0, -5.0, 2.0, 0.5, 0.4, np.log(0.3)]], rtol=1e-6)


def test_save_load_round_trip_and_strict_keys(tiny, tmp_path):
    path = tmp_path / "judge.safetensors"
    contrastive.save_judge(path, tiny, {"audio_encoder": "test", "separation": {"auc": 0.9}})
    loaded = contrastive.load_judge(path)
    assert loaded.config == tiny.config
    assert contrastive.judge_metadata(path)["audio_encoder"] == "test"
    motion, audio = torch.randn(2, 10, 6), torch.randn(2, 10, 16)
    torch.testing.assert_close(loaded.score(motion, audio), tiny.score(motion, audio))
    state = load_file(str(path))
    del state["logit_scale"]
    save_file(state, str(tmp_path / "broken.safetensors"), metadata=contrastive.judge_metadata(path))
    with pytest.raises(VasaError, match="missing"):
        contrastive.load_judge(tmp_path / "broken.safetensors")
    save_file(state, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(VasaError, match="no vasa.metrics.contrastive.config"):
        contrastive.load_judge(tmp_path / "foreign.safetensors")


def synthetic_pair(rng: np.random.Generator, frames: int, mixing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random 'pose' (T, 6) and 'audio' (T, 16) that is a fixed linear function of it plus noise."""
    raw = rng.normal(size=(frames + 4, 6))
    motion = (raw[:-4] + raw[1:-3] + raw[2:-2] + raw[3:-1] + raw[4:]) / 5  # a little smoothing
    audio = motion @ mixing + 0.1 * rng.normal(size=(frames, 16))
    return motion.astype(np.float32), audio.astype(np.float32)


@pytest.mark.slow
def test_a_tiny_judge_learns_to_prefer_true_pairs_over_shifted_ones():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    mixing = rng.normal(size=(6, 16))
    train = [synthetic_pair(rng, 200, mixing) for _ in range(8)]
    test = [synthetic_pair(rng, 120, mixing) for _ in range(2)]
    model = ContrastiveJudge(PRESETS["tiny"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        motion, audio = [], []
        for k in rng.choice(len(train), 4):
            for start in rng.integers(0, 190, 8):
                motion.append(train[k][0][start:start + 10])
                audio.append(train[k][1][start:start + 10])
        loss = model.loss(torch.from_numpy(np.stack(motion)), torch.from_numpy(np.stack(audio)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    found = contrastive.shift_separation(model, test, shifts=[3, 6], hop=2)
    assert found["auc"] > 0.8 and found["mean_true"] > found["mean_shifted"]
    offsets = contrastive.offset_scores(model, *test[0], max_shift=5, hop=2)
    assert offsets["best_shift"] == 0 and offsets["confidence"] > 0
    shifted = contrastive.sequence_score(model, test[0][0], np.roll(test[0][1], 20, axis=0))
    assert contrastive.sequence_score(model, *test[0]) > shifted
