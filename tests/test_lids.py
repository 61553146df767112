"""Shut eyes (`vasa.face.mesh.eyes.paint_closing_lids`): the white of the eye the warp squeezed between
closing lids is painted over with the line of a closed eye."""

import cv2
import numpy as np
import pytest

from vasa.face.mesh import eyes

SIZE = 512
SKIN = np.array([200, 150, 120], np.uint8)
LASH = np.array([40.0, 30.0, 30.0])
CENTRE, HALF_WIDTH = np.array([0.35, 0.4]), 0.05  # one eye, crop units


def eye_points(gap: float) -> np.ndarray:
    """478 landmarks with both eye contours set to an eye `gap` tall (upper lid corner to corner,
    then the lower lid back), the left eye mirrored to the other side of the face."""
    points = np.tile(np.array([0.5, 0.5]), (478, 1))
    for eye, (_, contour) in enumerate(eyes.EYES):
        upper = np.linspace(-1, 1, eyes.UPPER_LID_POINTS)
        lower = np.linspace(1, -1, len(contour) - eyes.UPPER_LID_POINTS + 2)[1:-1]
        centre = CENTRE if eye == 0 else np.array([1 - CENTRE[0], CENTRE[1]])
        outline = [centre + [a * HALF_WIDTH, -gap / 2 * np.sqrt(1 - a**2)] for a in upper]
        outline += [centre + [a * HALF_WIDTH, gap / 2 * np.sqrt(1 - a**2)] for a in lower]
        points[list(contour)] = outline
    return points


def texture(open_area: float) -> eyes.IrisTexture:
    blank = np.zeros((3, 3, 3), np.float32)
    return eyes.IrisTexture((blank, blank), np.zeros(2), np.zeros((SIZE, SIZE, 3), np.uint8),
                            np.tile(LASH, (2, 1)), np.full(2, open_area))


def luma(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float64) @ [0.299, 0.587, 0.114]


def squeezed_white(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A skin-coloured frame with the white of the eye squeezed into each eye polygon, and its mask."""
    frame = np.tile(SKIN, (SIZE, SIZE, 1))
    sliver = np.zeros((SIZE, SIZE), np.uint8)
    for _, contour in eyes.EYES:
        cv2.fillPoly(sliver, [np.round(points[list(contour)] * SIZE).astype(np.int32)], 1)
    frame[sliver > 0] = 240
    return frame, sliver > 0


OPEN_AREA = np.pi / 2 * HALF_WIDTH * 0.04  # a half-ellipse pair, 0.04 tall: an open eye's polygon


def test_shut_lids_cover_the_white_of_the_eye():
    points = eye_points(gap=0.004)  # lids ~2 px apart
    frame, sliver = squeezed_white(points)
    out = luma(eyes.paint_closing_lids(frame.copy(), texture(OPEN_AREA), points)[sliver])
    assert sliver.sum() > 100
    assert out.max() < luma(SKIN[None])[0] + 5  # no white (240) left: the lids' own tones
    assert out.min() < 0.6 * luma(SKIN[None])[0]  # and the lash line where they meet


@pytest.mark.parametrize("open_area, gap", [(0.0, 0.004), (OPEN_AREA, 0.03)])
def test_eyes_shut_in_the_portrait_or_still_open_are_left_alone(open_area, gap):
    points = eye_points(gap)
    frame, _ = squeezed_white(points)
    np.testing.assert_array_equal(eyes.paint_closing_lids(frame.copy(), texture(open_area), points), frame)
