"""Reading every kind of image, resampling video to a constant rate, atomic mp4 writing."""

import itertools
import os

import cv2
import numpy as np
import pytest

from conftest import sine
from vasa import media
from vasa.demo import DEMO_SPEECH
from vasa.errors import VasaError
from vasa.face.mesh import MeshFace


def write_png(path, array_bgr):
    assert cv2.imwrite(str(path), array_bgr)
    return path


# --- images --------------------------------------------------------------------------------

def test_rgba_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (200, 40, 10)  # BGR on disk
    rgba[0, 0, 3] = 0  # fully transparent
    rgba[0, 1, 3] = 255  # opaque
    rgba[0, 2, 3] = 128  # half
    image = media.read_image(write_png(tmp_path / "rgba.png", rgba))
    assert image.shape == (4, 4, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(image[0, 1], [10, 40, 200])
    np.testing.assert_allclose(image[0, 2], np.array([10, 40, 200]) * 128 / 255 + 255 * 127 / 255, atol=1)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    image = media.read_image(write_png(tmp_path / "gray.png", gray))
    assert image.shape == (8, 8, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    values = np.arange(48, dtype=np.uint16).reshape(4, 4, 3) * 5
    path = write_png(tmp_path / "deep.png", values[..., ::-1] * 257)  # BGR, full 16-bit range
    np.testing.assert_array_equal(media.read_image(path), values)


def test_16_bit_rgba_is_scaled_then_composited(tmp_path):
    bgra = np.zeros((2, 2, 4), np.uint16)
    bgra[..., :3] = np.array([100, 50, 200]) * 257
    bgra[..., 3] = 65535
    bgra[0, 0, 3] = 0
    image = media.read_image(write_png(tmp_path / "deep_rgba.png", bgra))
    np.testing.assert_array_equal(image[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(image[1, 1], [200, 50, 100])


def test_exif_orientation_is_applied(tmp_path, astronaut):
    from PIL import Image

    upright = np.ascontiguousarray(astronaut[:, 100:400])  # (512, 300): portrait format
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 deg clockwise to display", as phones write it
    path = tmp_path / "phone.jpg"
    Image.fromarray(np.rot90(upright)).save(path, exif=exif.tobytes(), quality=95)
    image = media.read_image(path)
    assert image.shape == upright.shape
    assert np.abs(image.astype(float) - upright).mean() < 5.0


def test_float_arrays_are_scaled_and_clipped():
    image = np.array([[[0.0, 0.5, 1.0], [-0.2, 1.7, 0.25]]] * 2, np.float32)
    np.testing.assert_array_equal(media.read_image(image)[0], [[0, 128, 255], [0, 255, 64]])


def test_arrays_are_taken_as_rgb(astronaut):
    np.testing.assert_array_equal(media.read_image(astronaut), astronaut)


def test_very_large_image_is_encoded_at_the_same_place(astronaut, encoded):
    # 3000x3000 upscale of the astronaut on a 4000-wide canvas, face 1000 px from the left edge.
    big = cv2.resize(astronaut, (3000, 3000), interpolation=cv2.INTER_LINEAR)
    big = cv2.copyMakeBorder(big, 0, 0, 1000, 0, cv2.BORDER_REPLICATE)
    appearance, _ = MeshFace(size=256).encode(big)
    small_crop = encoded[0].crop
    factor = 3000 / 512
    assert appearance.image.shape == (256, 256, 3)
    assert appearance.crop.side == pytest.approx(small_crop.side * factor, rel=0.03)
    expected_centre = np.array(small_crop.center) * factor + [1000, 0]
    np.testing.assert_allclose(appearance.crop.center, expected_centre, atol=0.02 * appearance.crop.side)


@pytest.mark.parametrize("name, make, message", [
    ("missing.png", lambda p: None, "not found"),
    ("empty.png", lambda p: p.write_bytes(b""), "empty"),
    ("text.png", lambda p: p.write_text("this is not a picture\n"), "cannot read image"),
    ("folder.png", lambda p: p.mkdir(), "folder"),
])
def test_bad_image_files_raise_a_clear_error(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(VasaError, match=message):
        media.read_image(path)


@pytest.mark.parametrize("shape", [(0, 0, 3), (1, 5, 3), (5, 5, 2), (5,)])
def test_arrays_without_usable_pixels_raise(shape):
    with pytest.raises(VasaError):
        media.read_image(np.zeros(shape, np.uint8))


# --- video ---------------------------------------------------------------------------------

def numbered_frames(count, size=32):
    """Frame i is a flat grey of level 10 i + 10, which survives H.264 to within a few levels."""
    assert count <= 24
    return [np.full((size, size, 3), 10 * i + 10, np.uint8) for i in range(count)]


def frame_numbers(frames):
    return [int(round((float(f.mean()) - 10) / 10)) for f in frames]


@pytest.mark.parametrize("native_fps, count", [(30, 12), (20, 8), (25, 10), (50, 22)])
def test_frames_are_resampled_to_25_fps(tmp_path, native_fps, count):
    path = tmp_path / "clip.mp4"
    media.write_video(path, numbered_frames(count), native_fps)
    frames = list(media.iter_video_frames(path, 25.0))
    duration = count / native_fps
    assert len(frames) == round(duration * 25)
    # Output frame k shows the latest source frame at or before time k / 25.
    expected = [int(np.floor(k * native_fps / 25 + 1e-9)) for k in range(len(frames))]
    assert frame_numbers(frames) == expected


def test_video_display_rotation_is_applied(tmp_path):
    import av

    path = tmp_path / "phone.mp4"
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:, :8] = 255  # a white band down the stored frame's left edge
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        container.mux(stream.encode(None))
    frame = next(media.iter_video_frames(path))
    assert frame.shape == (64, 32, 3)  # shown as a 32-wide, 64-tall picture
    rows = frame.mean(axis=(1, 2))
    assert max(rows[:8].mean(), rows[-8:].mean()) > 200  # the band now runs across the top or bottom


@pytest.mark.parametrize("fps", [29.97, 12.5])
def test_fractional_frame_rates_are_written(tmp_path, fps):
    path = tmp_path / "clip.mp4"
    assert media.write_video(path, numbered_frames(10), fps) == 10
    assert media.probe_video(path).native_fps == pytest.approx(fps, rel=1e-3)


def test_odd_frame_sizes_are_written_or_refused_clearly(tmp_path):
    path = tmp_path / "odd.mp4"
    try:
        media.write_video(path, numbered_frames(3, size=33), 25.0)
    except VasaError:
        assert not path.exists()
    else:
        assert next(media.iter_video_frames(path)).shape[:2] in ((33, 33), (32, 32), (34, 34))


@pytest.mark.parametrize("fps", [0.0, -25.0])
def test_non_positive_fps_is_refused(tmp_path, fps):
    path = tmp_path / "clip.mp4"
    media.write_video(path, numbered_frames(5), 25.0)
    with pytest.raises(VasaError, match="fps|frame rate"):
        list(itertools.islice(media.iter_video_frames(path, fps), 100))  # bounded: never hangs


def test_probe_reports_size_rate_duration_and_audio(tmp_path):
    path = tmp_path / "clip.mp4"
    media.write_video(path, numbered_frames(15, size=48), 30.0, sine(440.0, 1.0))
    info = media.probe_video(path)
    assert (info.width, info.height, info.native_fps, info.has_audio) == (48, 48, 30.0, True)
    assert info.duration_s == pytest.approx(0.5, abs=0.04)


def test_file_without_a_video_stream_raises():
    with pytest.raises(VasaError, match="no video stream"):
        next(media.iter_video_frames(DEMO_SPEECH))
    with pytest.raises(VasaError, match="no video stream"):
        media.probe_video(DEMO_SPEECH)


def test_video_stream_without_frames_raises(tmp_path):
    import av

    path = tmp_path / "hollow.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()  # header only, no frame
    assert path.stat().st_size > 0
    with pytest.raises(VasaError, match="no frames|no video stream"):
        list(media.iter_video_frames(path))


def test_corrupt_and_truncated_videos_raise(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    whole = tmp_path / "whole.mp4"
    media.write_video(whole, numbered_frames(10), 25.0)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    for path in (garbage, truncated):
        with pytest.raises(VasaError, match="cannot"):
            list(media.iter_video_frames(path))


def test_write_video_returns_the_frame_count_and_keeps_the_size(tmp_path):
    path = tmp_path / "clip.mp4"
    assert media.write_video(path, numbered_frames(7, size=64), 25.0) == 7
    frames = list(media.iter_video_frames(path))
    assert len(frames) == 7 and frames[0].shape == (64, 64, 3)


def failing_frames(count_before_failure):
    yield from numbered_frames(count_before_failure)
    raise RuntimeError("renderer crashed")


def test_failed_write_leaves_no_file_and_no_temporary(tmp_path):
    with pytest.raises(RuntimeError, match="renderer crashed"):
        media.write_video(tmp_path / "out.mp4", failing_frames(5), 25.0)
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        media.write_video(path, failing_frames(3), 25.0)
    assert path.read_bytes() == b"previous result"
    assert os.listdir(tmp_path) == ["out.mp4"]


def test_writing_no_frames_raises_and_writes_nothing(tmp_path):
    with pytest.raises(VasaError, match="no frames"):
        media.write_video(tmp_path / "out.mp4", iter(()), 25.0)
    assert os.listdir(tmp_path) == []


def test_written_file_is_readable_by_others(tmp_path):
    path = tmp_path / "out.mp4"
    media.write_video(path, numbered_frames(2), 25.0)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_output_path_in_a_missing_folder_is_rejected(tmp_path):
    with pytest.raises(VasaError, match="does not exist"):
        media.check_output_path(tmp_path / "nowhere" / "out.mp4")


def test_output_path_in_a_read_only_folder_is_rejected(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user can write to read-only folders (root)")
        with pytest.raises(VasaError, match="not writable"):
            media.check_output_path(folder / "out.mp4")
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("name", ["out.png", "out", "out.wav"])
def test_output_path_must_be_a_video(tmp_path, name):
    with pytest.raises(VasaError, match="video file"):
        media.check_output_path(tmp_path / name)


def test_output_path_that_is_a_folder_is_rejected(tmp_path):
    (tmp_path / "out.mp4").mkdir()
    with pytest.raises(VasaError, match="folder"):
        media.check_output_path(tmp_path / "out.mp4")


# --- audio ---------------------------------------------------------------------------------

def test_audio_round_trip_keeps_duration_and_pitch(tmp_path):
    path = tmp_path / "tone.mp4"
    media.write_video(path, numbered_frames(20), 25.0, sine(440.0, 2.0))  # audio cut to 0.8 s
    samples, rate = media.read_audio(path)
    assert samples.dtype == np.float32 and samples.shape[0] == 1
    assert samples.shape[1] / rate == pytest.approx(0.8, abs=0.1)
    spectrum = np.abs(np.fft.rfft(samples[0]))
    peak_hz = np.fft.rfftfreq(samples.shape[1], 1 / rate)[spectrum.argmax()]
    assert peak_hz == pytest.approx(440.0, abs=3.0)


def test_read_audio_resamples_on_request():
    samples, rate = media.read_audio(DEMO_SPEECH)
    resampled, new_rate = media.read_audio(DEMO_SPEECH, sample_rate=8000)
    assert new_rate == 8000
    assert resampled.shape[1] / 8000 == pytest.approx(samples.shape[1] / rate, abs=0.02)


def test_video_without_audio_reads_as_none(tmp_path):
    path = tmp_path / "silent.mp4"
    media.write_video(path, numbered_frames(3), 25.0)
    assert media.read_audio(path) is None
