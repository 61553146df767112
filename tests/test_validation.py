"""One check of a user's numbers for the CLI, the Python API and the server (`Controls`), and images
read under a pixel budget: whatever is passed, the answer is a working value or one clear VasaError."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vasa.errors import VasaError
from vasa.media import decode_image, read_image
from vasa.pipeline import MAX_GUIDANCE, MAX_MOTION_SCALE, MAX_SEED, Controls

ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                     st.lists(st.floats(), max_size=3), st.dictionaries(st.text(max_size=8), st.floats(), max_size=3))
FIELDS = ["gaze", "distance", "emotion", "cfg_audio", "cfg_audio_pose", "cfg_gaze", "steps", "seed", "head_scale",
          "expression_scale", "smoothing", "still", "close_mouth_in_silence", "blinks"]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), ANYTHING, max_size=4))
def test_controls_take_a_valid_value_or_say_why(fields):
    try:
        controls = Controls(**fields)
    except VasaError as error:
        assert str(error) and "\n" not in str(error)
        return
    for name in ("seed", "steps"):
        value = getattr(controls, name)
        assert isinstance(value, int) and not isinstance(value, bool)
    assert 0 <= controls.seed <= MAX_SEED
    for name in ("head_scale", "expression_scale", "smoothing", "cfg_gaze"):
        assert math.isfinite(getattr(controls, name))
    assert 0 <= controls.head_scale <= MAX_MOTION_SCALE and 0 <= controls.expression_scale <= MAX_MOTION_SCALE
    for name in ("cfg_audio", "cfg_audio_pose", "blinks", "distance"):
        value = getattr(controls, name)
        assert value is None or (math.isfinite(value) and 0 <= value <= max(MAX_GUIDANCE, 60))
    assert isinstance(controls.still, bool) and isinstance(controls.close_mouth_in_silence, bool)
    if controls.emotion is not None:
        assert controls.emotion_vector() is not None and np.isfinite(controls.emotion_vector()).all()


@pytest.mark.parametrize("fields, says", [
    ({"head_scale": float("nan")}, "head_scale"), ({"expression_scale": float("inf")}, "expression_scale"),
    ({"head_scale": 1e308}, "head_scale"), ({"seed": -1, "blinks": 10}, "seed"), ({"seed": 2**64}, "seed"),
    ({"seed": 1.5}, "seed"), ({"seed": True}, "seed"), ({"still": "false"}, "still"), ({"steps": 10.0}, "steps"),
    ({"gaze": (float("nan"), 0)}, "gaze"), ({"emotion": {"happy": float("inf")}}, "happy"),
    ({"emotion": "happy"}, "emotion"), ({"distance": float("nan")}, "distance"), ({"blinks": -1}, "blinks"),
])
def test_bad_numbers_are_refused_with_their_name(fields, says):
    with pytest.raises(VasaError, match=says):
        Controls(**fields)


@pytest.mark.parametrize("argv, says", [
    (["--head-scale", "nan"], "head_scale"), (["--expression-scale", "inf"], "expression_scale"),
    (["--seed", "-1", "--blinks", "10"], "seed"), (["--smooth", "nan"], "smoothing"),
    (["--mouth-readout", "2"], "mouth_readout"),
])
def test_generate_refuses_bad_numbers_in_one_line_before_any_work(tmp_path, grace_hopper, capsys, argv, says):
    from test_cli import assert_one_error_line
    from vasa.cli import main

    out = tmp_path / "out.mp4"
    speech = tmp_path / "missing.wav"  # never read: the numbers are checked first
    assert main(["generate", "--image", str(grace_hopper), "--audio", str(speech), "--out", str(out), *argv]) == 2
    assert says in assert_one_error_line(capsys)
    assert not out.exists()


def test_images_over_the_pixel_budget_are_refused_from_their_header(tmp_path):
    ok, data = cv2.imencode(".png", np.zeros((40, 30, 3), np.uint8))
    with pytest.raises(VasaError, match="0.0 megapixels, over the limit of 0.0"):
        decode_image(data.tobytes(), "small.png", max_pixels=1000)
    assert decode_image(data.tobytes(), "small.png", max_pixels=1200).shape == (40, 30, 3)
    with pytest.raises(VasaError, match="junk.bin: not an image format"):  # no header to check: not decoded
        decode_image(b"\x00" * 64, "junk.bin")
    import test_server

    for bomb in (test_server.jpeg_claiming(14000, 14000), test_server.png_claiming(60000, 60000)):
        path = tmp_path / "bomb.img"
        path.write_bytes(bomb)
        with pytest.raises(VasaError, match="bomb.img"):
            read_image(path)


def test_a_large_jpeg_is_decoded_small_and_turned_as_its_exif_says(tmp_path):
    from PIL import Image

    image = np.zeros((1600, 1200, 3), np.uint8)
    image[:400] = (255, 0, 0)  # red on top as stored
    path = tmp_path / "turned.jpg"
    picture = Image.fromarray(image)
    exif = picture.getexif()
    exif[0x0112] = 6  # stored sideways: shown turned a quarter clockwise
    picture.save(path, exif=exif, quality=95)
    full, small = read_image(path), read_image(path, max_side=400)
    assert full.shape == (1200, 1600, 3) and small.shape == (300, 400, 3)
    for shown in (full, small):  # the red band is on the right once turned
        right = shown[:, -shown.shape[1] // 8:].reshape(-1, 3).mean(0)
        assert right[0] > 200 and right[1] < 40, right
