"""Where two soft edges of the face meet (lips, eyelids): the line between them, painted over
whatever the warp squeezed into the sliver.

A 2D warp closes lips or lids by squeezing what lay between them (teeth, the white of the eye)
into a thin band, which reads as a jagged light line rather than a closed mouth or eye. `seam`
gives, per pixel of a patch, the colour of a thin dark line along the middle of the gap with what
lies just beyond the sliver either side, and per column how nearly the two edges meet; `band_mask` covers
the gap's polygon and a few pixels around it even when the polygon has collapsed to a line.
"""

from __future__ import annotations

import cv2
import numpy as np

LINE_PX_PER_512 = 1.0  # width of the line where the edges meet


def signed_area(polygon: np.ndarray) -> float:
    """Shoelace area of a closed polygon (N, 2): positive when it winds clockwise on screen (y down),
    e.g. upper edge left to right, then the lower edge back; negative when the edges have crossed."""
    x, y = polygon[:, 0], polygon[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2


def curves(upper: np.ndarray, lower: np.ndarray, width: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower edge y at every column of a patch `width` wide, or at the x positions given
    (linear between the points, (N, 2) px each)."""
    xs = np.arange(width) + 0.5 if np.isscalar(width) else np.asarray(width)
    upper = upper[np.argsort(upper[:, 0])]
    lower = lower[np.argsort(lower[:, 0])]
    return np.interp(xs, upper[:, 0], upper[:, 1]), np.interp(xs, lower[:, 0], lower[:, 1])


def seam(y_up: np.ndarray, y_lo: np.ndarray, region: np.ndarray, size: int,
         line_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, 3) colours for the patch `region` (h, w, 3): `line_rgb` on the middle line between the
    edges and, from a line's width away, what `region` shows just beyond the sliver (above it above
    the line, below it below), so the squeezed content disappears into its surroundings; and (w,) how
    nearly the edges meet per column: 1 up to 1.5 line widths (+ 0.5 px) apart, 0 from 4.5 (+ 1.5 px)."""
    height, width = region.shape[:2]
    ys = (np.arange(height) + 0.5)[:, None]
    line_px = LINE_PX_PER_512 * size / 512
    gap = np.maximum(y_lo - y_up, 0)
    together = np.clip(1.5 - gap / (3 * line_px + 1), 0, 1)
    middle = (y_up + y_lo) / 2
    reach = gap / 2 + 2.5 * line_px + 1.5  # beyond the band that `band_mask` covers
    columns = np.arange(width)
    above = region[np.clip(np.round(middle - reach).astype(int), 0, height - 1), columns]  # (w, 3)
    below = region[np.clip(np.round(middle + reach).astype(int), 0, height - 1), columns]
    side = np.where((ys < middle)[:, :, None], above[None], below[None])
    off_line = np.clip(np.abs(ys - middle) / (0.5 * line_px + 0.5) - 0.5, 0, 1)[:, :, None]
    colours = line_rgb + off_line * (side - line_rgb)
    return colours.astype(np.float32), together


def band_mask(polygon: np.ndarray, shape: tuple[int, int], area: float, size: int) -> np.ndarray:
    """(h, w) float32 mask of a closed polygon (px, patch coordinates) and a band along its outline
    (three line widths), so that a collapsed polygon still covers its sliver."""
    mask = np.zeros(shape, np.float32)
    contour = np.round(polygon * 16).astype(np.int32)
    if area > 0:
        cv2.fillPoly(mask, [contour], 1.0, lineType=cv2.LINE_AA, shift=4)
    cv2.polylines(mask, [contour], True, 1.0, max(2, round(3 * LINE_PX_PER_512 * size / 512)), cv2.LINE_AA, shift=4)
    return mask
