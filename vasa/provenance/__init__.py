"""What every video vasa makes says about itself, in two independent ways: an invisible watermark in
the frames (vasa.provenance.watermark) and a signed C2PA manifest in the file
(vasa.provenance.manifest). `vasa detect` (vasa.provenance.detect) reads both back.

`Provenance` is what a writer of videos takes: on by default; `watermark=False` leaves the frames
unmarked (for research), but the manifest still says the video is synthetic.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import numpy as np

from vasa.provenance.manifest import Claims, Identity, load_identity, mime_of, sign
from vasa.provenance.watermark import Watermarker


@dataclass(frozen=True)
class Provenance:
    """How a video is marked: the watermark on or off, the signing key and certificate chain (None: the
    VASA_SIGN_KEY/VASA_SIGN_CERT environment variables, else the local identity), and the claims."""

    watermark: bool = True
    sign_key: str | os.PathLike | None = None
    sign_cert: str | os.PathLike | None = None
    motion_source: str = "speech"  # or "video"
    motion_model_sha256: str | None = None
    watermark_id: int | None = None  # the frames' 32-bit id; None: a fresh random one for each video

    def with_claims(self, motion_source: str, motion_model_sha256: str | None) -> "Provenance":
        from dataclasses import replace

        return replace(self, motion_source=motion_source, motion_model_sha256=motion_model_sha256)

    def start(self, out: str | os.PathLike) -> "Sealer":
        """The marks of one video to be written at `out`: a fresh watermark id; the identity is loaded
        now, so a bad key or an output format without room for a manifest fails before any work."""
        mime = mime_of(out)
        identity = load_identity(self.sign_key, self.sign_cert)
        ident = None
        if self.watermark:
            ident = secrets.randbits(32) if self.watermark_id is None else self.watermark_id
        claims = Claims(self.motion_source, self.motion_model_sha256, ident, title=os.path.basename(out))
        return Sealer(claims, identity, None if ident is None else Watermarker(ident), mime)


@dataclass
class Sealer:
    claims: Claims
    identity: Identity
    watermarker: Watermarker | None
    mime: str = "video/mp4"

    def mark(self, frame: np.ndarray) -> np.ndarray:
        return frame if self.watermarker is None else self.watermarker.mark(frame)

    def seal(self, source: str | os.PathLike, destination: str | os.PathLike) -> None:
        """Copy the mp4 at `source` to `destination` with the signed manifest."""
        sign(source, destination, self.claims, self.identity, self.mime)


def stream_mark(enabled: bool = True):
    """The `mark` of one live stream (vasa.streaming.StreamingSession): a watermark with a fresh id, or
    None when `enabled` is False."""
    return Watermarker(secrets.randbits(32)).mark if enabled else None


__all__ = ["Provenance", "Sealer", "Watermarker", "stream_mark"]
