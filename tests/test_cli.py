"""The command line: a working run, and every kind of bad input ending in one line and exit status 2."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vasa import media
from vasa.cli import build_parser, main
from vasa.demo import DEMO_DRIVER, DEMO_SPEECH


def run_reenact(image, video, out, *extra):
    return main(["reenact", "--image", str(image), "--video", str(video), "--out", str(out), "--size", "128", *extra])


def assert_one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert [line for line in lines if line.startswith("vasa: error:")] == lines[-1:], err
    return lines[-1]


def test_reenact_writes_the_video_and_returns_0(tmp_path, grace_hopper, driver_clip, capsys):
    out = tmp_path / "out.mp4"
    assert run_reenact(grace_hopper, driver_clip, out) == 0
    assert media.probe_video(out).width == 128
    assert str(out) in capsys.readouterr().out
    assert os.listdir(tmp_path) == ["out.mp4"]  # no temporary left beside it


def test_reenact_pose_only_runs(tmp_path, grace_hopper, driver_clip):
    out = tmp_path / "out.mp4"
    assert run_reenact(grace_hopper, driver_clip, out, "--only", "pose") == 0
    assert out.exists()


@pytest.mark.slow
def test_demo_generates_from_the_bundled_speech(tmp_path):
    out = tmp_path / "demo.mp4"
    assert main(["demo", "--out", str(out), "--size", "128"]) == 0
    info = media.probe_video(out)
    assert info.has_audio and (info.width, info.height) == (128, 128)
    speech = media.read_audio(DEMO_SPEECH)
    assert info.duration_s == pytest.approx(speech[0].shape[1] / speech[1], abs=0.1)


@pytest.mark.slow
def test_demo_reenacts_the_bundled_driver(tmp_path):
    out = tmp_path / "demo.mp4"
    assert main(["demo", "--out", str(out), "--size", "128", "--reenact"]) == 0
    driver = media.probe_video(DEMO_DRIVER)
    assert media.probe_video(out).duration_s == pytest.approx(driver.duration_s, abs=0.1)


def make_noise_png(path):
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8))


def make_noise_video(path):
    frames = [np.random.default_rng(i).integers(0, 256, (128, 128, 3), dtype=np.uint8) for i in range(6)]
    media.write_video(path, frames, 25.0)


BAD_IMAGES = {
    "no_face.png": (make_noise_png, "no face"),
    "text.png": (lambda p: p.write_text("not an image\n"), "cannot read image"),
    "empty.png": (lambda p: p.write_bytes(b""), "empty"),
    "missing.png": (lambda p: None, "not found"),
}


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_bad_portrait_exits_2_with_one_line(tmp_path, driver_clip, capsys, name):
    make, message = BAD_IMAGES[name]
    make(tmp_path / name)
    out = tmp_path / "out.mp4"
    assert run_reenact(tmp_path / name, driver_clip, out) == 2
    assert message in assert_one_error_line(capsys)
    assert not out.exists()


BAD_VIDEOS = {
    "empty.mp4": (lambda p: p.write_bytes(b""), "empty"),
    "text.mp4": (lambda p: p.write_text("not a video\n"), "cannot read video"),
    "no_face.mp4": (make_noise_video, "no face"),
    "audio_only.mp4": (lambda p: p.write_bytes(DEMO_SPEECH.read_bytes()), "no video stream"),
}


@pytest.mark.parametrize("name", BAD_VIDEOS)
def test_bad_video_exits_2_with_one_line_and_no_output(tmp_path, grace_hopper, capsys, name):
    make, message = BAD_VIDEOS[name]
    make(tmp_path / name)
    out = tmp_path / "out.mp4"
    assert run_reenact(grace_hopper, tmp_path / name, out) == 2
    assert message in assert_one_error_line(capsys)
    assert sorted(os.listdir(tmp_path)) == [name]  # no output, no temporary file


def test_missing_output_folder_exits_2(tmp_path, grace_hopper, driver_clip, capsys):
    out = tmp_path / "missing" / "out.mp4"
    assert run_reenact(grace_hopper, driver_clip, out) == 2
    assert "does not exist" in assert_one_error_line(capsys)
    assert not out.parent.exists()


def test_non_video_output_exits_2(tmp_path, grace_hopper, driver_clip, capsys):
    assert run_reenact(grace_hopper, driver_clip, tmp_path / "out.gif") == 2
    assert "video file" in assert_one_error_line(capsys)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("size", ["63", "100x", "129"])
def test_bad_size_is_a_usage_error(tmp_path, grace_hopper, driver_clip, size):
    with pytest.raises(SystemExit) as exit_info:
        main(["reenact", "--image", str(grace_hopper), "--video", str(driver_clip),
              "--out", str(tmp_path / "out.mp4"), "--size", size])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("fps", ["0", "-25"])
def test_non_positive_fps_is_a_usage_error(tmp_path, grace_hopper, driver_clip, fps):
    # Parse only: running reenact with these values would be the bug itself.
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["reenact", "--image", str(grace_hopper), "--video", str(driver_clip),
                                   "--out", str(tmp_path / "out.mp4"), "--fps", fps])
    assert exit_info.value.code == 2


def test_module_help_exits_0():
    result = subprocess.run([sys.executable, "-m", "vasa.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "reenact" in result.stdout


def test_console_script_help_exits_0():
    script = Path(sys.executable).parent / "vasa"
    if not script.exists():
        pytest.skip("the vasa console script is not installed in this environment")
    result = subprocess.run([str(script), "reenact", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--image" in result.stdout
