"""`NeuralFaceModel`: the networks of networks.py composed into VASA-1's face latent space, and its checkpoints.

    encode_motion(image)                       -> z_pose (B, 6), z_dyn (B, K)
    encode_appearance(image, z_pose, z_dyn)    -> V_app (B, C, D, V, V), z_id (B, I)
    decode(V_app, z_id, z_pose, z_dyn)         -> image (B, 3, S, S) in [-1, 1]

encode_appearance: E_app's volume is brought to the canonical frame by the inverse rigid pose and
the non-rigid warp W_s->c(z_id, z_dyn_source), then refined by G_3D (done once per portrait).
decode: W_c->d(z_id, z_dyn_driving) and the driving rigid pose move V_app, G_2D renders it.
A checkpoint is safetensors with the config in its metadata; loading is strict.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import torch
from torch import Tensor, nn

from vasa.checkpoints import load_weights, read_weights_metadata, save_weights
from vasa.errors import VasaError
from vasa.face.neural import warps
from vasa.face.neural.config import NeuralFaceConfig
from vasa.face.neural.networks import AppearanceEncoder, CanonicalNet, Decoder, VectorEncoder, WarpGenerator

CONFIG_KEY = "vasa.face.neural.config"
# z_pose from the motion encoder's raw outputs: identity pose + raw * unit. Units are a typical
# spread of each pose component, so the raw outputs are of order one.
POSE_UNITS = (20.0, 20.0, 20.0, 0.1, 0.1, 0.05)  # degrees, degrees, degrees, crop units, crop units, scale


class NeuralFaceModel(nn.Module):
    def __init__(self, config: NeuralFaceConfig):
        super().__init__()
        self.config = config
        self.appearance_encoder = AppearanceEncoder(config)
        self.identity_encoder = VectorEncoder(config, config.identity_dim)
        self.motion_encoder = VectorEncoder(config, 6 + config.dynamics_dim, zero_head=True)
        self.warp_to_canonical = WarpGenerator(config)
        self.warp_to_driving = WarpGenerator(config)
        self.canonical = CanonicalNet(config)
        self.decoder = Decoder(config)
        self.register_buffer("pose_units", torch.tensor(POSE_UNITS), persistent=False)
        self.register_buffer("pose_origin", torch.tensor(warps.IDENTITY_POSE), persistent=False)

    def _check(self, image: Tensor) -> None:
        size = self.config.size
        if image.dim() != 4 or image.shape[1:] != (3, size, size):
            raise VasaError(f"the neural face model takes (B, 3, {size}, {size}) images, got {tuple(image.shape)}")

    def encode_motion(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """image (B, 3, S, S) in [-1, 1] -> z_pose (B, 6) (`Motion.pose` units), z_dyn (B, K)."""
        self._check(image)
        raw = self.motion_encoder(image)  # (B, 6 + K)
        return self.pose_origin + raw[:, :6] * self.pose_units, raw[:, 6:]

    def encode_identity(self, image: Tensor) -> Tensor:
        self._check(image)
        return self.identity_encoder(image)  # (B, I)

    def encode_appearance(self, image: Tensor, pose: Tensor, dynamics: Tensor) -> tuple[Tensor, Tensor]:
        """image (B, 3, S, S) and its own motion -> (V_app (B, C, D, V, V), z_id (B, I))."""
        self._check(image)
        identity = self.identity_encoder(image)
        volume = self.appearance_encoder(image)  # (B, C, D, V, V) in the source's pose
        field = self.warp_to_canonical(identity, dynamics)
        canonical = warps.source_to_canonical(volume, pose, field)
        return self.canonical(canonical), identity

    def decode(self, volume: Tensor, identity: Tensor, pose: Tensor, dynamics: Tensor) -> Tensor:
        """V_app (B, C, D, V, V), z_id (B, I), z_pose (B, 6), z_dyn (B, K) -> image (B, 3, S, S)."""
        field = self.warp_to_driving(identity, dynamics)
        return self.decoder(warps.canonical_to_driving(volume, pose, field))

    def forward(self, source: Tensor, driver: Tensor) -> Tensor:
        """Reenact: the source (B, 3, S, S) with the driver's pose and dynamics."""
        volume, identity = self.encode_appearance(source, *self.encode_motion(source))
        return self.decode(volume, identity, *self.encode_motion(driver))


def save_face_model(path: str | os.PathLike, model: NeuralFaceModel, metadata: dict[str, str] | None = None) -> None:
    """Weights + config (+ string `metadata`) as safetensors; complete or not at all (temp file, rename)."""
    save_weights(path, model, {**(metadata or {}), CONFIG_KEY: json.dumps(asdict(model.config))})


def read_face_metadata(path: str | os.PathLike) -> dict[str, str]:
    metadata = read_weights_metadata(path, "neural face checkpoint")
    if CONFIG_KEY not in metadata:
        raise VasaError(f"{path} has no {CONFIG_KEY} metadata: not a checkpoint written by `vasa train face`")
    return metadata


def load_face_model(path: str | os.PathLike) -> NeuralFaceModel:
    """The model saved at `path`, in eval mode; strict keys; a mismatch is a VasaError."""
    metadata = read_face_metadata(path)
    return load_weights(path, NeuralFaceModel(NeuralFaceConfig(**json.loads(metadata[CONFIG_KEY]))))
