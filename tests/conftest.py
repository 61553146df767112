"""Shared fixtures: public-domain test media that ship with installed packages, and one encoded
astronaut reused by every test that only decodes (encode once, decode many)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from skimage import data

from vasa.face.landmarker import LandmarkDetector
from vasa.face.mesh import MeshFace, edits
from vasa.media import write_video

torch.set_num_threads(1)
np.random.seed(0)
# the local signing identity (vasa.provenance.manifest) is made here, not in the user's ~/.config
os.environ["VASA_CONFIG_DIR"] = tempfile.mkdtemp(prefix="vasa-test-config-")

SIZE = 256  # working crop for tests: landmarks stay reliable, decode stays cheap
SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return data.astronaut()  # (512, 512, 3) uint8 RGB


@pytest.fixture(scope="session")
def grace_hopper() -> Path:
    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.fixture(scope="session")
def face() -> MeshFace:
    return MeshFace(size=SIZE)


@pytest.fixture(scope="session")
def encoded(face, astronaut):
    """(Appearance, Motion) of the astronaut at the test size."""
    return face.encode(astronaut)


@pytest.fixture(scope="session")
def detector():
    with LandmarkDetector() as detector:
        yield detector


@pytest.fixture(scope="session")
def remeasure(face, detector):
    """Landmark a rendered crop again -> (canonical shape (478, 3), pose (6,), points (478, 3))."""

    def measure(frame: np.ndarray):
        points = detector.landmarks(frame)
        assert points is not None, "no face found in a rendered frame"
        canonical, pose, _ = face.model.canonicalize(points)
        return canonical, pose, points

    return measure


def voiced_bursts(seconds: float = 1.9, voiced_until: float = 1.4, rate: int = 16000) -> np.ndarray:
    """Speech-like audio: 4 Hz bursts of a 140 Hz voice's harmonics, silent after `voiced_until` s."""
    t = np.arange(int(seconds * rate)) / rate
    voiced = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700), start=1))
    return (0.3 * voiced * np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (t < voiced_until)).astype(np.float32)


def sine(frequency_hz: float, seconds: float, sample_rate: int = 16000) -> tuple[np.ndarray, int]:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.5 * np.sin(2 * np.pi * frequency_hz * t))[None].astype(np.float32), sample_rate


DRIVER_FRAMES = 12


@pytest.fixture(scope="session")
def driver_motions(face, encoded):
    """A short talking-and-turning motion of the astronaut: yaw swings, mouth opens and closes."""
    appearance, source = encoded
    motions = []
    for i in range(DRIVER_FRAMES):
        phase = np.sin(2 * np.pi * i / DRIVER_FRAMES)
        motion = edits.turn(source, yaw=15 * phase, pitch=5 * phase)
        opening = 0.05 + 0.15 * abs(np.sin(np.pi * i / 4))
        motions.append(edits.open_mouth(face, appearance, motion, opening))
    return motions


@pytest.fixture(scope="session")
def driver_clip(tmp_path_factory, face, encoded, driver_motions) -> Path:
    """12 frames at 25 fps, 256 px, with a 440 Hz soundtrack."""
    appearance, _ = encoded
    path = tmp_path_factory.mktemp("driver") / "driver.mp4"
    frames = [face.decode(appearance, m) for m in driver_motions]
    write_video(path, frames, 25.0, sine(440.0, DRIVER_FRAMES / 25.0))
    return path
