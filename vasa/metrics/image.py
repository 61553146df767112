"""Image similarity: PSNR and SSIM on uint8 images, optionally restricted to a mask.

SSIM follows Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility
to structural similarity", IEEE TIP 2004: local statistics under an 11x11 Gaussian window
(sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, computed on the luma channel (ITU-R BT.601 Y).
"""

from __future__ import annotations

import cv2
import numpy as np

PEAK = 255.0  # L, the dynamic range of uint8 images
SSIM_WINDOW = 11  # Wang et al. 2004, Sec. III-C
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, RGB order


def _check_pair(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {a.dtype} and {b.dtype}")
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != a.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {a.shape[:2]}")
    if not mask.any():
        raise ValueError("mask selects no pixels")
    return mask > 0


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (H, W[, C]); inf when identical.

    With `mask` (H, W), the mean squared error runs over the masked pixels (all channels) only.
    """
    keep = _check_pair(a, b, mask)
    error = (a.astype(np.float64) - b.astype(np.float64)) ** 2  # (H, W[, C])
    mse = float(error[keep].mean() if keep is not None else error.mean())
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(PEAK**2 / mse))


def luma(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> BT.601 luma float64 (H, W) in [0, 255]; gray images pass through."""
    if image.ndim == 2:
        return image.astype(np.float64)
    return image[..., :3].astype(np.float64) @ LUMA_WEIGHTS


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM (H, W) of two uint8 images, on luma (Eq. 13 of Wang et al. 2004)."""
    x, y = luma(a), luma(b)  # (H, W)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    c1 = (SSIM_K1 * PEAK) ** 2
    c2 = (SSIM_K2 * PEAK) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return numerator / denominator


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of two uint8 images (H, W[, 3]) on the luma channel; 1.0 when identical.

    With `mask` (H, W), the SSIM map is averaged over the masked pixels only (windows near the
    mask's edge still see the pixels just outside it).
    """
    keep = _check_pair(a, b, mask)
    values = ssim_map(a, b)
    return float(values[keep].mean() if keep is not None else values.mean())


def face_mask(points_2d: np.ndarray, size: int) -> np.ndarray:
    """Convex hull of landmarks (N, >=2) in crop units (0..1) -> uint8 mask (size, size), 1 inside."""
    pixels = np.round(np.asarray(points_2d)[:, :2] * size).astype(np.int32)  # (N, 2)
    hull = cv2.convexHull(pixels)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return mask
