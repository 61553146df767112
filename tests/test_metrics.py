"""Known answers for the image metrics."""

from __future__ import annotations

import numpy as np
import pytest

from vasa.face.mesh.backend import FACE_OVAL
from vasa.metrics.image import face_mask, psnr, ssim


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(64, 64, 3)), axis=0), axis=1)
    return np.clip((smooth - smooth.min()) / np.ptp(smooth) * 255, 0, 255).astype(np.uint8)


def test_identical_images_have_infinite_psnr_and_unit_ssim(picture):
    assert psnr(picture, picture) == float("inf")
    assert ssim(picture, picture) == pytest.approx(1.0)


def test_psnr_of_a_constant_offset_is_known(picture):
    shifted = np.clip(picture.astype(int) + 5, 0, 255).astype(np.uint8)
    unclipped = picture < 251
    expected = 10 * np.log10(255**2 / 25)
    assert psnr(picture, shifted, mask=unclipped.all(axis=2)) == pytest.approx(expected, abs=1e-6)


def test_psnr_and_ssim_fall_as_noise_grows(picture):
    rng = np.random.default_rng(1)
    scores = []
    for sigma in (2, 10, 40):
        noisy = np.clip(picture + rng.normal(0, sigma, picture.shape), 0, 255).astype(np.uint8)
        scores.append((psnr(picture, noisy), ssim(picture, noisy)))
    assert scores[0][0] > scores[1][0] > scores[2][0]
    assert scores[0][1] > scores[1][1] > scores[2][1]


def test_mask_limits_the_comparison_to_its_pixels(picture):
    damaged = picture.copy()
    damaged[:, 32:] = 0
    left = np.zeros(picture.shape[:2], bool)
    left[:, :32] = True
    assert psnr(picture, damaged, mask=left) == float("inf")
    assert psnr(picture, damaged) < 20


def test_mismatched_shapes_are_refused(picture):
    with pytest.raises(ValueError):
        psnr(picture, picture[:32])


def test_face_mask_covers_the_landmark_hull():
    points = np.zeros((478, 2))
    angles = np.linspace(0, 2 * np.pi, len(FACE_OVAL), endpoint=False)
    points[:] = 0.5
    points[list(FACE_OVAL)] = 0.5 + 0.25 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    mask = face_mask(points, 100)
    assert mask[50, 50] and not mask[5, 5]
    assert abs(mask.astype(bool).sum() - np.pi * 25**2) / (np.pi * 25**2) < 0.05
