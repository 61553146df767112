"""The blendshape emotion labeller that `vasa prepare` uses (vasa/assets/emotion_blendshapes.safetensors)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vasa.errors import VasaError
from vasa.face.blendshape_emotion import BlendshapeEmotion
from vasa.latents import EMOTION_NAMES
from vasa.face.landmarker import BLENDSHAPE_NAMES


@pytest.fixture(scope="module")
def labeller() -> BlendshapeEmotion:
    return BlendshapeEmotion.load()


def shapes(**scores) -> np.ndarray:
    x = np.zeros(len(BLENDSHAPE_NAMES), np.float32)
    for name, value in scores.items():
        x[BLENDSHAPE_NAMES.index(name)] = value
    return x


def test_probabilities_over_the_project_emotions(labeller):
    batch = np.random.default_rng(0).uniform(0, 1, (5, 3, len(BLENDSHAPE_NAMES)))
    p = labeller.probabilities(batch)
    assert p.shape == (5, 3, len(EMOTION_NAMES)) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(-1), 1, atol=1e-5)


def test_a_smile_reads_happy_and_wide_eyes_with_an_open_jaw_surprise(labeller, detector, astronaut):
    happy, surprise = EMOTION_NAMES.index("happy"), EMOTION_NAMES.index("surprise")
    smile = labeller.probabilities(shapes(mouthSmileLeft=0.9, mouthSmileRight=0.9, cheekSquintLeft=0.4,
                                          cheekSquintRight=0.4))
    assert smile.argmax() == happy
    rest = labeller.probabilities(shapes())
    astonished = labeller.probabilities(shapes(jawOpen=0.8, eyeWideLeft=0.8, eyeWideRight=0.8, browInnerUp=0.8,
                                               browOuterUpLeft=0.8, browOuterUpRight=0.8))
    assert astonished[surprise] > 2 * rest[surprise]
    # the astronaut's smile, through the tracker
    assert labeller.probabilities(detector.track(astronaut).blendshapes).argmax() == happy


def test_save_load_round_trip_and_foreign_files(labeller, tmp_path):
    path = tmp_path / "labeller.safetensors"
    BlendshapeEmotion(labeller.weight * 2, labeller.bias, {"note": "x"}).save(path)
    again = BlendshapeEmotion.load(path)
    np.testing.assert_array_equal(again.weight, labeller.weight * 2)
    assert again.info == {"note": "x"}
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not safetensors' private 0o600
    with pytest.raises(VasaError, match="weight"):
        BlendshapeEmotion(labeller.weight[:, :10], labeller.bias)
    with pytest.raises(VasaError, match="expected"):
        labeller.probabilities(np.zeros(51))
    from safetensors.numpy import save_file

    save_file({"weight": labeller.weight, "bias": labeller.bias}, str(tmp_path / "other.safetensors"),
              metadata={"blendshapes": "[\"jawOpen\"]", "emotions": "not json"})
    with pytest.raises(VasaError, match="cannot read the blendshape emotion model"):
        BlendshapeEmotion.load(tmp_path / "other.safetensors")
    save_file({"weight": labeller.weight, "bias": labeller.bias}, str(tmp_path / "other.safetensors"),
              metadata={"blendshapes": "[\"jawOpen\"]", "emotions": "[]"})
    with pytest.raises(VasaError, match="its blendshapes are not the ones"):
        BlendshapeEmotion.load(tmp_path / "other.safetensors")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(VasaError, match="cannot read the blendshape emotion model"):
        BlendshapeEmotion.load(tmp_path / "junk.safetensors")
