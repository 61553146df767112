"""The motion trainer and its windows: shapes, context, aligned augmentations, fixed validation, a 3-step
run with a loadable checkpoint, resume = uninterrupted, two processes under torchrun, overfitting."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from vasa.cli import build_parser, main as cli_main
from vasa.data.records import Record, Segment, read_record, record_files, write_record
from vasa.face.mesh.space import MeshMotionSpace
from vasa.data.windows import Augment, MotionData, interpolate, motion_stats, sample_batch, validation_batches
from vasa.errors import VasaError
from vasa.motion import PRESETS, load_motion_model
from vasa.motion.checkpoint import load_mouth_readout, read_metadata
from vasa.motion.readout import DEFAULT_BLEND, context_for_window
from vasa.train.common import learning_rate
from vasa.train.motion import TrainConfig, train_motion
from vasa.train.readout import fit_readout

TINY = PRESETS["tiny"]  # W = 8, K = 3
AUDIO_DIM = 16
TINY_16 = dataclasses.replace(TINY, audio_dim=AUDIO_DIM)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def space() -> MeshMotionSpace:
    return MeshMotionSpace()


def synthetic_segment(rng: np.random.Generator, frames: int, index: int = 0) -> Segment:
    """A random-walk head and face; audio channel 0 holds the frame number and channel 1 the segment's
    index (both exact in float16), so a window's audio says where in which segment it was cut."""
    pose = np.cumsum(rng.normal(0, 0.5, (frames, 6)), axis=0)
    pose[:, 5] = 1 + 0.05 * np.tanh(np.cumsum(rng.normal(0, 0.2, frames)))
    audio = rng.normal(size=(frames, AUDIO_DIM))
    audio[:, 0], audio[:, 1] = np.arange(frames), index
    return Segment(pose=pose, dynamics=np.cumsum(rng.normal(0, 0.02, (frames, 40)), axis=0),
                   gaze=rng.normal(0, 3, (frames, 2)), distance=np.ones(frames),
                   emotion=rng.dirichlet(np.ones(7), frames), audio=audio, voice=np.ones(frames),
                   main_gaze=rng.normal(0, 5, 2), mean_emotion=rng.dirichlet(np.ones(7)))


def make_records(folder: Path, lengths: list[list[int]], seed: int = 0) -> Path:
    """One record file per inner list, named like `vasa prepare` names them (<stem>-<hash>.npz)."""
    rng = np.random.default_rng(seed)
    (folder / "records").mkdir(parents=True)
    index = 0
    for i, segment_lengths in enumerate(lengths):
        segments = []
        for frames in segment_lengths:
            segments.append(synthetic_segment(rng, frames, index))
            index += 1
        record = Record(f"clip_{i}.mp4", 25.0, "mel", "mesh", segments)
        write_record(folder / "records" / f"clip_{i}-{i:08x}.npz", record)
    return folder


def load(folder: Path, space: MeshMotionSpace) -> MotionData:
    return MotionData([read_record(f) for f in record_files(folder)], space)


@pytest.fixture(scope="module")
def data(tmp_path_factory, space) -> MotionData:
    return load(make_records(tmp_path_factory.mktemp("windows"), [[40, 5], [25, 13]]), space)


# --- windows ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 5])
def test_batch_shapes_and_dtypes(data, batch_size):
    batch = sample_batch(data, TINY, batch_size, np.random.default_rng(0), Augment())
    W, K, M = TINY.window_frames, TINY.context_frames, TINY.motion_dim
    expected = {"x0": (W, M), "audio": (W, AUDIO_DIM), "audio_valid": (W,), "context_motion": (K, M),
                "context_audio": (K, AUDIO_DIM), "has_context": (), "gaze": (2,), "distance": (), "emotion": (7,)}
    for name, shape in expected.items():
        value = getattr(batch, name)
        assert value.shape == (batch_size, *shape), name
        assert value.dtype == (torch.bool if name in ("audio_valid", "has_context") else torch.float32), name


def test_stats_are_the_mean_and_std_of_every_frame(data):
    frames = np.concatenate(data.motion).astype(np.float64)
    mean, std = data.stats()
    assert mean.shape == std.shape == (46,)
    np.testing.assert_allclose(mean, frames.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(std, np.maximum(frames.std(axis=0), 1e-3), rtol=1e-4)


def locate(audio: torch.Tensor) -> tuple[int, np.ndarray]:
    """(segment, frame times) of frames from their audio (channels 0 and 1 of `synthetic_segment`)."""
    return round(float(audio[0, 1])), audio[:, 0].double().numpy()


def test_the_context_is_the_k_frames_before_the_window(data):
    batch = sample_batch(data, TINY, 200, np.random.default_rng(1), Augment.none())
    W, K = TINY.window_frames, TINY.context_frames
    assert batch.has_context.any() and not batch.has_context.all()
    for i in range(len(batch)):
        segment, times = locate(batch.audio[i])
        start, n = int(times[0]), int(batch.audio_valid[i].sum())
        motion = data.motion[segment]
        assert n == min(W, len(motion) - start) and not batch.audio_valid[i, n:].any()
        np.testing.assert_array_equal(times[:n], start + np.arange(n))
        np.testing.assert_array_equal(batch.x0[i, :n].numpy(), motion[start:start + n])
        assert (batch.x0[i, n:] == batch.x0[i, n - 1]).all()  # padding repeats the last frame
        if batch.has_context[i]:
            assert start >= K
            np.testing.assert_array_equal(batch.context_motion[i].numpy(), motion[start - K:start])
            np.testing.assert_array_equal(batch.context_audio[i, :, 0].numpy(), np.arange(start - K, start))
        else:
            assert start < K and not batch.context_motion[i].any() and not batch.context_audio[i].any()
        np.testing.assert_allclose(batch.gaze[i].numpy(), np.radians(data.main_gaze[segment]), rtol=1e-6)
        assert batch.distance[i] == 1.0


def test_short_segments_give_padded_windows_and_long_ones_every_start(data):
    """Starts are uniform over each segment's valid starts; segments ~ length (5-frame one: 5/83)."""
    batch = sample_batch(data, TINY, 2000, np.random.default_rng(2), Augment.none())
    segments = batch.audio[:, 0, 1].long().numpy()
    counts = np.bincount(segments, minlength=len(data)) / len(segments)
    np.testing.assert_allclose(counts, data.lengths / data.lengths.sum(), atol=0.03)
    starts = batch.audio[segments == 0, 0, 0].long().numpy()
    assert set(starts) == set(range(40 - TINY.window_frames + 1))
    assert (batch.audio_valid[segments == 1].sum(dim=1) == 5).all()


@pytest.mark.parametrize("augment", [Augment(audio_noise_p=0.0),
                                     Augment(gaze_p=1.0, distance_p=1.0, speed_p=1.0, audio_noise_p=0.0)],
                         ids=["default", "always"])
def test_augmentations_keep_audio_and_motion_aligned(data, space, augment):
    """Wherever a frame's audio says it came from (segment, fractional time tau), its motion is the
    segment's motion at tau, up to the known gaze shift and distance factor given as its conditions."""
    batch = sample_batch(data, TINY, 300, np.random.default_rng(3), augment)
    W, K = TINY.window_frames, TINY.context_frames
    speeds, shifted, scaled = [], 0, 0
    for i in range(len(batch)):
        n = int(batch.audio_valid[i].sum())
        k = K if batch.has_context[i] else 0
        audio = torch.cat([batch.context_audio[i, :k], batch.audio[i, :n]])
        motion = torch.cat([batch.context_motion[i, :k], batch.x0[i, :n]]).double().numpy()
        segment, times = locate(audio)
        steps = np.diff(times)
        if len(steps):
            np.testing.assert_allclose(steps, steps[0], atol=1e-4)  # one speed for context and window
            speeds.append(steps[0])
        source = np.stack([np.interp(times, np.arange(len(data.motion[segment])), channel)
                           for channel in data.motion[segment].T.astype(np.float64)], axis=1)
        delta = np.degrees(batch.gaze[i].double().numpy()) - data.main_gaze[segment]
        distance = float(batch.distance[i])
        expected = space.scale_distance(space.shift_gaze(source, data.main_gaze[segment], delta), distance)
        np.testing.assert_allclose(motion, expected, atol=1e-4)
        shifted += bool(np.abs(delta).max() > 1e-3)
        scaled += distance != 1.0
    speeds = np.array(speeds)
    assert ((speeds >= 0.9 - 1e-4) & (speeds <= 1.1 + 1e-4)).all()
    assert shifted > 50 and scaled > 50 and (np.abs(speeds - 1) > 1e-3).sum() > 30  # the test is not vacuous


def test_audio_noise_changes_only_the_audio_by_its_spread(data):
    noise_only = Augment(gaze_p=0.0, distance_p=0.0, speed_p=0.0, audio_noise_p=1.0, audio_noise=0.5)
    noises = []
    for seed in range(64):  # one window per draw: the same window with and without the noise
        plain = sample_batch(data, TINY, 1, np.random.default_rng(seed), Augment.none())
        noisy = sample_batch(data, TINY, 1, np.random.default_rng(seed), noise_only)
        assert torch.equal(plain.x0, noisy.x0) and torch.equal(plain.context_motion, noisy.context_motion)
        noises.append((noisy.audio - plain.audio)[plain.audio_valid])
    ratio = torch.cat(noises).std(dim=0).numpy() / data.audio_std
    np.testing.assert_allclose(ratio[data.audio_std > 0.05], 0.5, rtol=0.2)


def test_a_misaligned_resampling_would_be_caught(data):
    """The alignment check above has teeth: motion resampled at other times than its audio differs."""
    motion = data.motion[0].astype(np.float64)
    times = np.arange(10) * 1.07
    assert np.abs(interpolate(motion, times) - interpolate(motion, np.arange(10.0))).max() > 1e-2


def test_validation_batches_are_fixed_and_tile_every_segment(data):
    first = validation_batches(data, TINY, 4, seed=0)
    again = validation_batches(data, TINY, 4, seed=0)
    assert len(first) == len(again) > 1
    for a, b in zip(first, again):
        for name in ("x0", "audio", "audio_valid", "context_motion", "has_context", "gaze"):
            assert torch.equal(getattr(a, name), getattr(b, name))
    assert sum(int(b.audio_valid.sum()) for b in first) == data.lengths.sum()  # every frame once
    windows = sum(-(-int(n) // TINY.window_frames) for n in data.lengths)
    assert sum(len(b) for b in first) == windows
    assert len(validation_batches(data, TINY, 4, seed=0, max_windows=5)[0]) == 4


def test_records_prepared_differently_are_refused(tmp_path, space):
    records = [read_record(f) for f in record_files(make_records(tmp_path, [[20], [20]]))]
    other = Record("other.mp4", 25.0, "whisper", "mesh", records[1].segments)
    with pytest.raises(VasaError, match="audio_encoder"):
        MotionData([records[0], other], space)
    wider = synthetic_segment(np.random.default_rng(0), 20)
    wider = Segment(**{**wider.__dict__, "audio": np.zeros((20, AUDIO_DIM + 1))})
    with pytest.raises(VasaError, match="audio features of dim"):
        MotionData([records[0], Record("b.mp4", 25.0, "mel", "mesh", [wider])], space)


# --- training --------------------------------------------------------------------------------------------
def tiny_run(data: Path, out: Path, **overrides) -> TrainConfig:
    options = dict(preset="tiny", steps=3, batch_size=4, log_every=1, val_every=2, save_every=2, threads=1,
                   device="cpu", warmup_steps=2, min_lr_ratio=1.0, lr=1e-3)
    return TrainConfig(data=data, out=out, **{**options, **overrides})


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    return make_records(tmp_path_factory.mktemp("train"), [[40, 12], [30], [25, 6], [33]])


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = TrainConfig(data=Path("."), out=Path("."), steps=1000, lr=1e-3, warmup_steps=100, min_lr_ratio=0.1)
    assert learning_rate(config, 0) == pytest.approx(1e-5) and learning_rate(config, 99) == pytest.approx(1e-3)
    assert learning_rate(config, 550) == pytest.approx(0.55e-3)  # half way down the cosine
    assert learning_rate(config, 1000) == pytest.approx(1e-4)


def test_augmented_stats_cover_what_training_sees(data):
    """Normalisation comes from augmented windows: the distance augmentation widens the scale channel."""
    plain = motion_stats(*data.augmented_moments(TINY_16, Augment.none(), windows=512))
    augmented = motion_stats(*data.augmented_moments(TINY_16, Augment(distance_p=1.0), windows=512))
    assert augmented[1][5] > 3 * plain[1][5]


def test_a_three_step_run_writes_a_loadable_checkpoint(records, tmp_path, space):
    path = train_motion(tiny_run(records, tmp_path / "run", holdout=("clip_3",)))
    model = load_motion_model(path)
    training = MotionData([read_record(f) for f in record_files(records) if "clip_3" not in f.name], space)
    mean, std = motion_stats(*training.augmented_moments(model.config, Augment(), seed=0))
    assert model.config.audio_dim == AUDIO_DIM and model.config.window_frames == TINY.window_frames
    np.testing.assert_allclose(model.motion_mean.numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(model.motion_std.numpy(), std, rtol=1e-6)
    assert read_metadata(path)["audio_encoder"] == "mel"
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert lines[0]["val_loss"] is None and lines[1]["val_loss"] > 0 and lines[2]["val_loss"] > 0
    assert all(np.isfinite(line["loss"]) and line["grad_norm"] > 0 for line in lines)
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["preset"] == "tiny" and saved["holdout"] == ["clip_3"]
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no temporary left
    # the mouth read-out beside the weights: fitted on the training records only, within the tiny window
    readout = load_mouth_readout(path)
    expected = fit_readout([f for f in record_files(records) if "clip_3" not in f.name],
                           context=context_for_window(TINY.window_frames))
    assert readout.blend == DEFAULT_BLEND and readout.columns == expected.columns and readout.context == expected.context
    assert readout.lookahead_frames <= TINY.window_frames - 1
    assert all(torch.allclose(readout.state_dict()[k], v) for k, v in expected.state_dict().items())
    assert load_mouth_readout(train_motion(tiny_run(records, tmp_path / "none", steps=1, mouth_readout=0.0))) is None


def test_run_files_get_the_mode_the_umask_gives(records, tmp_path):
    """Files written through a temporary (weights, state) are ordinary files: 0o666 & ~umask, not the
    private 0o600 some writers give them (safetensors does)."""
    umask = os.umask(0o002)  # not the usual 022, so the test also tells "follows the umask" from "is 0o644"
    try:
        train_motion(tiny_run(records, tmp_path / "run"))
    finally:
        os.umask(umask)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert modes == dict.fromkeys(["model.safetensors", "state.pt", "metrics.jsonl", "train_config.json"], oct(0o664))


WITH_DROPOUT = [name for name, config in PRESETS.items() if config.dropout > 0 and config.width <= 128][:1]


@pytest.mark.parametrize("preset", ["tiny", *WITH_DROPOUT])
def test_resume_equals_an_uninterrupted_run(records, tmp_path, preset):
    """3 steps, stop, resume to 6 = 6 steps at once (the lr schedule here does not depend on the total);
    a preset with dropout checks that the global RNG (dropout masks) is restored too."""
    whole = train_motion(tiny_run(records, tmp_path / "whole", steps=6, preset=preset))
    whole = torch.load(whole.with_name("state.pt"))
    train_motion(tiny_run(records, tmp_path / "split", steps=3, preset=preset))
    resumed = train_motion(tiny_run(records, tmp_path / "split", steps=6, preset=preset))
    resumed = torch.load(resumed.with_name("state.pt"))
    assert resumed["step"] == whole["step"] == 6
    for key in ("model", "ema"):
        for name, tensor in whole[key].items():
            assert torch.equal(tensor, resumed[key][name]), f"{key}.{name}"
    assert resumed["rng"][0]["numpy"] == whole["rng"][0]["numpy"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def killed_at(module, monkeypatch, step: int) -> None:
    """The next run of `module`'s trainer dies (Ctrl-C) while saving `step`: its metrics line is written,
    its state is not, so the run resumes from the save before."""
    save = module.save_atomic

    def save_or_die(obj, path):
        if obj["step"] == step:
            raise KeyboardInterrupt
        save(obj, path)

    monkeypatch.setattr(module, "save_atomic", save_or_die)


def steps_logged_after_a_kill(module, train, config, monkeypatch, step: int) -> list[int]:
    """Run `train(config)` killed while saving `step` (`killed_at`), check it saved step 2 before, resume
    it to the end; -> the steps in its metrics.jsonl."""
    with monkeypatch.context() as patch:
        killed_at(module, patch, step=step)
        with pytest.raises(KeyboardInterrupt):
            train(config)
    assert torch.load(config.out / "state.pt")["step"] == 2
    train(config)
    return [json.loads(line)["step"] for line in (config.out / "metrics.jsonl").read_text().splitlines()]


def test_a_resumed_run_logs_each_step_once(records, tmp_path, monkeypatch):
    """Killed while saving step 4, after logging 3 and 4: the resume from step 2 logs them again, once."""
    import vasa.train.motion

    run = tiny_run(records, tmp_path / "run", steps=4)
    assert steps_logged_after_a_kill(vasa.train.motion, train_motion, run, monkeypatch, step=4) == [1, 2, 3, 4]
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_holdout_that_matches_no_record_is_a_clear_error(records, tmp_path):
    with pytest.raises(VasaError, match="holdout retalking_2 matches no record"):
        train_motion(tiny_run(records, tmp_path / "run", holdout=("retalking_2",)))
    with pytest.raises(VasaError, match="every record"):
        train_motion(tiny_run(records, tmp_path / "run", holdout=("clip_0", "clip_1", "clip_2", "clip_3")))


def test_resuming_with_another_model_is_refused(records, tmp_path):
    train_motion(tiny_run(records, tmp_path / "run", steps=1))
    with pytest.raises(VasaError, match="another model"):
        train_motion(tiny_run(records, tmp_path / "run", steps=2, preset="default"))


def test_overfitting_a_tiny_dataset_lowers_the_loss(tmp_path, records):
    data = make_records(tmp_path / "small", [[16]])
    train_motion(tiny_run(data, tmp_path / "run", steps=150, batch_size=16, log_every=10, save_every=150,
                          augment=False, lr=3e-3, warmup_steps=10))
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.25 * losses[0], losses  # ~0.05 vs ~0.8 for seeds 0-2


# --- command line and processes --------------------------------------------------------------------------
def test_the_command_line_has_an_option_for_every_config_field(capsys):
    args = build_parser().parse_args(["train", "motion", "--data", "d", "--out", "o", "--holdout", "a", "b",
                                      "--no-augment", "--batch-size", "3", "--min-lr-ratio", "0.5", "--amp"])
    given = (args.holdout, args.augment, args.batch_size, args.min_lr_ratio, args.amp)
    assert given == (["a", "b"], False, 3, 0.5, True)
    assert not hasattr(args, "steps")  # options left out take TrainConfig's defaults
    with pytest.raises(SystemExit):
        cli_main(["train", "motion", "--help"])
    help_text = capsys.readouterr().out
    for field in fields(TrainConfig):
        flag = "--no-augment" if field.name == "augment" else "--" + field.name.replace("_", "-")
        assert flag in help_text, flag


def test_command_line_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["train", "motion", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("vasa: error: no prepared data folder")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_under_torchrun_write_a_loadable_checkpoint(records, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), "-m", "vasa.train.motion", "--data", str(records), "--out", str(out),
               "--preset", "tiny", "--steps", "3", "--batch-size", "4", "--log-every", "1", "--holdout", "clip_3",
               "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-8000:]
    model = load_motion_model(out / "model.safetensors")
    assert model.config.audio_dim == AUDIO_DIM
    state = torch.load(out / "state.pt")
    assert state["step"] == 3 and len(state["rng"]) == 2  # both ranks' RNG states, for resume
    assert state["rng"][0]["numpy"] != state["rng"][1]["numpy"]  # each rank draws its own windows
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3  # rank 0 alone writes


def test_the_read_out_fit_skips_records_that_kept_nothing(tmp_path):
    folder = make_records(tmp_path / "data", [[], [40, 12], [30]])
    files = record_files(folder)
    assert not read_record(files[0]).segments
    readout = fit_readout(files)
    assert readout is not None and readout.lookahead_frames == 4
    assert all(torch.allclose(readout.state_dict()[k], v) for k, v in fit_readout(files[1:]).state_dict().items())
    assert fit_readout(files[:1]) is None and fit_readout([]) is None
