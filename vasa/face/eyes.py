"""Irises that move for gaze: a rigid iris disc slid over an iris-free eye, clipped by the lids.

Warping the eye would stretch the iris into a smear, so the warp moves only the eye contour (the
iris rides along with the eye), and where the gaze differs from the portrait's the iris is
re-painted: the eye opening shows the portrait's eye with the iris inpainted away, the iris disc
(parts the lids hid filled from its mirror image) is placed at the target iris centre and scaled with
the head, and the target eye-opening polygon clips it, so lids cover it and a blink hides it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vasa.face.model import IRIS_CENTERS, LEFT_EYE_CONTOUR, LEFT_IRIS, RIGHT_EYE_CONTOUR, RIGHT_IRIS

EYES = ((RIGHT_IRIS, RIGHT_EYE_CONTOUR), (LEFT_IRIS, LEFT_EYE_CONTOUR))
MIN_SHIFT_PX = 0.25  # below this the warped portrait's own iris is already right
IRIS_MARGIN = 1.08  # the inpainted disc reaches a little past the landmark radius (the limbus)


@dataclass(frozen=True)
class IrisTexture:
    patches: tuple[np.ndarray, np.ndarray]  # per eye (P, P, 3) float32 iris disc, centred
    radii: np.ndarray  # (2,) iris radius, crop units
    background: np.ndarray  # (S, S, 3) uint8 portrait with the visible irises inpainted


def _eye_mask(points_px: np.ndarray, contour, shape, feather: float = 0.0) -> np.ndarray:
    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [np.round(points_px[list(contour)] * 16).astype(np.int32)], 1.0,
                 lineType=cv2.LINE_AA, shift=4)
    return cv2.GaussianBlur(mask, (0, 0), feather) if feather > 0 else mask


def iris_texture(image: np.ndarray, points: np.ndarray) -> IrisTexture:
    """Cut out both irises (points: (478, 2) crop units) and inpaint the eyes without them."""
    size = image.shape[0]
    px = points * size - 0.5  # OpenCV's pixel-centre convention
    hole = np.zeros(image.shape[:2], np.uint8)
    patches, radii = [], []
    for iris, contour in EYES:
        centre = px[iris[0]]
        radius = float(np.linalg.norm(px[list(iris[1:])] - centre, axis=1).mean())
        disc = np.zeros_like(hole)
        cv2.circle(disc, tuple(np.round(centre * 16).astype(int)), int(round(radius * IRIS_MARGIN * 16)), 1,
                   -1, cv2.LINE_AA, 4)
        opening = _eye_mask(px, contour, hole.shape) > 0.5
        visible = (disc > 0) & opening
        hole |= cv2.dilate(visible.astype(np.uint8), np.ones((3, 3), np.uint8))
        patches.append(_iris_patch(image, centre, radius, visible))
        radii.append(radius / size)
    background = cv2.inpaint(image, hole, 3, cv2.INPAINT_TELEA)
    return IrisTexture(tuple(patches), np.array(radii), background)


def _iris_patch(image: np.ndarray, centre: np.ndarray, radius: float, visible: np.ndarray) -> np.ndarray:
    """A square patch centred on the iris, with the pixels the lids hid filled in."""
    half = int(np.ceil(radius * IRIS_MARGIN)) + 2
    shift = np.array([[1.0, 0.0, half - centre[0]], [0.0, 1.0, half - centre[1]]])
    side = 2 * half + 1
    patch = cv2.warpAffine(image.astype(np.float32), shift, (side, side), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    seen = cv2.warpAffine(visible.astype(np.float32), shift, (side, side), flags=cv2.INTER_LINEAR) > 0.5
    # An iris is close to symmetric about its horizontal axis: hidden pixels take their mirror
    # image where that was seen (the lids usually hide the top and show the bottom), else the mean.
    mirrored = patch[::-1]
    from_mirror = ~seen & seen[::-1]
    patch[from_mirror] = mirrored[from_mirror]
    mean = patch[seen].mean(axis=0) if seen.any() else patch.reshape(-1, 3).mean(axis=0)
    patch[~seen & ~from_mirror] = mean
    return patch


def paint_irises(frame: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, texture: IrisTexture,
                 source: np.ndarray, target: np.ndarray, scale_ratio: float) -> np.ndarray:
    """Re-paint each iris whose target centre is off where the warp carried it (in place).

    source, target: (478, 2) landmarks in crop units; scale_ratio: target / source head scale.
    """
    size = frame.shape[0]
    for eye, (iris, contour) in enumerate(EYES):
        carried = source[iris[0]] + (target[list(contour)] - source[list(contour)]).mean(axis=0)
        centre = target[iris[0]] * size - 0.5  # OpenCV's pixel-centre convention
        if np.linalg.norm(target[iris[0]] - carried) * size < MIN_SHIFT_PX:
            continue
        outline = target[list(contour)] * size - 0.5
        x0, y0 = np.maximum(np.floor(outline.min(axis=0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(outline.max(axis=0)).astype(int) + 3, size)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        opening = _eye_mask(outline - [x0, y0], range(len(contour)), (y1 - y0, x1 - x0), 0.6)[:, :, None]
        if opening.max() < 0.05:  # closed eye
            continue
        base = cv2.remap(texture.background, map_x[y0:y1, x0:x1], map_y[y0:y1, x0:x1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        patch = texture.patches[eye]
        half = (patch.shape[0] - 1) / 2
        # target pixel q -> patch pixel: (q - centre) / scale_ratio + half
        inverse = np.array([[1 / scale_ratio, 0.0, half - (centre[0] - x0) / scale_ratio],
                            [0.0, 1 / scale_ratio, half - (centre[1] - y0) / scale_ratio]])
        iris_rgb = cv2.warpAffine(patch, inverse, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE)
        radius = texture.radii[eye] * size * scale_ratio * IRIS_MARGIN
        yy, xx = np.mgrid[y0:y1, x0:x1]
        distance = np.hypot(xx - centre[0], yy - centre[1])
        disc = np.clip(radius + 0.5 - distance, 0.0, 1.0)[:, :, None]
        inside = base + disc * (iris_rgb - base)
        region = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = np.clip(region + opening * (inside - region), 0, 255).round().astype(np.uint8)
    return frame
