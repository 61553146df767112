"""Fitting the mouth read-out (`vasa.motion.readout`) on training records, the trainer's way.

    readout = fit_readout(training_files)       # None for a face latent with no known mouth coefficients

The targets are the generator's own x (`MotionWindows`: relative to each segment's rest face), so the
read-out and the generator speak of the same mouth. Files are read one at a time: the fit keeps only
sums, whatever the size of the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from vasa.data.records import read_record
from vasa.face.backends import space_for
from vasa.face.mesh.space import MeshMotionSpace
from vasa.latents import POSE_DIM
from vasa.motion.readout import CONTEXT, DEFAULT_BLEND, MouthReadout, fit_mouth_readout


def fit_readout(files: Iterable[Path], blend: float = DEFAULT_BLEND,
                context: Iterable[int] = CONTEXT) -> MouthReadout | None:
    """The read-out of the mouth columns fitted on the segments of record `files` (None: no mouth columns)."""
    files = list(files)
    if not files:
        return None
    first = next((r for r in map(read_record, files) if any(len(s) for s in r.segments)), None)
    if first is None:  # no record kept any frames: nothing to fit
        return None
    dims = [s.dynamics.shape[1] for s in first.segments if len(s)]
    space = space_for(first.face_backend, dims[0])
    if not isinstance(space, MeshMotionSpace):
        return None
    columns = POSE_DIM + np.flatnonzero(space.model.group_mask("mouth"))

    def parts() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for path in files:
            for segment in read_record(path).segments:
                if len(segment):
                    reference = space.segment_reference(segment.pose, segment.dynamics, segment.gaze)
                    yield segment.audio, space.to_relative(segment.pose, segment.dynamics, reference)

    return fit_mouth_readout(parts(), columns, blend, context=context)
