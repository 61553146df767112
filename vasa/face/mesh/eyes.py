"""Irises that move for gaze: a rigid iris disc slid over an iris-free eye, clipped by the lids.

Warping the eye would stretch the iris into a smear, so the warp moves only the eye contour (the
iris rides along with the eye), and where the gaze differs from the portrait's the iris is
re-painted: the eye opening shows the portrait's eye with the iris inpainted away, the iris disc
(parts the lids hid filled from its mirror image) is placed at the target iris centre and scaled with
the head, and the target eye-opening polygon clips it, so lids cover it and a blink hides it.

Closing lids squeeze the white of the eye and the iris into a sliver that reads as a narrowed open
eye; as the lids meet, `paint_closing_lids` paints that sliver over with the line of a closed eye:
the lash line where the lids touch (its colour taken from the portrait), the lids' own skin either side.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vasa.face.mesh import seams
from vasa.face.mesh.model import IRIS_CENTERS, LEFT_EYE_CONTOUR, LEFT_IRIS, RIGHT_EYE_CONTOUR, RIGHT_IRIS

EYES = ((RIGHT_IRIS, RIGHT_EYE_CONTOUR), (LEFT_IRIS, LEFT_EYE_CONTOUR))
MIN_SHIFT_PX = 0.25  # below this the warped portrait's own iris is already right
IRIS_MARGIN = 1.08  # the inpainted disc reaches a little past the landmark radius (the limbus)
UPPER_LID_POINTS = 9  # the first 9 points of an eye contour run along the upper lid, corner to corner
LASH_BAND = 0.08  # lash colour: the darker pixels up to this many eye widths above the upper lid
LID_CLOSE_KEEP, LID_CLOSE_FULL = 0.5, 0.15  # target / portrait eye opening area: painting starts, is full


@dataclass(frozen=True)
class IrisTexture:
    patches: tuple[np.ndarray, np.ndarray]  # per eye (P, P, 3) float32 iris disc, centred
    radii: np.ndarray  # (2,) iris radius, crop units
    background: np.ndarray  # (S, S, 3) uint8 portrait with the visible irises inpainted
    lash_rgb: np.ndarray  # (2, 3) per eye: colour of the upper lash line
    open_areas: np.ndarray  # (2,) per eye: area of the portrait's eye opening, crop units²


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
    patches, radii, lashes, areas = [], [], [], []
    for iris, contour in EYES:
        lashes.append(_lash_colour(image, px[list(contour)]))
        areas.append(abs(seams.signed_area(points[list(contour)])))
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
    return IrisTexture(tuple(patches), np.array(radii), background, np.array(lashes), np.array(areas))


def _lash_colour(image: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """Colour of one eye's upper lash line: the darker pixels just above its upper lid (outline:
    (16, 2) px contour)."""
    upper = outline[:UPPER_LID_POINTS]
    width = max(float(np.ptp(upper[:, 0])), 1.0)
    x0, x1 = max(int(np.floor(upper[:, 0].min())), 0), min(int(np.ceil(upper[:, 0].max())) + 1, image.shape[1])
    y0 = max(int(np.floor(upper[:, 1].min() - LASH_BAND * width)), 0)
    y1 = min(int(np.ceil(upper[:, 1].max())) + 1, image.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 1:
        return 0.5 * image.reshape(-1, 3).mean(axis=0)
    lid_y, _ = seams.curves(upper - [x0, 0], upper - [x0, 0], x1 - x0)
    above = (lid_y[None, :] - (np.arange(y0, y1) + 0.5)[:, None]) / width  # eye widths above the lid
    near = image[y0:y1, x0:x1][(above >= 0) & (above <= LASH_BAND)].astype(np.float64)
    if not len(near):
        return 0.5 * image[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
    luma = near @ [0.299, 0.587, 0.114]
    return near[luma <= np.percentile(luma, 30)].mean(axis=0)


def paint_closing_lids(frame: np.ndarray, texture: IrisTexture, target: np.ndarray) -> np.ndarray:
    """Paint the closed-eye line over each eye whose lids (nearly) meet (in place and returned).

    target: (478, 2) landmarks in crop units. Starts once an eye's opening is under LID_CLOSE_KEEP of
    the portrait's and is full at LID_CLOSE_FULL; an eye the portrait shows closed is left alone."""
    size = frame.shape[0]
    for eye, (_, contour) in enumerate(EYES):
        source_area = texture.open_areas[eye]
        points = target[list(contour)]
        area = abs(seams.signed_area(points))
        strength = float(np.clip((LID_CLOSE_KEEP * source_area - area) / ((LID_CLOSE_KEEP - LID_CLOSE_FULL) * source_area + 1e-12),
                                 0.0, 1.0)) if source_area > 0 else 0.0
        if strength <= 0.0:
            continue
        outline = points * size - 0.5
        x0, y0 = np.maximum(np.floor(outline.min(axis=0)).astype(int) - 3, 0)
        x1, y1 = np.minimum(np.ceil(outline.max(axis=0)).astype(int) + 4, size)
        if x1 - x0 < 3 or y1 - y0 < 2:
            continue
        local = outline - [x0, y0]
        shape = (y1 - y0, x1 - x0)
        mask = cv2.GaussianBlur(seams.band_mask(local, shape, area, size), (0, 0), 0.6 * size / 512 + 0.2)
        lower = np.concatenate([local[UPPER_LID_POINTS - 1:], local[:1]])
        y_up, y_lo = seams.curves(local[:UPPER_LID_POINTS], lower, shape[1])
        region = frame[y0:y1, x0:x1].astype(np.float32)
        colours, together = seams.seam(y_up, y_lo, region, size, texture.lash_rgb[eye])
        alpha = (mask * strength * together[None, :])[:, :, None]
        frame[y0:y1, x0:x1] = np.clip(region + alpha * (colours - region), 0, 255).round().astype(np.uint8)
    return frame


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
