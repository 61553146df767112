"""`NeuralFace`: the learned face latent behind the `Appearance`/`Motion` interface (`--face neural`).

encode: portrait -> aligned crop (the mesh backend's face framing) -> z_pose, z_dyn (Motion) and
V_app, z_id (Appearance.texture, Appearance.identity). decode: (Appearance, Motion) -> frame.
Motion.pose is in `vasa.face.geometry`'s units (degrees, crop units), so head-pose edits and relative
pose composition work as with the mesh backend; Motion.dynamics is the learned z_dyn (no named
directions: mouth, blink and gaze edits of `vasa.face.mesh.edits` are mesh-only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import cv2
import numpy as np
import torch
from torch import Tensor

from vasa.errors import VasaError
from vasa.face.landmarker import LandmarkDetector
from vasa.face.landmarks import VideoTracker, locate_portrait
from vasa.face.neural.model import NeuralFaceModel, load_face_model
from vasa.latents import Appearance, Eyelids, LatentSpace, Motion
from vasa.media import read_image

ENCODE_BATCH = 16  # driver frames per motion-encoder call


@dataclass(frozen=True)
class NeuralTexture:
    """The neural backend's per-portrait render structure: the canonical volume V_app (1, C, D, V, V)."""

    volume: Tensor


class NeuralFace:
    """Face backend with a trained `NeuralFaceModel`; `size` is the output side (frames are resized from
    the model's own size when they differ)."""

    name = "neural"

    def __init__(self, model: NeuralFaceModel, size: int = 512, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
        if size < 64 or size % 2:
            raise VasaError(f"output size must be an even number of pixels, at least 64; got {size}")
        self.model = model.eval().to(device=device, dtype=dtype)
        self.size = size
        self.device, self.dtype = torch.device(device), dtype

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, size: int = 512, device: str = "cpu") -> "NeuralFace":
        return cls(load_face_model(path), size, device)

    @property
    def dynamics_dim(self) -> int:
        return self.model.config.dynamics_dim

    # --- what is known of the learned latent (`vasa.latents.FaceBackend`): only its size ---------------------
    @cached_property
    def space(self) -> LatentSpace:
        """The generic relative-motion space: no resting mouth, straight eyes or gaze augmentation."""
        return LatentSpace(self.dynamics_dim)

    @property
    def mouth_mask(self) -> np.ndarray:
        return np.zeros(self.dynamics_dim, dtype=bool)  # no known mouth coefficients: no silence gate

    @property
    def eyelids(self) -> Eyelids | None:
        return None  # no known eyelids: no blink control

    def gaze(self, appearance: Appearance) -> None:
        return None  # no known eyes: the gaze condition defaults to "absent"

    def with_expression(self, appearance: Appearance, weights: np.ndarray) -> Appearance:
        return appearance  # no known expressions

    def keep_physical(self, appearance: Appearance, motion: Motion) -> Motion:
        return motion  # no known lips or lids

    # --- tensors <-> images -------------------------------------------------------------------------------
    def _input(self, crops: np.ndarray) -> Tensor:
        """(N, s, s, 3) uint8 crops of any side -> (N, 3, S, S) in [-1, 1] at the model's size."""
        side = self.model.config.size
        resized = np.stack([c if c.shape[0] == side else cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA)
                            for c in crops])
        x = torch.from_numpy(resized).to(self.device).permute(0, 3, 1, 2)
        return x.to(self.dtype) / 127.5 - 1

    def _output(self, images: Tensor) -> np.ndarray:
        frames = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        if frames.shape[1] == self.size:
            return frames
        return np.stack([cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_LINEAR) for f in frames])

    # --- encoding -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def motion_from_crops(self, crops: np.ndarray) -> Motion:
        """Aligned face crops (N, s, s, 3) uint8 -> Motion (N,)."""
        poses, dynamics = [], []
        for start in range(0, len(crops), ENCODE_BATCH):
            pose, dyn = self.model.encode_motion(self._input(crops[start:start + ENCODE_BATCH]))
            poses.append(pose.float().cpu().numpy())
            dynamics.append(dyn.float().cpu().numpy())
        return Motion(np.concatenate(poses), np.concatenate(dynamics))

    @torch.no_grad()
    def encode(self, image) -> tuple[Appearance, Motion]:
        """A portrait (path or RGB array, any size) -> (Appearance, its Motion)."""
        rgb = read_image(image)
        with LandmarkDetector() as detector:
            crop = locate_portrait(rgb, self.size, detector)
        cropped = crop.apply(rgb)
        x = self._input(cropped[None])
        pose, dynamics = self.model.encode_motion(x)
        volume, identity = self.model.encode_appearance(x, pose, dynamics)
        source = Motion(pose[0].float().cpu().numpy(), dynamics[0].float().cpu().numpy())
        return Appearance(cropped, identity[0].float().cpu().numpy(), source, crop, NeuralTexture(volume)), source

    def track_driver(self, frames: Iterable[np.ndarray], progress=None) -> tuple[Motion, np.ndarray]:
        """Motion of every frame of a driving video (T,) and where a face was found (T,), in one crop fixed
        on the first face (as the mesh backend tracks); frames without a face repeat the last motion."""
        crops, found = [], []
        with VideoTracker(self.size) as tracker:
            for frame in frames:
                points = tracker(frame)
                found.append(points is not None)
                crops.append(tracker.crop.apply(frame) if tracker.crop is not None else None)
                if progress is not None:
                    progress.update(1)
        found = np.array(found, dtype=bool)
        if not found.any():
            raise VasaError("no face found in any frame of the driving video")
        first = int(np.argmax(found))
        kept = [crops[first] if c is None else c for c in crops]
        motion = self.motion_from_crops(np.stack(kept))
        last = first
        for k in range(len(found)):  # hold the last motion with a face
            last = k if found[k] else last
            if not found[k]:
                motion.pose[k], motion.dynamics[k] = motion.pose[last], motion.dynamics[last]
        return motion, found

    # --- decoding -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, appearance: Appearance, motion: Motion) -> np.ndarray:
        """Render (S, S, 3) uint8 for one Motion, or (N, S, S, 3) for a batch of N."""
        if motion.dynamics.shape[-1] != self.dynamics_dim:
            raise VasaError(f"motion has {motion.dynamics.shape[-1]} dynamics coefficients, "
                            f"the neural face model {self.dynamics_dim}: latents of another face backend?")
        if not isinstance(appearance.texture, NeuralTexture):
            raise VasaError("this appearance was encoded by another face backend; encode the portrait with --face neural")
        single = not motion.batch_shape
        pose = torch.as_tensor(np.atleast_2d(motion.pose), dtype=self.dtype, device=self.device)  # (N, 6)
        dynamics = torch.as_tensor(np.atleast_2d(motion.dynamics), dtype=self.dtype, device=self.device)  # (N, K)
        n = len(pose)
        volume = appearance.texture.volume.expand(n, -1, -1, -1, -1)
        identity = torch.as_tensor(appearance.identity, dtype=self.dtype, device=self.device).expand(n, -1)
        frames = self._output(self.model.decode(volume, identity, pose, dynamics))
        return frames[0] if single else frames
