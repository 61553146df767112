"""Read-out judges (`vasa.metrics.readout_judge`): the head-speed signal, window scores as correlations,
checkpoints shared with the contrastive judges, and judges fitted on synthetic speech that must tell true
pairs from shifted ones."""

import numpy as np
import pytest
import torch

from vasa.errors import VasaError
from vasa.metrics import contrastive
from vasa.metrics.readout_judge import ReadoutJudge, ReadoutJudgeConfig, fit_readout_judge, head_speed


def smooth_noise(rng: np.random.Generator, frames: int, channels: int, width: int = 4) -> np.ndarray:
    raw = rng.normal(size=(frames + width, channels))
    return np.stack([raw[k:k + frames] for k in range(width + 1)]).mean(axis=0)


def lip_pairs(rng: np.random.Generator, count: int, frames: int, mixing: np.ndarray) -> list:
    """Lip measures (T, 3) of different 'speakers' (own rest shape and amplitude) and 'speech' (T, 16)
    that reads them two frames early, plus noise."""
    pairs = []
    for _ in range(count):
        lips = smooth_noise(rng, frames + 2, 3)
        audio = lips[2:] @ mixing + 0.3 * rng.normal(size=(frames, 16))
        speaker = rng.uniform(0.5, 2.0) * lips[:frames] + rng.normal(size=3)
        pairs.append((speaker.astype(np.float32), audio.astype(np.float32)))
    return pairs


def test_head_speed_is_the_smoothed_change_of_the_angles():
    pose = np.zeros((6, 6))
    pose[3:, 0] = 3.0  # a 3-degree yaw step at frame 3; translation and scale changes don't count
    pose[:, 3] = np.arange(6)
    np.testing.assert_allclose(head_speed(pose, smooth=1)[:, 0], [0, 0, 0, 3, 0, 0])
    np.testing.assert_allclose(head_speed(pose, smooth=3)[:, 0], [0, 0, 1, 1, 1, 0])


def test_window_scores_are_correlations_blind_to_offset_and_scale():
    judge = ReadoutJudge(ReadoutJudgeConfig(kind="lipsync", audio_dim=4, window_frames=5))
    rng = np.random.default_rng(0)
    predicted = torch.from_numpy(rng.normal(size=(2, 5, 3)))
    assert torch.allclose(judge.score(3 * predicted + 1, predicted), torch.ones(2, dtype=torch.float32))
    assert torch.allclose(judge.score(-predicted, predicted), -torch.ones(2, dtype=torch.float32))
    still = judge.score(torch.zeros(2, 5, 3), predicted)
    assert torch.equal(still, torch.zeros(2))


def test_bad_configs_and_features_are_refused():
    with pytest.raises(VasaError, match="unknown judge kind"):
        ReadoutJudgeConfig(kind="blink")
    judge = ReadoutJudge(ReadoutJudgeConfig.for_kind("capp", audio_dim=8))
    assert judge.config.window_frames == 75 and judge.config.channels == 1
    with pytest.raises(VasaError, match="8-d speech features"):
        judge.audio_signal(np.zeros((10, 16)))


def test_a_fitted_lip_judge_tells_true_pairs_from_shifted_ones_on_unseen_speakers(tmp_path):
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(3, 16))
    judge = fit_readout_judge("lipsync", lip_pairs(rng, 6, 300, mixing))
    test = lip_pairs(rng, 3, 200, mixing)
    found = contrastive.shift_separation(judge, test, shifts=[3, 6, 12], hop=5)
    assert found["auc"] > 0.9 and found["mean_true"] > 0.5 > found["mean_shifted"]
    offsets = contrastive.offset_scores(judge, *test[0], max_shift=8)
    assert offsets["best_shift"] == 0 and offsets["confidence"] > 0.3
    path = tmp_path / "judge.safetensors"
    contrastive.save_judge(path, judge, {"audio_encoder": "test"})
    loaded = contrastive.load_judge(path)
    assert isinstance(loaded, ReadoutJudge) and loaded.config == judge.config
    np.testing.assert_allclose(contrastive.window_scores(loaded, *test[1]), contrastive.window_scores(judge, *test[1]))


def test_a_fitted_capp_reads_head_speed_from_speech():
    """'Speech' loud while the head moves: the judge follows the head's speed, not where it points."""
    rng = np.random.default_rng(1)

    def pair(frames):
        angles = np.cumsum(smooth_noise(rng, frames, 3), axis=0)
        pose = np.column_stack([angles, np.zeros((frames, 3))])
        speed = head_speed(pose)[:, 0]
        audio = np.outer(speed, np.linspace(1, 2, 8)) + 0.2 * rng.normal(size=(frames, 8))
        return pose.astype(np.float32), audio.astype(np.float32)

    judge = fit_readout_judge("capp", [pair(400) for _ in range(6)], strength=1.0)
    found = contrastive.shift_separation(judge, [pair(300) for _ in range(3)], shifts=[5, 10, 25], hop=5)
    assert found["auc"] > 0.8
