"""The face backend contract (`vasa.latents.FaceBackend`): what the pipeline asks of a face latent, answered by
the mesh backend from its face model and by the neural one with "not known"; and the pipeline asking the
backend instead of branching on which backend it is."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vasa.controls import Controls
from vasa.errors import VasaError
from vasa.face.mesh import edits
from vasa.face.mesh.space import MeshMotionSpace
from vasa.face.neural import PRESETS, NeuralFaceModel
from vasa.face.neural.backend import NeuralFace
from vasa.latents import EMOTION_NAMES, Eyelids, FaceBackend, LatentSpace, Motion
from vasa.stages import blink_control

PACKAGE = Path(__file__).resolve().parents[1] / "vasa"


@pytest.fixture(scope="module")
def neural() -> NeuralFace:
    torch.manual_seed(0)
    return NeuralFace(NeuralFaceModel(PRESETS["tiny"]), size=64)


def test_both_backends_provide_the_whole_protocol(face, neural):
    members = {"name", "size", "dynamics_dim", "space", "mouth_mask", "eyelids", "encode", "decode", "gaze",
               "with_expression", "keep_physical"}
    assert members <= set(dir(FaceBackend)) | set(FaceBackend.__annotations__)
    for backend in (face, neural):
        assert isinstance(backend, FaceBackend)
        assert isinstance(backend.space, LatentSpace) and backend.space.dim == 6 + backend.dynamics_dim
        mask = backend.mouth_mask
        assert mask.dtype == bool and mask.shape == (backend.dynamics_dim,)


def test_the_mesh_backend_answers_from_its_face_model(face, encoded):
    appearance, motion = encoded
    model = face.model
    assert type(face.space) is MeshMotionSpace and face.space.model is model and face.space is face.space
    np.testing.assert_array_equal(face.mouth_mask, model.group_mask("mouth"))
    assert face.mouth_mask.any() and not face.mouth_mask.all()
    assert face.gaze(appearance) == tuple(float(g) for g in model.eye_gaze(appearance.identity))
    lids = face.eyelids
    assert isinstance(lids, Eyelids) and lids.jacobian.shape == lids.directions.shape == (2, face.dynamics_dim)
    np.testing.assert_array_equal(lids.opening(appearance), model.eye_opening(appearance.identity))
    assert face.with_expression(appearance, np.zeros(len(EMOTION_NAMES))) is appearance
    happy = face.with_expression(appearance, np.eye(len(EMOTION_NAMES))[EMOTION_NAMES.index("happy")])
    assert happy is not appearance and not np.allclose(happy.identity, appearance.identity)
    crossed = motion.replace(dynamics=motion.dynamics - 3 * model.directions["mouth_open"])
    expected = edits.keep_physical(face, appearance, crossed)
    np.testing.assert_array_equal(face.keep_physical(appearance, crossed).dynamics, expected.dynamics)


def test_the_neural_backend_knows_no_parts_of_its_latent(neural, astronaut):
    appearance, motion = neural.encode(astronaut)
    assert type(neural.space) is LatentSpace and not neural.space.can_shift_gaze
    assert not neural.mouth_mask.any()
    assert neural.eyelids is None and neural.gaze(appearance) is None
    assert neural.with_expression(appearance, np.ones(len(EMOTION_NAMES))) is appearance
    assert neural.keep_physical(appearance, motion) is motion
    np.testing.assert_array_equal(neural.space.lids_for_gaze((0.0, 0.0), (0.0, 10.0)), np.zeros(neural.dynamics_dim))
    reference = neural.space.portrait_reference(motion.pose, motion.dynamics, appearance.identity)
    np.testing.assert_array_equal(reference.dynamics, motion.dynamics)


def test_blink_control_asks_the_backend_for_eyelids(face, neural, encoded):
    with pytest.raises(VasaError, match="needs the mesh face backend"):
        blink_control(SimpleNamespace(face=neural), None, Controls(blinks=10))
    with pytest.raises(VasaError, match="no portrait"):
        blink_control(SimpleNamespace(face=face), None, Controls(blinks=10))
    source = SimpleNamespace(appearance=encoded[0])
    assert blink_control(SimpleNamespace(face=face), source, Controls(blinks=10)) is not None


BRANCHES = re.compile(r"(?<!face)\.mesh\b|\bname\s*[!=]=\s*[\"'](mesh|neural)[\"']|isinstance\([^)]*(MeshFace|NeuralFace)"
                      r"|\bface\.model\b|getattr\([^)]*[\"']name[\"']")


def test_the_branch_finder_knows_a_branch():
    assert BRANCHES.search("if head.mesh:") and BRANCHES.search('self.mesh = face.name == "mesh"')
    assert BRANCHES.search("model = head.face.model") and BRANCHES.search("isinstance(face, MeshFace)")
    assert not BRANCHES.search("from vasa.face.mesh import MeshFace") and not BRANCHES.search("head.face.space")


@pytest.mark.parametrize("module", ["pipeline.py", "stages.py", "streaming.py", "controls.py"])
def test_the_pipeline_asks_the_backend_never_which_it_is(module):
    code = [line.split("#")[0] for line in (PACKAGE / module).read_text().splitlines()]
    found = [f"{module}:{n}: {line.strip()}" for n, line in enumerate(code, 1) if BRANCHES.search(line)]
    assert not found, found


def test_motion_shapes_pass_through_the_generic_space(neural):
    space = neural.space
    x = np.random.default_rng(0).normal(size=(5, space.dim))
    x[:, 5] += 1.0
    reference = space.portrait_reference(np.array([1.0, 2, 3, 0.1, 0.2, 1.5]), np.zeros(neural.dynamics_dim))
    pose, dynamics = space.to_absolute(x, reference)
    np.testing.assert_allclose(space.to_relative(pose, dynamics, reference), x)
    assert Motion(pose, dynamics).batch_shape == (5,)
