"""Reenactment end to end: a rendered astronaut clip drives Grace Hopper's portrait."""

import numpy as np
import pytest

from conftest import DRIVER_FRAMES, sine
from vasa import media
from vasa.errors import VasaError
from vasa.face.mesh import MeshFace, edits
from vasa.face.mesh.model import OUTER_LIPS, FaceModel
from vasa.latents import Motion
from vasa.reenact import reenact, retarget


def luma(image):
    return image.astype(np.float64) @ [0.299, 0.587, 0.114]


@pytest.fixture(scope="module")
def hopper_face():
    return MeshFace(size=256)


@pytest.fixture(scope="module")
def reenacted(tmp_path_factory, grace_hopper, driver_clip, hopper_face):
    """only -> output path, one reenactment per transfer mode."""
    folder = tmp_path_factory.mktemp("reenact")
    outputs = {}
    for only in (None, "pose", "dynamics"):
        path = folder / f"{only}.mp4"
        count = reenact(grace_hopper, driver_clip, path, only=only, progress=False, face=hopper_face)
        assert count == DRIVER_FRAMES
        outputs[only] = path
    return outputs


@pytest.fixture(scope="module")
def measured(reenacted, remeasure):
    """only -> (re-extracted poses (T, 6), mouth openings (T,)) of the output frames."""
    results = {}
    for only, path in reenacted.items():
        poses, mouths = [], []
        for frame in media.iter_video_frames(path):
            canonical, pose, _ = remeasure(frame)
            poses.append(pose)
            mouths.append(FaceModel.mouth_opening(canonical))
        results[only] = np.array(poses), np.array(mouths)
    return results


def test_output_has_every_driver_frame_and_the_soundtrack(reenacted, driver_clip):
    info = media.probe_video(reenacted[None])
    assert (info.width, info.height, info.has_audio) == (256, 256, True)
    assert len(list(media.iter_video_frames(reenacted[None]))) == DRIVER_FRAMES
    samples, rate = media.read_audio(reenacted[None])
    spectrum = np.abs(np.fft.rfft(samples[0]))
    assert np.fft.rfftfreq(samples.shape[1], 1 / rate)[spectrum.argmax()] == pytest.approx(440.0, abs=5.0)


def test_first_frame_is_the_portrait_in_pose_only_transfer(reenacted, grace_hopper, hopper_face):
    # Head pose is relative to the driver's first frame, so frame 0 of a pose-only transfer shows
    # the portrait as it is. H.264 4:2:0 alone costs ~3.5 levels on this photo; a 5 deg turn ~13.
    appearance, _ = hopper_face.encode(grace_hopper)
    first = next(media.iter_video_frames(reenacted["pose"]))
    assert np.abs(first.astype(float) - appearance.image).mean() < 5.0


def test_full_transfer_moves_head_and_mouth(measured):
    poses, mouths = measured[None]
    assert np.ptp(poses[:, 0]) > 10.0  # the driver swings its yaw by +-15 deg
    assert np.ptp(mouths) > 0.1  # and opens its mouth from 0.05 to 0.2


def test_pose_only_keeps_the_mouth_still(measured):
    _, full = measured[None]
    _, pose_only = measured["pose"]
    assert np.ptp(pose_only) < 0.2 * np.ptp(full)


def test_pose_only_still_moves_the_head(measured):
    full, _ = measured[None]
    pose_only, _ = measured["pose"]
    assert np.ptp(pose_only[:, 0]) > 0.5 * np.ptp(full[:, 0])


def test_dynamics_only_keeps_the_head_still(measured):
    # Re-extracted yaw still moves a little (an opening jaw tilts mediapipe's fit), much less than the driver's turn.
    full, _ = measured[None]
    dynamics_only, _ = measured["dynamics"]
    assert np.ptp(dynamics_only[:, 0]) < 0.5 * np.ptp(full[:, 0])


def test_dynamics_only_still_moves_the_mouth(measured):
    _, full = measured[None]
    _, dynamics_only = measured["dynamics"]
    assert np.ptp(dynamics_only) > 0.5 * np.ptp(full)


def test_audio_override_replaces_the_soundtrack(tmp_path, grace_hopper, driver_clip, hopper_face):
    tone = tmp_path / "tone.mp4"
    media.write_video(tone, [np.zeros((32, 32, 3), np.uint8)] * 25, 25.0, sine(880.0, 1.0))
    out = tmp_path / "out.mp4"
    reenact(grace_hopper, driver_clip, out, audio=tone, progress=False, face=hopper_face)
    samples, rate = media.read_audio(out)
    assert samples.shape[1] / rate == pytest.approx(DRIVER_FRAMES / 25.0, abs=0.1)  # cut to the video
    spectrum = np.abs(np.fft.rfft(samples[0]))
    assert np.fft.rfftfreq(samples.shape[1], 1 / rate)[spectrum.argmax()] == pytest.approx(880.0, abs=5.0)


def test_frames_before_the_first_face_hold_the_portrait(tmp_path, grace_hopper, driver_clip, hopper_face):
    noise = [np.random.default_rng(i).integers(0, 256, (256, 256, 3), dtype=np.uint8) for i in range(3)]
    clip = tmp_path / "late_face.mp4"
    media.write_video(clip, noise + list(media.iter_video_frames(driver_clip)), 25.0)
    out = tmp_path / "out.mp4"
    assert reenact(grace_hopper, clip, out, progress=False, face=hopper_face) == 3 + DRIVER_FRAMES
    frames = list(media.iter_video_frames(out))
    for frame in frames[:4]:  # three held frames, then the reference frame itself
        assert np.abs(frame.astype(float) - frames[0]).mean() < 2.0
    assert media.read_audio(out) is None  # the driver had no soundtrack


def test_driver_closing_its_mouth_leaves_a_closed_mouth_closed(tmp_path, face, encoded, grace_hopper, hopper_face):
    # Real drivers often start mid-word: here frame 0 is wide open and the mouth then closes.
    # Grace Hopper's closed mouth cannot close further; it must not turn into a dark hole.
    appearance, source = encoded
    openings = [0.2, 0.2, 0.1, 0.0, 0.0, 0.0]
    clip = tmp_path / "closing.mp4"
    media.write_video(clip, [face.decode(appearance, edits.open_mouth(face, appearance, source, o))
                             for o in openings], 25.0)
    out = tmp_path / "out.mp4"
    reenact(grace_hopper, clip, out, progress=False, face=hopper_face)
    portrait, _ = hopper_face.encode(grace_hopper)
    lips = portrait.texture.source_points[list(OUTER_LIPS)] * portrait.size
    (x0, y0), (x1, y1) = np.floor(lips.min(axis=0)).astype(int) - 3, np.ceil(lips.max(axis=0)).astype(int) + 3
    before = luma(portrait.image[y0:y1, x0:x1]).mean()
    for frame in list(media.iter_video_frames(out))[-3:]:  # the driver's closed-mouth frames
        assert luma(frame[y0:y1, x0:x1]).mean() > 0.9 * before  # measured 0.78 while broken


def test_retarget_with_the_reference_frame_gives_the_source():
    rng = np.random.default_rng(0)
    source = Motion(np.r_[rng.normal(size=3) * 10, 0.5, 0.5, 0.3], rng.normal(size=8))
    reference = Motion(np.r_[rng.normal(size=3) * 10, 0.4, 0.6, 0.2], rng.normal(size=8))
    for only in (None, "pose", "dynamics"):
        result = retarget(source, reference, reference, only)
        np.testing.assert_allclose(result.pose, source.pose, atol=1e-9)
        np.testing.assert_allclose(result.dynamics, source.dynamics, atol=1e-12)


def test_retarget_only_selects_what_moves():
    source = Motion([0, 0, 0, 0.5, 0.5, 0.3], np.zeros(4))
    reference = Motion([0, 0, 0, 0.5, 0.5, 0.3], np.zeros(4))
    driver = Motion([10, 0, 0, 0.5, 0.5, 0.3], np.ones(4))
    assert retarget(source, driver, reference, "pose").dynamics.tolist() == [0, 0, 0, 0]
    assert retarget(source, driver, reference, "pose").pose[0] == pytest.approx(10.0)
    assert retarget(source, driver, reference, "dynamics").pose[0] == 0.0
    assert retarget(source, driver, reference, "dynamics").dynamics.tolist() == [1, 1, 1, 1]
    with pytest.raises(VasaError, match="only"):
        retarget(source, driver, reference, "mouth")


def test_bad_output_path_fails_before_any_work(tmp_path, driver_clip):
    with pytest.raises(VasaError, match="does not exist"):
        reenact("no-such-portrait.png", driver_clip, tmp_path / "missing" / "out.mp4", progress=False)


def test_pasting_the_unmoved_crop_back_restores_the_photo(grace_hopper, hopper_face):
    photo = media.read_image(grace_hopper)
    appearance, motion = hopper_face.encode(photo)
    pasted = appearance.crop.paste(hopper_face.decode(appearance, motion), photo)
    assert pasted.shape == photo.shape
    corner = (slice(0, 20), slice(0, 20))  # far outside the face crop
    np.testing.assert_array_equal(pasted[corner], photo[corner])
    # Inside, only the crop's resampling there and back differs.
    assert np.abs(pasted.astype(float) - photo).mean() < 3.0


def test_paste_back_writes_the_whole_photo(tmp_path, grace_hopper, driver_clip, hopper_face):
    out = tmp_path / "whole.mp4"
    reenact(grace_hopper, driver_clip, out, paste_back=True, progress=False, face=hopper_face)
    photo = media.read_image(grace_hopper)
    first = next(media.iter_video_frames(out))
    assert first.shape == (photo.shape[0] // 2 * 2, photo.shape[1] // 2 * 2, 3)
