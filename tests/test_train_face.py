"""The neural face trainer, the frame store it reads, the backend factory and the neural backend behind
the Appearance/Motion interface: 3-step runs (one process and two under torchrun), resume, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

import vasa.train.face
from vasa.face.neural.toy import cartoon_face
from test_train_motion import free_port, steps_logged_after_a_kill
from vasa import media
from vasa.cli import build_parser, main as cli_main
from vasa.data.prepare import PrepareConfig, frame_store_path, prepare
from vasa.data.records import Record, Segment, read_record, record_files, write_record
from vasa.data.windows import MotionData
from vasa.errors import VasaError
from vasa.face.backends import load_face
from vasa.face.mesh.space import MeshMotionSpace
from vasa.face.neural import PRESETS, NeuralFaceModel, load_face_model, save_face_model
from vasa.face.neural.backend import NeuralFace, NeuralTexture
from vasa.latents import Motion
from vasa.train.face import FaceTrainConfig, jitter_colours, train_face

REPO = Path(__file__).resolve().parents[1]
TINY = PRESETS["tiny"]
FRAMES = 12


def make_prepared(folder: Path, clips: int = 2, dynamics_dims: tuple[int, ...] = ()) -> Path:
    """`vasa prepare --frames 64`-shaped data: per clip a record (one segment, facial dynamics of
    `dynamics_dims[c]` components, 40 by default) and its face-crop store."""
    rng = np.random.default_rng(0)
    (folder / "records").mkdir(parents=True)
    (folder / "frames").mkdir()
    for c in range(clips):
        centres = 0.5 + 0.06 * np.sin(np.arange(FRAMES) / 2 + c)
        openings = 0.02 + 0.1 * np.abs(np.sin(np.arange(FRAMES) / 3))
        pose = np.tile([5.0, 0.0, 0.0, 0.5, 0.5, 0.33], (FRAMES, 1))
        pose[:, 3] = centres
        segment = Segment(pose=pose, dynamics=rng.normal(size=(FRAMES, (dynamics_dims or (40,) * clips)[c])), gaze=np.zeros((FRAMES, 2)),
                          distance=np.ones(FRAMES), emotion=np.full((FRAMES, 7), 1 / 7), audio=np.zeros((FRAMES, 8)),
                          voice=np.ones(FRAMES))
        path = folder / "records" / f"clip_{c}-{c:08x}.npz"
        write_record(path, Record(f"clip_{c}.mp4", 25.0, "mel", "mesh", [segment]))
        frames = [cartoon_face(64, (x, 0.5), m) for x, m in zip(centres, openings)]
        media.write_video(frame_store_path(path), frames, 25.0, crf=12)
    return folder


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return make_prepared(tmp_path_factory.mktemp("face_data"))


def config(data: Path, out: Path, **changes) -> FaceTrainConfig:
    base = dict(data=data, out=out, preset="tiny", steps=3, batch_size=2, log_every=1, val_every=3, save_every=3,
                holdout=("clip_1",), device="cpu", threads=1, warmup_steps=2)
    return FaceTrainConfig(**{**base, **changes})


def test_a_three_step_run_writes_a_loadable_checkpoint_and_resumes(prepared, tmp_path):
    out = tmp_path / "run"
    path = train_face(config(prepared, out))
    model = load_face_model(path)
    assert model.config == TINY
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert 0 < lines[-1]["val_psnr"] < 60 and -1 <= lines[-1]["val_ssim"] <= 1
    assert {"reconstruction", "transfer", "cycle", "identity", "pose", "dynamics", "feature_matching",
            "discriminator"} <= set(lines[0])
    assert (out / "samples" / "step_0000003.png").is_file()
    probe = torch.load(out / "state.pt")["probe"]  # the z_dyn read-out, normalised by the records' dynamics
    assert probe["linear.weight"].shape == (probe["mean"].shape[0], TINY.dynamics_dim)
    assert torch.all(probe["spread"] > 0)
    assert probe["mean"].abs().max() < 1e-5  # each segment's dynamics relative to its mean (no face shape)
    train_face(config(prepared, out, steps=4, save_every=4))
    assert torch.load(out / "state.pt")["step"] == 4
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 4


def test_a_resumed_run_logs_each_step_once(prepared, tmp_path, monkeypatch):
    """Killed while saving step 3, after logging it: the resume from step 2 logs step 3 again, once."""
    run = config(prepared, tmp_path / "run", save_every=2, holdout=())
    assert steps_logged_after_a_kill(vasa.train.face, train_face, run, monkeypatch, step=3) == [1, 2, 3]


def test_the_reconstruction_warm_up_trains_reconstruction_alone_then_every_term(prepared, tmp_path):
    out = tmp_path / "warm"
    train_face(config(prepared, out, steps=4, reconstruction_warmup_steps=2, val_every=4, save_every=4,
                      colour_jitter=0.2))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [set(line) & {"reconstruction", "pose", "dynamics", "transfer", "discriminator"} for line in lines[:2]] == \
        [{"reconstruction", "pose", "dynamics"}] * 2  # no discriminator, no disentangling terms
    assert {"reconstruction", "pose", "transfer", "cycle", "identity", "feature_matching", "discriminator"} <= set(lines[2])
    with pytest.raises(VasaError, match="reconstruction_warmup_steps"):
        config(prepared, out, reconstruction_warmup_steps=-1)


def test_colour_jitter_changes_a_source_and_its_driver_alike():
    rng = np.random.default_rng(0)
    image = np.random.default_rng(1).integers(40, 200, size=(16, 16, 3)).astype(np.uint8)
    assert jitter_colours(image, 0.0, rng) is image
    pair = jitter_colours(np.stack([image, image]), 0.3, rng)
    assert np.array_equal(pair[0], pair[1]) and not np.array_equal(pair[0], image)
    grey = np.full((4, 4, 3), 100, np.uint8)  # no saturation to change: only brightness x channel gain
    for _ in range(20):
        gains = jitter_colours(grey, 0.3, rng)[0, 0] / 100
        assert np.all((gains > np.exp(-0.6) - 0.01) & (gains < np.exp(0.6) + 0.01))
    first, second = (jitter_colours(image, 0.3, rng) for _ in range(2))
    assert not np.array_equal(first, second)  # each call draws anew
    with pytest.raises(VasaError, match="colour_jitter"):
        config(Path("."), Path("."), colour_jitter=2.0)


def test_records_without_stored_frames_are_a_clear_error(prepared, tmp_path):
    data = make_prepared(tmp_path / "data", clips=1)
    frame_store_path(record_files(data)[0]).unlink()
    with pytest.raises(VasaError, match="no stored face crops"):
        train_face(config(data, tmp_path / "run", holdout=()))


def test_records_with_facial_dynamics_of_different_sizes_are_a_clear_error(tmp_path):
    data = make_prepared(tmp_path / "data", clips=2, dynamics_dims=(40, 12))
    with pytest.raises(VasaError, match="differ in size .40 in clip_0.*12 in clip_1"):
        train_face(config(data, tmp_path / "run", holdout=()))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_two_processes_under_torchrun_write_a_loadable_checkpoint(prepared, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), "-m", "vasa.train.face", "--data", str(prepared), "--out", str(out),
               "--preset", "tiny", "--steps", "3", "--batch-size", "2", "--log-every", "1", "--device", "cpu",
               "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-8000:]
    load_face_model(out / "model.safetensors")
    state = torch.load(out / "state.pt")
    assert state["step"] == 3 and len(state["rng"]) == 2 and "probe" in state
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3  # rank 0 alone writes


def test_the_command_line_has_an_option_for_every_config_field():
    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices["train"]._actions
                 if a.dest == "model")
    face = train.choices["face"]
    face.format_help()  # a trainer's options are added on first use (vasa.cli._TrainerParser)
    options = {a.dest for a in face._actions}
    assert {f.name for f in fields(FaceTrainConfig)} <= options


# --- the backend ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("neural") / "face.safetensors"
    save_face_model(path, NeuralFaceModel(TINY))
    return path


def test_the_factory_needs_a_checkpoint_for_neural_and_none_for_mesh(checkpoint):
    from vasa.latents import FaceBackend

    assert load_face("mesh", size=128).name == "mesh"
    assert isinstance(load_face("neural", checkpoint, size=128), NeuralFace)
    for face in (load_face("mesh", size=128), load_face("neural", checkpoint, size=128)):  # one interface
        assert isinstance(face, FaceBackend) and face.size == 128 and face.dynamics_dim > 0
    assert not isinstance(object(), FaceBackend)
    with pytest.raises(VasaError, match="--face-checkpoint"):
        load_face("neural")
    with pytest.raises(VasaError, match="mesh backend needs no checkpoint"):
        load_face("mesh", checkpoint)


def test_neural_backend_encodes_and_decodes_through_the_latents(checkpoint, astronaut):
    face = NeuralFace.from_checkpoint(checkpoint, size=96)
    appearance, motion = face.encode(astronaut)
    assert isinstance(appearance.texture, NeuralTexture) and appearance.image.shape == (96, 96, 3)
    assert motion.pose.shape == (6,) and motion.dynamics.shape == (TINY.dynamics_dim,)
    frame = face.decode(appearance, motion)
    assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8
    batch = face.decode(appearance, Motion.stack([motion, motion.replace(pose=motion.pose + [10, 0, 0, 0, 0, 0])]))
    # the same frame alone or in a batch (float sums may differ in the last bit with the batch size: one
    # grey level after rounding)
    assert batch.shape == (2, 96, 96, 3) and np.abs(batch[0].astype(int) - frame).max() <= 1
    with pytest.raises(VasaError, match="dynamics coefficients"):
        face.decode(appearance, Motion(motion.pose, np.zeros(40)))


def test_prepare_with_the_neural_backend_stores_its_latents_and_the_frames(driver_clip, checkpoint, tmp_path):
    out = tmp_path / "prepared"
    config = PrepareConfig(audio_encoder="mel", min_frames=5, frames=64, face="neural", face_checkpoint=str(checkpoint))
    prepare([driver_clip], out, config, progress=False)
    (path,) = record_files(out)
    record = read_record(path)
    assert record.face_backend == "neural" and record.segments[0].dynamics.shape[1] == TINY.dynamics_dim
    stored = list(media.iter_video_frames(frame_store_path(path)))
    assert len(stored) == 12 and stored[0].shape == (64, 64, 3)
    with pytest.raises(VasaError, match="dynamics coefficients"):  # not the mesh latent's space
        MotionData([record], MeshMotionSpace())


def test_the_motion_generator_trains_on_neural_latents_and_drives_the_neural_face(driver_clip, checkpoint,
                                                                                   astronaut, tmp_path):
    from test_train_motion import tiny_run
    from vasa.latents import LatentSpace
    from vasa.motion.checkpoint import read_metadata
    from vasa.pipeline import Controls, TalkingHead
    from vasa.train.motion import train_motion

    out = tmp_path / "prepared"
    config = PrepareConfig(audio_encoder="mel", min_frames=5, face="neural", face_checkpoint=str(checkpoint))
    prepare([driver_clip], out, config, progress=False)
    data = MotionData([read_record(p) for p in record_files(out)])
    assert type(data.space) is LatentSpace and data.space.dim == 6 + TINY.dynamics_dim
    path = train_motion(tiny_run(out, tmp_path / "run"))
    assert read_metadata(path)["face_backend"] == "neural"
    head = TalkingHead.from_pretrained(path, face=NeuralFace.from_checkpoint(checkpoint, size=64))
    head.set_source(astronaut)
    frames = list(head.frames(np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32), Controls(steps=2)))
    assert len(frames) == 25 and frames[0].shape == (64, 64, 3)
    with pytest.raises(VasaError, match="trained on neural face latents"):
        TalkingHead.from_pretrained(path)  # the mesh face


def test_neural_without_a_checkpoint_is_one_line_on_the_command_line(tmp_path, driver_clip, astronaut, capsys):
    image = tmp_path / "portrait.png"
    import cv2

    cv2.imwrite(str(image), astronaut[..., ::-1])
    assert cli_main(["reenact", "--image", str(image), "--video", str(driver_clip), "--out", str(tmp_path / "o.mp4"),
                     "--face", "neural"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("vasa: error:") and "--face-checkpoint" in err


def test_speech_driven_generation_refuses_latents_of_another_backend(checkpoint):
    from vasa.pipeline import TalkingHead

    with pytest.raises(VasaError, match="trained on mesh face latents"):
        TalkingHead.from_pretrained(face=NeuralFace.from_checkpoint(checkpoint, size=96))
