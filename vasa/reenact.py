"""Reenactment: the motion of a real talking video applied to a portrait (the paper's Fig. 4/5).

The driver's motion is applied relative to a reference: the portrait keeps its own pose and
expression and moves the way the driver moves from there. Head pose is relative to the driver's
first frame with a face; expressions by default relative to the driver's neutral (closed-mouth)
face, or to its first frame. ``only="pose"`` transfers head motion alone, ``only="dynamics"``
facial dynamics alone (the disentanglement check).
"""

from __future__ import annotations

import os
from typing import Iterator, Literal

import cv2
import numpy as np
from tqdm import tqdm

from vasa.errors import VasaError
from vasa.face.geometry import compose_relative_pose
from vasa.face.landmarks import FaceCrop, VideoTracker
from vasa.face.mesh import MeshFace
from vasa.latents import Appearance, FaceBackend, Motion
from vasa.provenance import Provenance
from vasa.media import (
    DEFAULT_FPS, check_output_path, expected_frames, iter_video_frames, probe_video, read_audio, read_image,
    write_video,
)

Only = Literal["pose", "dynamics"] | None
Reference = Literal["neutral", "first"]
NEUTRAL_MOUTH_PERCENTILE = 10  # driver frames this closed (or more) define its neutral expression


def retarget(source: Motion, driver: Motion, reference: Motion, only: Only = None) -> Motion:
    """The source's motion moved by the driver's change since `reference`."""
    if only not in (None, "pose", "dynamics"):
        raise VasaError(f"only must be 'pose' or 'dynamics', got {only!r}")
    pose = source.pose if only == "dynamics" else compose_relative_pose(source.pose, driver.pose, reference.pose)
    dynamics = source.dynamics if only == "pose" else source.dynamics + (driver.dynamics - reference.dynamics)
    return Motion(pose, dynamics)


def track_driver(face: MeshFace, frames, progress=None) -> tuple[Motion, np.ndarray]:
    """Motion of every frame (T,) and where a face was found (T,). Frames without a face repeat
    the nearest earlier motion (the first face's motion before it)."""
    motions: list[Motion | None] = []
    with VideoTracker(face.size) as tracker:
        for frame in frames:
            points = tracker(frame)
            motions.append(face.motion_from_landmarks(points) if points is not None else None)
            if progress is not None:
                progress.update(1)
    found = np.array([m is not None for m in motions], dtype=bool)
    if not found.any():
        raise VasaError("no face found in any frame of the driving video")
    last = motions[int(np.argmax(found))]
    filled = []
    for m in motions:
        last = m if m is not None else last
        filled.append(last)
    return Motion.stack(filled), found


def driver_reference(face: MeshFace, motion: Motion, found: np.ndarray, reference: Reference) -> Motion:
    """Pose of the first frame with a face; dynamics of that frame (``"first"``) or of the
    driver's neutral face (``"neutral"``): mouth coefficients are the median over its most
    closed-mouth frames (so a driver that starts mid-word does not leave the portrait's mouth
    shut), the rest the median over all frames (so blinks do not count as neutral eyes)."""
    if reference not in ("neutral", "first"):
        raise VasaError(f"reference must be 'neutral' or 'first', got {reference!r}")
    first = motion[int(np.argmax(found))]
    if reference == "first":
        return first
    dynamics = motion.dynamics[found]
    shapes = face.model.mean_shape + face.model.decode_dynamics(dynamics)
    opening = face.model.mouth_opening(shapes)
    closed = opening <= np.percentile(opening, NEUTRAL_MOUTH_PERCENTILE)
    mouth = face.model.group_mask("mouth")
    neutral = np.where(mouth, np.median(dynamics[closed], axis=0), np.median(dynamics, axis=0))
    return first.replace(dynamics=neutral)


def reenact(
    image, video: str | os.PathLike, out: str | os.PathLike, only: Only = None, size: int = 512,
    audio: str | os.PathLike | None = None, fps: float = DEFAULT_FPS, reference: Reference = "neutral",
    paste_back: bool = False, progress: bool = True, face=None, provenance: Provenance = Provenance(),
) -> int:
    """Animate `image` with the motion of `video`; write an mp4 with the driver's (or `audio`'s) sound.

    Head pose moves relative to the driver's first frame with a face; expressions relative to
    `reference` (see `driver_reference`; with the neural backend, `face` = a NeuralFace, always the
    first frame with a face). With `paste_back` the animated crop goes back into
    the whole photo (at most PASTE_MAX_SIDE pixels on its longer side). Returns the number of
    frames written; nothing is written when anything fails. `provenance`: the frames' watermark (on by
    default) and the signed manifest's identity (vasa.provenance).
    """
    check_output_path(out)
    sealer = provenance.with_claims("video", None).start(out)
    face = face or MeshFace(size=size)
    photo = read_image(image)
    appearance, source = face.encode(photo)
    canvas = paste_canvas(photo, appearance) if paste_back else None
    info = probe_video(video, fps)
    soundtrack = read_audio(audio if audio is not None else video)
    mesh = isinstance(face, MeshFace)
    with tqdm(total=expected_frames(info), desc="track", unit="frame", disable=not progress) as bar:
        frames = iter_video_frames(video, fps)
        driver, found = track_driver(face, frames, bar) if mesh else face.track_driver(frames, bar)
    # a learned latent has no mouth measure to find the neutral face: it is the first frame there
    base = driver_reference(face, driver, found, reference) if mesh else driver[int(np.argmax(found))]
    if not found.all():
        tqdm.write(f"note: no face in {int((~found).sum())} of {len(found)} driver frames; "
                   "the nearest earlier motion was held there")
    with tqdm(total=len(driver), desc="render", unit="frame", disable=not progress) as bar:
        frames = _render(face, appearance, source, driver, base, only, bar)
        if canvas is not None:
            background, crop = canvas
            frames = (crop.paste(frame, background) for frame in frames)
        return write_video(out, frames, fps, soundtrack, sealer=sealer)


PASTE_MAX_SIDE = 1920


def paste_canvas(photo: np.ndarray, appearance: Appearance) -> tuple[np.ndarray, FaceCrop]:
    """The photo to paste into (shrunk to PASTE_MAX_SIDE, cut to even sides for H.264) and the
    crop's place in it."""
    factor = min(1.0, PASTE_MAX_SIDE / max(photo.shape[:2]))
    if factor < 1.0:
        photo = cv2.resize(photo, (round(photo.shape[1] * factor), round(photo.shape[0] * factor)),
                           interpolation=cv2.INTER_AREA)
    height, width = photo.shape[0] // 2 * 2, photo.shape[1] // 2 * 2
    return np.ascontiguousarray(photo[:height, :width]), appearance.crop.scaled(factor)


def _render(face: FaceBackend, appearance: Appearance, source: Motion, driver: Motion, base: Motion,
            only: Only, bar) -> Iterator[np.ndarray]:
    for i in range(len(driver)):
        motion = retarget(source, driver[i], base, only)
        # lips and lids kept from crossing where the latent knows them (`FaceBackend.keep_physical`)
        yield face.decode(appearance, face.keep_physical(appearance, motion))
        bar.update(1)
