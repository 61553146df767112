"""vasa and a current Pipecat (the `agent` extra) live in one environment."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest

pipecat = pytest.importorskip("pipecat", reason="the agent extra (pip install 'vasa[agent]') is not installed")


def test_pipecat_1x_runs_beside_vasa(astronaut):
    from pipecat.frames.frames import OutputImageRawFrame

    from vasa.face.landmarker import LandmarkDetector

    version = tuple(int(part) for part in importlib.metadata.version("pipecat-ai").split(".")[:2])
    assert version >= (1, 0)
    assert int(np.__version__.split(".")[0]) >= 2
    with LandmarkDetector() as detector:  # mediapipe's tracker next to Pipecat's protobuf
        assert detector.landmarks(astronaut) is not None
    frame = OutputImageRawFrame(image=astronaut.tobytes(), size=(512, 512), format="RGB")
    assert np.array_equal(np.frombuffer(frame.image, np.uint8).reshape(512, 512, 3), astronaut)
