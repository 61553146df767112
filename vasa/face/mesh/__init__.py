"""The mesh face backend: explicit 3D landmark geometry behind the `Appearance`/`Motion` interface.

backend.py: `MeshFace`, the backend `--face mesh` selects (exported here); space.py: `MeshMotionSpace`,
the mesh latent's relative-motion space; model.py: `FaceModel`, the shipped face model (its files in
assets/) and the landmark index sets; warp.py, eyes.py, mouth.py, seams.py: rendering (the dense warp,
irises under the lids, the mouth interior, the lines where lips or lids meet); edits.py: mouth, blink
and gaze edits of the latent; expressions.py: FACS emotions on the mesh; derive.py: deriving the face
model from videos. The shared layer (geometry, the face tracker, choosing a backend) is `vasa.face`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vasa.face.mesh.backend import MeshFace

__all__ = ["MeshFace"]


def __getattr__(name: str):
    # MeshFace loads on first use, so that importing a light submodule (model, geometry constants) does
    # not import the renderer (cv2, scipy) with it
    if name == "MeshFace":
        from vasa.face.mesh.backend import MeshFace

        return MeshFace
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
