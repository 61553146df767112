"""Evaluation metrics. `image`: PSNR, SSIM and the landmark face mask they are restricted to."""

from vasa.metrics.image import face_mask, psnr, ssim

__all__ = ["face_mask", "psnr", "ssim"]
