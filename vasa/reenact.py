"""Reenactment: the motion of a real talking video applied to a portrait (the paper's Fig. 4/5).

The driver's motion is taken relative to its first frame with a face: the portrait keeps its own
pose and expression and moves the way the driver moves from there. ``only="pose"`` transfers head
motion alone, ``only="dynamics"`` facial dynamics alone (the disentanglement check).
"""

from __future__ import annotations

import os
from typing import Iterator, Literal

import numpy as np
from tqdm import tqdm

from vasa.errors import VasaError
from vasa.face.geometry import compose_relative_pose
from vasa.face.landmarks import VideoTracker
from vasa.face.mesh import MeshFace
from vasa.latents import Appearance, Motion
from vasa.media import (
    DEFAULT_FPS, check_output_path, iter_video_frames, probe_video, read_audio, write_video,
)

Only = Literal["pose", "dynamics"] | None


def retarget(source: Motion, driver: Motion, reference: Motion, only: Only = None) -> Motion:
    """The source's motion moved by the driver's change since `reference`."""
    if only not in (None, "pose", "dynamics"):
        raise VasaError(f"only must be 'pose' or 'dynamics', got {only!r}")
    pose = source.pose if only == "dynamics" else compose_relative_pose(source.pose, driver.pose, reference.pose)
    dynamics = source.dynamics if only == "pose" else source.dynamics + (driver.dynamics - reference.dynamics)
    return Motion(pose, dynamics)


def driver_motions(face: MeshFace, frames, progress=None) -> Iterator[tuple[Motion | None, bool]]:
    """(motion, found) per frame; frames before the first face give (None, False)."""
    last = None
    with VideoTracker(face.size) as tracker:
        for frame in frames:
            points = tracker(frame)
            if points is not None:
                last = face.motion_from_landmarks(points)
            if progress is not None:
                progress.update(1)
            yield last, points is not None


def reenact(
    image, video: str | os.PathLike, out: str | os.PathLike, only: Only = None, size: int = 512,
    audio: str | os.PathLike | None = None, fps: float = DEFAULT_FPS, progress: bool = True,
    face: MeshFace | None = None,
) -> int:
    """Animate `image` with the motion of `video`; write an mp4 with the driver's audio.

    `audio` overrides the soundtrack (e.g. a separate .wav). Returns the number of frames written.
    Nothing is written when anything fails.
    """
    check_output_path(out)
    face = face or MeshFace(size=size)
    appearance, source = face.encode(image)
    info = probe_video(video, fps)
    soundtrack = read_audio(audio if audio is not None else video)
    total = max(1, round(info.duration_s * fps))
    bar = tqdm(total=total, desc="reenact", unit="frame", disable=not progress)
    frames = _render(face, appearance, source, iter_video_frames(video, fps), only, bar)
    try:
        return write_video(out, frames, fps, soundtrack)
    finally:
        bar.close()


def _render(face: MeshFace, appearance: Appearance, source: Motion, frames, only: Only, bar) -> Iterator[np.ndarray]:
    reference = None
    lost = 0
    for motion, found in driver_motions(face, frames, bar):
        lost += not found
        if motion is None:
            yield appearance.image  # no face yet: hold the portrait still
            continue
        reference = motion if reference is None else reference
        yield face.decode(appearance, retarget(source, motion, reference, only))
    if reference is None:
        raise VasaError("no face found in any frame of the driving video")
    if lost:
        bar.write(f"note: no face in {lost} driver frame(s); the previous motion was held there")
