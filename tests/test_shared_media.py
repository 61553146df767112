"""Real third-party portraits and clips from ../shared/media (never shipped): skipped when absent."""

import itertools

import numpy as np
import pytest

from conftest import SHARED_MEDIA
from vasa import media
from vasa.reenact import reenact

pytestmark = [pytest.mark.skipif(not SHARED_MEDIA.is_dir(), reason=f"no shared media at {SHARED_MEDIA}"), pytest.mark.media]

PORTRAITS = sorted((SHARED_MEDIA / "portraits").glob("*")) if SHARED_MEDIA.is_dir() else []
CLIPS = sorted((SHARED_MEDIA / "clips").glob("*.mp4")) if SHARED_MEDIA.is_dir() else []


@pytest.mark.parametrize("path", PORTRAITS, ids=lambda p: p.name)
def test_every_portrait_encodes_and_decodes_exactly(face, path):
    # Photos, paintings, a sketch, RGBA cut-outs: all must give a face and an exact reconstruction.
    appearance, motion = face.encode(path)
    np.testing.assert_array_equal(face.decode(appearance, motion), appearance.image)


@pytest.mark.parametrize("path", CLIPS, ids=lambda p: p.name)
def test_every_clip_resamples_to_its_duration(path):
    # Includes a variable-frame-rate clip (avg 22.13 fps) and a 30 fps one.
    info = media.probe_video(path)
    count = sum(1 for _ in media.iter_video_frames(path, 25.0))
    assert abs(count - info.duration_s * 25.0) <= 1.0


def test_reenact_with_a_real_driver(tmp_path, grace_hopper):
    frames = list(itertools.islice(media.iter_video_frames(SHARED_MEDIA / "clips" / "edtalk_mouth_source.mp4"), 25))
    clip = tmp_path / "driver.mp4"
    media.write_video(clip, frames, 25.0, media.read_audio(SHARED_MEDIA / "clips" / "edtalk_mouth_source.wav"))
    out = tmp_path / "out.mp4"
    assert reenact(grace_hopper, clip, out, size=256, progress=False) == 25
    assert media.probe_video(out).has_audio
