"""Choosing a face backend: `--face mesh` (geometry, the default) or `--face neural --face-checkpoint PATH`,
and the relative-motion space of a backend's latents by its name (`space_for`, for prepared records)."""

from __future__ import annotations

import os

from vasa.errors import VasaError
from vasa.latents import LatentSpace

FACE_BACKENDS = ("mesh", "neural")


def load_face(name: str = "mesh", checkpoint: str | os.PathLike | None = None, size: int = 512,
              device: str = "cpu"):
    """The face backend `name` at output side `size`: a MeshFace, or a NeuralFace from `checkpoint`."""
    if name == "mesh":
        if checkpoint is not None:
            raise VasaError("--face-checkpoint is for --face neural; the mesh backend needs no checkpoint")
        from vasa.face.mesh import MeshFace

        return MeshFace(size=size)
    if name == "neural":
        if checkpoint is None:
            raise VasaError("--face neural needs --face-checkpoint PATH (a model.safetensors written by "
                            "`vasa train face`; none ships with vasa)")
        from vasa.face.neural.backend import NeuralFace

        return NeuralFace.from_checkpoint(checkpoint, size=size, device=device)
    raise VasaError(f"unknown face backend {name!r}: choose from {', '.join(FACE_BACKENDS)}")


def space_for(face_backend: str, dynamics_dim: int) -> LatentSpace:
    """The relative-motion space of a face backend's latents: the mesh latent's own, or the generic one."""
    if face_backend == "mesh":
        from vasa.face.mesh.space import MeshMotionSpace

        space = MeshMotionSpace()
        if space.model.dim != dynamics_dim:
            raise VasaError(f"mesh latents with {dynamics_dim} dynamics coefficients, the shipped face model has "
                            f"{space.model.dim}: prepared with another face model")
        return space
    return LatentSpace(dynamics_dim)
