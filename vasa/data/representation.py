"""Moved: the generic relative-motion space is `vasa.latents.LatentSpace` (with `Reference`), the mesh
latent's `vasa.face.mesh_space.MeshMotionSpace` (formerly `MotionSpace`), and `space_for` lives in
`vasa.face.backends`. These names stay importable from here for code written against the old path."""

from vasa.face.backends import space_for
from vasa.face.mesh_space import CLOSED_MOUTH_OPENING, CLOSED_MOUTH_PERCENTILE, MeshMotionSpace
from vasa.latents import LatentSpace, Reference

MotionSpace = MeshMotionSpace

__all__ = ["CLOSED_MOUTH_OPENING", "CLOSED_MOUTH_PERCENTILE", "LatentSpace", "MeshMotionSpace", "MotionSpace",
           "Reference", "space_for"]
