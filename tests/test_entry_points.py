"""Bad input at every entry point (`vasa reenact`, `vasa eval`, `vasa train motion|face|capp|lipsync`): one line
`vasa: error: ...` on stderr, exit status 2, no traceback, and no output file left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_cli import assert_one_error_line
from test_train_face import make_prepared
from test_train_motion import make_records
from vasa.cli import main

CAPP = Path(__file__).resolve().parents[1] / "vasa" / "assets" / "capp.safetensors"  # a checkpoint, not a face model


def junk(path: Path) -> Path:
    """Random bytes under a name that promises something else (.mp4, .jpg, .safetensors, .npz, .pt)."""
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def fails_cleanly(argv: list[str], capsys) -> str:
    assert main([str(a) for a in argv]) == 2
    return assert_one_error_line(capsys)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- vasa reenact ----------------------------------------------------------------------------------------
REENACT = {  # case -> (changes to the arguments given the input folder, what the error says)
    "missing video": (lambda d, image, video: {"--video": d / "missing.mp4"}, "not found"),
    "junk video": (lambda d, image, video: {"--video": junk(d / "junk.mp4")}, "cannot read video"),
    "junk image": (lambda d, image, video: {"--image": junk(d / "junk.jpg")}, "cannot read image"),
    "missing audio": (lambda d, image, video: {"--audio": d / "missing.wav"}, "not found"),
    "junk audio": (lambda d, image, video: {"--audio": junk(d / "junk.wav")}, "junk.wav"),
    "missing face checkpoint": (lambda d, image, video: {"--face": "neural", "--face-checkpoint": d / "no.safetensors"},
                                "no.safetensors"),
    "junk face checkpoint": (lambda d, image, video: {"--face": "neural",
                                                      "--face-checkpoint": junk(d / "junk.safetensors")},
                             "junk.safetensors"),
    "judge as face checkpoint": (lambda d, image, video: {"--face": "neural", "--face-checkpoint": CAPP}, CAPP.name),
    "out is a folder": (lambda d, image, video: {"--out": d}, "folder"),
}


@pytest.mark.parametrize("case", REENACT)
def test_reenact_bad_input(tmp_path, grace_hopper, driver_clip, capsys, case):
    change, message = REENACT[case]
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    args = {"--image": grace_hopper, "--video": driver_clip, "--out": out / "out.mp4", "--size": 128,
            **change(inputs, grace_hopper, driver_clip)}
    assert message in fails_cleanly(["reenact", *[str(v) for kv in args.items() for v in kv]], capsys)
    assert files_under(out) == []


# --- vasa eval -------------------------------------------------------------------------------------------
def _generated(d: Path, video: Path) -> Path:
    (d / "generated").mkdir(exist_ok=True)
    shutil.copy(video, d / "generated" / "clip.mp4")
    return d / "generated"


def _folder_with(d: Path, name: str, file: str) -> Path:
    (d / name).mkdir(exist_ok=True)
    junk(d / name / file)
    return d / name


def _report_is_a_file(d: Path, arguments: list) -> list:
    junk(d.parent / "report")  # where --out points
    return arguments


EVAL = {  # case -> (arguments given the input folder and a good video, what the error says)
    "missing folder": (lambda d, v: [d / "missing"], "no folder"),
    "junk video": (lambda d, v: [_folder_with(d, "generated", "clip.mp4")], "clip.mp4"),
    "missing real folder": (lambda d, v: [_generated(d, v), "--real", d / "missing"], "no folder of real videos"),
    "missing audio folder": (lambda d, v: [_generated(d, v), "--audio", d / "missing"], "no folder of speech"),
    "missing portraits folder": (lambda d, v: [_generated(d, v), "--portraits", d / "missing"],
                                 "no folder of portraits"),
    "junk real video": (lambda d, v: [_generated(d, v), "--real", _folder_with(d, "real", "clip.mp4")], "clip.mp4"),
    "junk audio": (lambda d, v: [_generated(d, v), "--audio", _folder_with(d, "audio", "clip.wav")], "clip"),
    "junk portrait": (lambda d, v: [_generated(d, v), "--portraits", _folder_with(d, "portraits", "clip.jpg")],
                      "clip.jpg"),
    "missing capp": (lambda d, v: [_generated(d, v), "--capp", d / "no.safetensors"], "no capp judge"),
    "junk capp": (lambda d, v: [_generated(d, v), "--capp", junk(d / "junk.safetensors")], "junk.safetensors"),
    "junk lipsync": (lambda d, v: [_generated(d, v), "--lipsync", junk(d / "junk.safetensors")], "junk.safetensors"),
    "junk syncnet": (lambda d, v: [_generated(d, v), "--syncnet", junk(d / "junk.model")], "junk.model"),
    "missing i3d": (lambda d, v: [_generated(d, v), "--i3d", d / "no.pt"], "no.pt"),
    "junk i3d": (lambda d, v: [_generated(d, v), "--i3d", junk(d / "junk.pt")], "junk.pt"),
    "report is a file": (lambda d, v: _report_is_a_file(d, [_generated(d, v)]), "report"),
    "benchmark report is a file": (lambda d, v: _report_is_a_file(d, ["--benchmark", _generated(d, v)]), "report"),
    "benchmark work is a file": (lambda d, v: ["--benchmark", _generated(d, v), "--work", junk(d / "work")], "work"),
    "missing benchmark": (lambda d, v: ["--benchmark", d / "missing"], "no benchmark folder"),
    "empty benchmark": (lambda d, v: ["--benchmark", _folder_with(d, "cases", "notes.txt")], "no benchmark case"),
    "junk benchmark video": (lambda d, v: ["--benchmark", _folder_with(d, "cases", "talk.mp4")], "talk.mp4"),
    "junk motion model": (lambda d, v: ["--benchmark", _generated(d, v), "--model", junk(d / "junk.safetensors")],
                          "junk.safetensors"),
}


@pytest.mark.parametrize("case", EVAL)
def test_eval_bad_input(tmp_path, driver_clip, capsys, case):
    arguments, message = EVAL[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    line = fails_cleanly(["eval", *arguments(inputs, driver_clip), "--out", tmp_path / "report", "--no-identity",
                          "--no-controls", "--size", 128], capsys)
    assert message in line
    assert files_under(tmp_path / "report") == []


# --- vasa train motion | face | capp | lipsync -----------------------------------------------------------
TRAINERS = ["motion", "face", "capp", "lipsync"]


@pytest.fixture(scope="module")
def good_data(tmp_path_factory) -> dict[str, Path]:
    """Per trainer, prepared data it trains on: records, and for the face trainer their face crops too."""
    records = make_records(tmp_path_factory.mktemp("records"), [[40], [30]])
    return {**dict.fromkeys(TRAINERS, records), "face": make_prepared(tmp_path_factory.mktemp("faces"))}


def _records_like(d: Path, good: Path, change, every: bool = False) -> Path:
    """A copy of the good data with `change(arrays) -> arrays` applied to its first record file (or every one)."""
    shutil.copytree(good, d / "data")
    files = sorted((d / "data" / "records").glob("*.npz"))
    for path in files if every else files[:1]:
        with np.load(path) as data:
            arrays = dict(data)
        np.savez(path, **change(arrays))
    return d / "data"


def _no_segments(arrays: dict) -> dict:
    """A record of a video where nothing was usable: metadata, no frames."""
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta["segments"] = []
    arrays = {k: v[:0] for k, v in arrays.items() if k not in ("meta", "offsets")}
    return {**arrays, "offsets": np.zeros(1, np.int64), "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}


def _empty_data(d: Path, good: Path) -> Path:
    (d / "data" / "records").mkdir(parents=True)
    return d / "data"


def _junk_record(d: Path, good: Path) -> Path:
    shutil.copytree(good, d / "data")
    junk(sorted((d / "data" / "records").glob("*.npz"))[0])
    return d / "data"


def _junk_state(d: Path) -> Path:
    (d / "run").mkdir()
    junk(d / "run" / "state.pt")
    return d / "run"


TRAIN = {  # case -> (--data given the input folder and good data, --out given tmp_path or None, what the error says)
    "missing data": (lambda d, g: d / "missing", None, "no prepared data folder"),
    "empty data": (_empty_data, None, "no training records"),
    "junk record": (_junk_record, None, "not a record written by `vasa prepare`"),
    "records of no segments": (lambda d, g: _records_like(d, g, _no_segments, every=True), None, "segment"),
    "record with a short pose": (lambda d, g: _records_like(d, g, lambda a: {**a, "pose": a["pose"][:-1]}), None,
                                 "clip_0"),
    "record with 5 pose columns": (lambda d, g: _records_like(d, g, lambda a: {**a, "pose": a["pose"][:, :5]}), None,
                                   "pose"),
    "missing split": (lambda d, g: g, None, "split"),
    "junk split": (lambda d, g: g, None, "split"),
    "out is a file": (lambda d, g: g, lambda d: junk(d / "run.txt"), "run.txt"),
    "out inside a file": (lambda d, g: g, lambda d: junk(d / "run.txt") / "run", "run.txt"),
    "junk state": (lambda d, g: g, _junk_state, "state.pt"),
}


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("case", TRAIN)
def test_train_bad_input(tmp_path, good_data, capsys, trainer, case):
    data, out, message = TRAIN[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    data = data(inputs, good_data[trainer])
    out = out(tmp_path) if out is not None else tmp_path / "run"
    before = files_under(tmp_path / "run")
    extra = []
    if case == "missing split":
        extra = ["--split", inputs / "split.json"]
    elif case == "junk split":
        extra = ["--split", junk(inputs / "split.json")]
    elif case == "junk state" and trainer in ("capp", "lipsync"):
        extra = ["--method", "contrastive"]  # a read-out judge is fitted anew: it keeps no state
    line = fails_cleanly(["train", trainer, "--data", data, "--out", out, "--preset", "tiny", "--steps", 2,
                          "--batch-size", 4, *(["--group", 2] if trainer in ("capp", "lipsync") else []), *extra],
                         capsys)
    assert message in line
    assert files_under(tmp_path / "run") == before  # nothing written, nothing taken away


@pytest.mark.parametrize("option", ["--perceptual", "--identity-descriptor"])
@pytest.mark.parametrize("what", ["missing", "junk"])
def test_train_face_bad_feature_network(tmp_path, good_data, capsys, option, what):
    network = tmp_path / "network.pt"
    if what == "junk":
        junk(network)
    line = fails_cleanly(["train", "face", "--data", good_data["face"], "--out", tmp_path / "run", "--preset", "tiny",
                          "--steps", 2, "--batch-size", 2, option, network], capsys)
    assert "network.pt" in line
    assert files_under(tmp_path / "run") == []
