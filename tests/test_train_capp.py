"""`vasa train capp` / `vasa train lipsync` (`vasa.train.judge`): the read-out fit and 3-step contrastive
smoke tests on tiny records."""

import json

import numpy as np
import pytest

import vasa.train.judge
from test_train_motion import steps_logged_after_a_kill
from vasa.cli import main
from vasa.data.records import Record, Segment, write_record
from vasa.face.mesh.model import FaceModel
from vasa.metrics.contrastive import judge_metadata, load_judge
from vasa.metrics.readout_judge import ReadoutJudge
from vasa.train.judge import JudgeTrainConfig, train_judge

AUDIO_DIM = 16


def tiny_records(folder, names=("speaker_a", "speaker_b", "held"), frames: int = 60, audio_dims=None) -> None:
    rng = np.random.default_rng(0)
    dim = FaceModel.load().dim
    dims = audio_dims or {}  # speaker -> audio feature width, where it is not AUDIO_DIM
    (folder / "records").mkdir(parents=True)
    for name in names:
        pose = np.column_stack([rng.normal(0, 3, (frames, 3)), np.full((frames, 2), 0.5), np.full(frames, 0.3)])
        segment = Segment(pose=pose, dynamics=rng.normal(0, 0.1, (frames, dim)), gaze=np.zeros((frames, 2)),
                          distance=np.ones(frames), emotion=np.zeros((frames, 7)),
                          audio=rng.normal(size=(frames, dims.get(name, AUDIO_DIM))), voice=np.ones(frames))
        write_record(folder / "records" / f"{name}-0000abcd.npz", Record(f"{name}.mp4", 25.0, "test", "mesh", [segment]))


@pytest.mark.parametrize("kind", ["capp", "lipsync"])
def test_three_steps_write_a_loadable_judge_and_resume(tmp_path, kind):
    tiny_records(tmp_path / "prep")
    out = tmp_path / kind
    config = JudgeTrainConfig(data=tmp_path / "prep", out=out, kind=kind, preset="tiny", steps=3, batch_size=8,
                              group=4, log_every=1, save_every=2, holdout=("held",), method="contrastive")
    path = train_judge(config)
    judge = load_judge(path)
    assert judge.config.kind == kind and judge.config.audio_dim == AUDIO_DIM
    assert judge.config.motion_dim == (6 if kind == "capp" else 3)
    assert "auc" in json.loads(judge_metadata(path)["separation"])
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    train_judge(JudgeTrainConfig(**{**config.__dict__, "steps": 5}))  # resumes at 3
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_a_resumed_run_logs_each_step_once(tmp_path, monkeypatch):
    """Killed while saving step 3, after logging it: the resume from step 2 logs step 3 again, once."""
    tiny_records(tmp_path / "prep")
    config = JudgeTrainConfig(data=tmp_path / "prep", out=tmp_path / "run", preset="tiny", steps=3, batch_size=8,
                              group=4, log_every=1, save_every=2, holdout=("held",), method="contrastive")
    assert steps_logged_after_a_kill(vasa.train.judge, train_judge, config, monkeypatch, step=3) == [1, 2, 3]


def test_command_line_trains_capp_and_reports_bad_input(tmp_path, capsys):
    tiny_records(tmp_path / "prep")
    assert main(["train", "capp", "--data", str(tmp_path / "prep"), "--out", str(tmp_path / "run"), "--preset", "tiny",
                 "--steps", "3", "--batch-size", "8", "--group", "4", "--method", "contrastive"]) == 0
    assert (tmp_path / "run" / "judge.safetensors").is_file()
    assert main(["train", "capp", "--data", str(tmp_path / "prep"), "--out", str(tmp_path / "bad"),
                 "--batch-size", "10", "--group", "4"]) == 2
    assert "not a multiple of group" in capsys.readouterr().err
    assert main(["train", "lipsync", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "bad")]) == 2


@pytest.mark.parametrize("kind", ["capp", "lipsync"])
def test_the_default_method_fits_a_readout_judge_scored_on_the_held_out_records(tmp_path, kind, capsys):
    tiny_records(tmp_path / "prep", frames=150)  # the held-out check needs a window and the largest shift both ways
    assert main(["train", kind, "--data", str(tmp_path / "prep"), "--out", str(tmp_path / "run"),
                 "--holdout", "held"]) == 0
    path = tmp_path / "run" / "judge.safetensors"
    judge, metadata = load_judge(path), judge_metadata(path)
    assert isinstance(judge, ReadoutJudge) and judge.config.kind == kind and judge.config.audio_dim == AUDIO_DIM
    assert metadata["method"] == "readout" and metadata["audio_encoder"] == "test"
    assert json.loads(metadata["held_out"]) == ["held-0000abcd"]
    assert 0.0 <= json.loads(metadata["separation"])["auc"] <= 1.0
    assert not (tmp_path / "run" / "state.pt").exists()
    with pytest.raises(SystemExit):
        main(["train", kind, "--data", str(tmp_path / "prep"), "--out", str(tmp_path / "bad"), "--method", "ridge"])
    assert "invalid choice: 'ridge'" in capsys.readouterr().err


def test_a_readout_fit_on_records_of_different_speech_features_is_one_clear_error(tmp_path, capsys):
    tiny_records(tmp_path / "prep", frames=150, audio_dims={"speaker_b": AUDIO_DIM + 4})
    assert main(["train", "lipsync", "--data", str(tmp_path / "prep"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "different speech features" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
