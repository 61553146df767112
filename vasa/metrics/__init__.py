"""Evaluation metrics, each usable on any method's frames, audio or poses.

`image`: PSNR, SSIM and the landmark face mask they are restricted to. `landmarks`: measures from
re-extracted landmarks (ΔP, lip distance, mouth opening, blinks, gaze and distance errors, jitter).
`syncnet`: SyncNet SC/SD (weights from a path). `contrastive`: CAPP and the offline lip-sync judge.
`fvd`: I3D + Fréchet distance (weights from a path). `identity`: dlib descriptor similarity.
"""

from vasa.metrics.image import face_mask, psnr, ssim

__all__ = ["face_mask", "psnr", "ssim"]
