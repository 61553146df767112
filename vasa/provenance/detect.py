"""`vasa detect`: does a video say it was made by vasa? Its C2PA manifest (present, valid or
tampered, and its claims) and the frame watermark (found or not, the id, a score and the bound on the
chance that an unmarked video scores as high)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from vasa.errors import VasaError
from vasa.provenance import manifest, watermark

MAX_SECONDS = 60.0  # the watermark is the same in every frame: a minute is plenty to read it


@dataclass
class Detection:
    path: str
    manifest: manifest.ManifestReport
    watermark: watermark.Reading

    @property
    def marked(self) -> bool:
        """vasa's mark of either kind: the watermark, or a manifest (valid or not) that vasa made."""
        return self.watermark.found or (self.manifest.present and self.manifest.claims.get(
            "software", "").startswith("vasa"))

    def as_dict(self) -> dict:
        return {"path": self.path, "marked_by_vasa": self.marked, "manifest": self.manifest.as_dict(),
                "watermark": self.watermark.as_dict()}


def read_mean_luma(path: str | os.PathLike, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int]:
    """The mean luma (H, W) of the video's frames over its first `max_seconds`, and how many were read."""
    from vasa.media import _video_stream

    total = None
    frames = 0
    try:
        with _video_stream(path) as (container, stream):
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if frame.time is not None and frame.time > max_seconds:
                    break
                luma = frame.to_ndarray(format="gray").astype(np.float64)
                if total is None:
                    total = np.zeros_like(luma)
                elif luma.shape != total.shape:
                    break  # the stream changed size: read what came before
                total += luma
                frames += 1
    except av.FFmpegError as error:
        if frames == 0:
            raise VasaError(f"{path}: cannot decode its video ({error})") from None
    if frames == 0:
        raise VasaError(f"{path} has no video frames")
    return (total / frames).astype(np.float32), frames


def detect(path: str | os.PathLike, max_seconds: float = MAX_SECONDS) -> Detection:
    """Read both marks of one video file; a VasaError when it is not a readable video."""
    path = Path(path)
    if not path.is_file():
        raise VasaError(f"not a file: {path}")
    mean, frames = read_mean_luma(path, max_seconds)
    try:
        reading = watermark.read(mean, frames)
    except ValueError as error:
        raise VasaError(f"{path}: {error}") from None
    return Detection(str(path), manifest.read(path), reading)


def describe(found: Detection) -> str:
    """A few lines for people."""
    m, w = found.manifest, found.watermark
    lines = [f"{found.path}: {'MADE BY VASA' if found.marked else 'no vasa mark found'}"]
    if not m.present:
        lines.append("  manifest:  none")
    else:
        lines.append(f"  manifest:  {m.state}" + (f" ({', '.join(m.failures)})" if m.state != "valid" and m.failures
                                                 else "") + (f"; signed by {m.signer}" if m.signer else ""))
        if m.trust:
            lines.append(f"             trust: {m.trust}")
        for name in ("digital_source_type", "software", "motion_source", "motion_model_sha256", "watermark"):
            if m.claims.get(name):
                lines.append(f"             {name.replace('_', ' ')}: {m.claims[name]}")
    if w.found:
        ident = f"id {w.ident:08x}" if w.ident is not None else "id unreadable (its CRC failed)"
        lines.append(f"  watermark: found, {ident}; score {w.z:.1f} (threshold {watermark.Z_THRESHOLD}), "
                     f"false-positive probability <= {w.false_positive_p:.1e}")
    else:
        lines.append(f"  watermark: not found; score {w.z:.1f} (threshold {watermark.Z_THRESHOLD})")
    return "\n".join(lines)
