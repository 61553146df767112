"""The edits a video meets after it leaves vasa, which the watermark is measured against
(scripts/bench_watermark.py, tests/test_provenance.py): H.264 re-encoding at a CRF, scaling, cropping,
frame-rate conversion and cutting an excerpt. Each reads a video and writes the edited one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np


@dataclass(frozen=True)
class Edit:
    """One chain of edits; `crf` is the final H.264 encode's."""

    crf: int = 23
    scale: float = 1.0  # of the (cropped) frame's sides
    crop: float = 0.0  # share taken off each side
    fps: float | None = None  # new frame rate (frames repeated or dropped), None = as it was
    excerpt_s: tuple[float, float] | None = None  # (start, length) in seconds
    preset: str = "medium"  # x264's (ffmpeg's default)

    @property
    def name(self) -> str:
        parts = [f"CRF {self.crf}"]
        if self.crop:
            parts.append(f"crop {self.crop:.0%} a side")
        if self.scale != 1:
            parts.append(f"scale {self.scale:g}")
        if self.fps:
            parts.append(f"{self.fps:g} fps")
        if self.excerpt_s:
            parts.append(f"{self.excerpt_s[1]:g} s excerpt")
        return ", ".join(parts)


def _frames(path: str | os.PathLike) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)], rate


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def apply(edit: Edit, source: str | os.PathLike, destination: str | os.PathLike) -> int:
    """Write `source` edited by `edit` to `destination`; returns the frames written."""
    frames, rate = _frames(source)
    if edit.excerpt_s:
        start, length = edit.excerpt_s
        frames = frames[int(round(start * rate)): int(round((start + length) * rate))]
    if edit.fps:
        count = int(len(frames) * edit.fps / rate)
        frames = [frames[min(len(frames) - 1, int(k * rate / edit.fps))] for k in range(count)]
        rate = edit.fps
    height, width = frames[0].shape[:2]
    top, left = int(round(edit.crop * height)), int(round(edit.crop * width))
    out_h, out_w = _even((height - 2 * top) * edit.scale), _even((width - 2 * left) * edit.scale)
    with av.open(str(destination), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001))
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(edit.crf), "preset": edit.preset}
        stream.height, stream.width = out_h, out_w
        for frame in frames:
            frame = frame[top: height - top, left: width - left]
            if frame.shape[:2] != (out_h, out_w):
                frame = cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_AREA)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode(None))
    return len(frames)
