"""A synthesised mouth interior for lips that part wider than in the portrait.

Warping alone stretches the thin seam between closed lips into a smear. Where the target's
inner-lip polygon is larger than the source's, the interior is painted instead: a dark cavity,
darkest toward the corners; upper teeth laid out along a dental arch seen from the front (central
and lateral incisors, canine, premolars: narrower, shorter and darker the further round the arch,
each with a rounded biting edge and a dark seam to its neighbour); a short lower row in the middle
and the tongue rising from the lower lip. Colours come from the portrait
(lip colour for the cavity and tongue; teeth colour from its open mouth's bright unsaturated pixels,
otherwise a default no brighter than its skin allows). A portrait that shows its upper teeth lends
them: they are cut out as a strip hanging from its upper lip (`STRIP_COLUMNS`) and hung, at the size
they are in the photo, from the target upper lip wherever the portrait shows them.

The other way round, closing the mouth of a portrait that shows its teeth squeezes them into the
sliver between the lips. Where the lips (nearly) meet, that sliver is painted over with the line
between two lips; a wide-open portrait (teeth, tongue and shadow squeeze into jagged bands) gets
the synthesised interior as soon as its mouth is much less open than in the photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vasa.face.mesh import seams
from vasa.face.mesh.model import INNER_LIPS_LOWER, INNER_LIPS_UPPER, OUTER_LIPS

DEFAULT_TEETH_RGB = np.array([222.0, 214.0, 198.0])
CAVITY_DARKNESS = 0.25  # cavity colour = lip colour times this (in the middle; darker at the corners)
TONGUE_SHADE = 0.6  # tongue colour = lip colour times this
TONGUE_PER_GAP = 0.35  # how far the tongue rises into the opening, middle of the mouth
UPPER_TEETH_PER_WIDTH = 0.15  # visible upper central-incisor length per mouth width
LOWER_TEETH_PER_WIDTH = 0.05
# The teeth sit on an arch seen from the front: a column at fraction u of the half mouth width meets
# the arch at angle asin(u sin(ARCH_ANGLE)) from the midline. Tooth boundaries along the arch, in
# degrees from the midline (upper: central and lateral incisor, canine, two premolars, molar), give
# central incisors ~0.14 of the mouth width, narrowing toward the corners as real ones do.
ARCH_ANGLE = np.radians(65.0)
UPPER_TEETH_DEG = (15.0, 27.0, 38.0, 48.0, 58.0, 70.0)
LOWER_TEETH_DEG = (8.0, 16.0, 25.0)
TOOTH_LENGTHS = np.array([1.0, 0.86, 0.93, 0.78, 0.72, 0.6])  # visible length relative to the central incisor
TOOTH_SEAM_DARKNESS = 0.35  # at the biting edge; half of it where the teeth meet the gum
FEATHER_PX_PER_512 = 1.2
SEAM_SHADE = 0.5  # colour of the line where the lips meet = lip colour times this
CLOSE_KEEP, CLOSE_FULL = 0.6, 0.3  # see close_strength
WIDE_OPEN_AREA = 0.01  # a portrait's inner-lip area (crop units²) above which a closing mouth is repainted whole
OPEN_MOUTH_AREA = 0.002  # inner-lip area (crop units²) above which the portrait's mouth counts as open
TEETH_OVER_SKIN = 1.3  # teeth luma at most this times the median face luma
TEETH_MAX_CHROMA = 40.0  # a sampled teeth colour whose channels spread wider than this is not teeth
# The upper teeth of a portrait that shows them, cut out as a strip hanging from the upper lip: columns
# run corner to corner, rows down from the lip, STRIP_ROW_PER_WIDTH mouth widths per row, so the strip
# scales with the mouth's width and never stretches with its opening.
STRIP_COLUMNS, STRIP_ROWS = 96, 24
STRIP_ROW_PER_WIDTH = 0.01
TEETH_START_ROWS = 8  # the teeth may start this many rows below the inner-lip landmarks (the lip's edge)
OWN_TEETH_ROWS = 6  # a column of the strip with this many rows of teeth is used whole; fewer, blended


@dataclass(frozen=True)
class MouthStyle:
    lip_rgb: np.ndarray  # (3,)
    teeth_rgb: np.ndarray  # (3,)
    source_area: float  # inner-lip polygon area of the portrait, crop units²
    teeth_strip: np.ndarray | None = None  # (STRIP_ROWS, STRIP_COLUMNS, 3) the portrait's own upper teeth
    teeth_length: np.ndarray | None = None  # (STRIP_COLUMNS,) rows of the strip that are teeth


def inner_lip_polygon(points_2d: np.ndarray) -> np.ndarray:
    """(22, 2) closed inner-lip contour: upper lip left to right, lower lip right to left."""
    return np.concatenate([points_2d[list(INNER_LIPS_UPPER)], points_2d[list(INNER_LIPS_LOWER[1:-1])]])


def polygon_area(polygon: np.ndarray) -> float:
    """Signed area (shoelace) of the inner-lip contour, positive while the lips are apart.

    The contour runs along the upper lip left to right, then back along the lower lip; with y
    pointing down that winding is positive when the lower lip is below the upper one, and it
    turns negative when they cross (a closed mouth pushed past closed)."""
    return seams.signed_area(polygon)


def mouth_style(image: np.ndarray, points_2d: np.ndarray) -> MouthStyle:
    """Sample lip and teeth colours from the portrait; points in crop units."""
    size = image.shape[0]
    inner = inner_lip_polygon(points_2d)
    outer_mask = np.zeros(image.shape[:2], np.uint8)
    lips = points_2d[list(OUTER_LIPS)]
    cv2.fillPoly(outer_mask, [np.round(lips * size).astype(np.int32)], 1)
    inner_mask = np.zeros_like(outer_mask)
    cv2.fillPoly(inner_mask, [np.round(inner * size).astype(np.int32)], 1)
    lip_pixels = image[(outer_mask > 0) & (inner_mask == 0)]
    lip_rgb = lip_pixels.mean(axis=0) if len(lip_pixels) else np.array([150.0, 80.0, 80.0])
    face = image[int(points_2d[:, 1].min() * size): int(points_2d[:, 1].max() * size),
                 int(points_2d[:, 0].min() * size): int(points_2d[:, 0].max() * size)].reshape(-1, 3)
    skin = np.median(face, axis=0) if len(face) else np.full(3, 180.0)
    # Teeth the portrait shows (an open mouth, bright, unsaturated pixels brighter than its skin)
    # give the colour; otherwise the default, no brighter than the skin allows.
    teeth_rgb = DEFAULT_TEETH_RGB * min(1.0, TEETH_OVER_SKIN * skin.mean() / DEFAULT_TEETH_RGB.mean())
    strip = None
    interior = image[inner_mask > 0].astype(np.float64)
    if len(interior) > 30 and polygon_area(inner) > OPEN_MOUTH_AREA:
        brightness = interior.mean(axis=1)
        bright = interior[brightness >= np.percentile(brightness, 85)]
        colour = bright.mean(axis=0)
        if (bright.mean() > max(100.0, skin.mean()) and bright.std(axis=0).mean() < 40
                and np.ptp(colour) < TEETH_MAX_CHROMA):  # pink is lips or gums, not teeth
            teeth_rgb = colour
            strip = _teeth_strip(image, points_2d, colour)
    colourfulness = float(np.clip(np.ptp(skin) / 60.0, 0.0, 1.0))
    teeth_rgb = teeth_rgb.mean() + colourfulness * (teeth_rgb - teeth_rgb.mean())
    lip_rgb = lip_rgb.mean() + colourfulness * (lip_rgb - lip_rgb.mean())
    return MouthStyle(lip_rgb.astype(np.float64), teeth_rgb, max(polygon_area(inner), 0.0),
                      *(strip if strip is not None else (None, None)))


def _teeth_strip(image: np.ndarray, points_2d: np.ndarray, teeth_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The portrait's upper teeth as a strip hanging from its upper inner lip (see STRIP_COLUMNS), and
    per column how many rows from the lip down look like those teeth (bright, unsaturated): None
    when too few columns show teeth."""
    size = image.shape[0]
    local = inner_lip_polygon(points_2d) * size - 0.5
    left, right = local[:, 0].min(), local[:, 0].max()
    width = right - left
    if width < 4:
        return None
    xs = left + (np.arange(STRIP_COLUMNS) + 0.5) / STRIP_COLUMNS * width
    y_up, y_lo = _lip_curves(local, xs)
    rows = np.arange(STRIP_ROWS) * STRIP_ROW_PER_WIDTH * width
    map_x = np.tile(xs, (STRIP_ROWS, 1)).astype(np.float32)
    map_y = (y_up[None, :] + rows[:, None]).astype(np.float32)
    strip = cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    luma = strip @ np.array([0.299, 0.587, 0.114])
    teeth_like = (luma > 0.6 * float(teeth_rgb @ [0.299, 0.587, 0.114])) & (np.ptp(strip, axis=2) < 1.5 * TEETH_MAX_CHROMA)
    teeth_like &= rows[:, None] < (y_lo - y_up)[None, :]  # above the lower lip
    # Teeth hang from the lip: a column's strip runs from the lip (the shadowed lip edge above the
    # teeth included, up to TEETH_START_ROWS) down to the first row below its teeth that is not
    # teeth-like; columns are smoothed against stray pixels.
    start = np.argmax(teeth_like[:TEETH_START_ROWS], axis=0)
    below = np.arange(STRIP_ROWS)[:, None] >= start[None, :]
    stops = ~teeth_like & below
    length = np.where(teeth_like[:TEETH_START_ROWS].any(axis=0),
                      np.where(stops.any(axis=0), np.argmax(stops, axis=0), STRIP_ROWS), 0)
    length = cv2.medianBlur(length.astype(np.uint8)[None, :], 5)[0].astype(np.float32)
    if (length >= 2).mean() < 0.3:
        return None
    return strip.astype(np.float32), length


def open_strength(style: MouthStyle, target_area: float) -> float:
    """0 when the target mouth is no more open than the source, ~1 when it is much wider."""
    if target_area <= 0:
        return 0.0
    return float(np.clip((target_area - 1.05 * style.source_area) / (0.25 * target_area + 1e-9), 0.0, 1.0))


def close_strength(style: MouthStyle, target_area: float) -> float:
    """0 while the target mouth keeps at least CLOSE_KEEP of an open-mouthed portrait's opening, 1 once
    it is down to CLOSE_FULL or less: how much of the portrait's own interior, squeezed by the warp into
    a jagged sliver of teeth and shadow, to paint over as the lips close."""
    if style.source_area <= OPEN_MOUTH_AREA:
        return 0.0
    return float(np.clip((CLOSE_KEEP * style.source_area - target_area) / ((CLOSE_KEEP - CLOSE_FULL) * style.source_area),
                         0.0, 1.0))


def paint_interior(frame: np.ndarray, points_2d: np.ndarray, style: MouthStyle) -> np.ndarray:
    """Paint the interior inside the target inner-lip polygon of `frame` (in place and returned):
    wider than the portrait's mouth, or much narrower than an open-mouthed portrait's."""
    size = frame.shape[0]
    polygon = inner_lip_polygon(points_2d) * size
    area = polygon_area(polygon / size)
    opening, closing = open_strength(style, area), close_strength(style, area)  # never both > 0
    if opening <= 0.0 and closing <= 0.0:
        return frame
    pad = 3
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - pad
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + pad
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, size), min(y1, size)
    if x1 - x0 < 3 or y1 - y0 < 2:
        return frame
    local = polygon - [x0, y0]
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    if closing > 0:  # the sliver between nearly closed lips, and the line where crossed lips meet
        mask = seams.band_mask(local, mask.shape, area, size)
    else:
        cv2.fillPoly(mask, [np.round(local * 16).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=4)
    feather = FEATHER_PX_PER_512 * size / 512
    mask = cv2.GaussianBlur(mask, (0, 0), feather)
    patch = frame[y0:y1, x0:x1].astype(np.float32)
    if closing > 0 and style.source_area < WIDE_OPEN_AREA:
        # A portrait with parted lips: its own teeth, squeezed a little, still look like teeth; only
        # where the lips (nearly) meet is the line between them painted over the squeezed sliver.
        y_up, y_lo = _lip_curves(local, mask.shape[1])
        interior, together = seams.seam(y_up, y_lo, patch, size, style.lip_rgb * SEAM_SHADE)
        alpha = (mask * closing * together[None, :])[:, :, None]
    else:
        # Wider than the portrait's mouth, or closing a wide-open one (whose teeth, tongue and shadow
        # squeeze into jagged bands): the synthesised interior.
        interior = _interior_colours(local, patch, style, size)
        alpha = (mask * max(opening, closing))[:, :, None]
    frame[y0:y1, x0:x1] = np.clip(patch + alpha * (interior - patch), 0, 255).round().astype(np.uint8)
    return frame


def _lip_curves(local: np.ndarray, width: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower inner-lip y at every column of the patch, or at the x given (linear between
    landmarks)."""
    n_upper = len(INNER_LIPS_UPPER)
    lower = np.concatenate([local[n_upper - 1: n_upper], local[n_upper:], local[:1]])
    return seams.curves(local[:n_upper], lower, width)


def _interior_colours(local: np.ndarray, patch: np.ndarray, style: MouthStyle, size: int) -> np.ndarray:
    h, w = patch.shape[:2]
    y_up, y_lo = _lip_curves(local, w)
    left, right = local[:, 0].min(), local[:, 0].max()
    mouth_width = max(right - left, 1.0)
    half = mouth_width / 2
    centre = (left + right) / 2
    xs = np.arange(w) + 0.5
    ys = (np.arange(h) + 0.5)[:, None]
    across = np.clip((xs - centre) / half, -1, 1)  # -1 left corner .. 1 right corner
    angle = np.arcsin(np.abs(across) * np.sin(ARCH_ANGLE))  # where each column meets the dental arch
    facing = np.cos(angle)  # teeth turn away from the camera toward the corners
    gap = np.maximum(y_lo - y_up, 1e-3)
    depth = np.clip((ys - y_up) / gap, 0, 1)  # 0 at the upper lip .. 1 at the lower lip
    soft = 0.8 * size / 512 + 0.3  # anti-aliasing width of tooth edges, px
    # Cavity: dark, darkest toward the corners (the cheeks' shadow) and midway down.
    cavity = style.lip_rgb * CAVITY_DARKNESS * (1 - 0.6 * across**2)[None, :, None]
    out = cavity * (1 - 0.3 * np.sin(np.pi * depth)[:, :, None])
    # Tongue: a lighter red mound rising from the lower lip in the middle, a third of the opening.
    mound = np.clip(1 - (across / 0.65) ** 2, 0, 1)
    tongue_top = y_lo - TONGUE_PER_GAP * gap * np.sqrt(mound)
    tongue = np.clip((ys - tongue_top) / (2 * soft), 0, 1) * (mound > 0)
    out = out + tongue[:, :, None] * (style.lip_rgb * TONGUE_SHADE * (0.75 + 0.25 * depth[:, :, None]) - out)
    # Lower teeth: a short row in the middle, in the upper teeth's shadow.
    lower_height = np.minimum(LOWER_TEETH_PER_WIDTH * mouth_width, 0.2 * gap) * _tooth_profile(angle, LOWER_TEETH_DEG)
    lower_height = lower_height * (angle < np.radians(LOWER_TEETH_DEG[-1]))
    lower_alpha = np.clip((ys - (y_lo - lower_height)) / soft, 0, 1) * (lower_height > 0.5)
    lower = 0.72 * (0.6 + 0.4 * facing) * _tooth_gaps(across, LOWER_TEETH_DEG, half, soft, 0.5)
    out = out + lower_alpha[:, :, None] * (style.teeth_rgb * lower[None, :, None] - out)
    # Upper teeth: incisors, canines and premolars along the arch, each with a rounded biting edge,
    # shorter and darker the further round the arch they sit, dark seams between them.
    upper_height = np.minimum(UPPER_TEETH_PER_WIDTH * mouth_width, 0.55 * gap) * _tooth_profile(angle, UPPER_TEETH_DEG)
    upper_alpha = np.clip((y_up + upper_height - ys) / soft, 0, 1) * (upper_height > 0.5)
    into_teeth = np.clip((ys - y_up) / np.maximum(upper_height, 1.0), 0, 1)
    between_teeth = _tooth_gaps(across, UPPER_TEETH_DEG, half, soft, 0.5 + 0.5 * into_teeth)  # (h, w)
    shade = (0.45 + 0.55 * facing**1.5)[None, :] * between_teeth * (0.86 + 0.14 * np.clip(into_teeth * 3, 0, 1))
    upper = style.teeth_rgb * shade[:, :, None]
    if style.teeth_strip is not None:  # the portrait's own upper teeth, at the size they are in the photo,
        # where it shows them; the drawn ones where it does not (its teeth in the corners' shadow)
        own, own_alpha, shown = _own_teeth(style, xs, ys, y_up, gap, left, mouth_width, soft)
        upper = upper + shown[None, :, None] * (own - upper)
        upper_alpha = upper_alpha + shown[None, :] * (own_alpha - upper_alpha)
    out = out + upper_alpha[:, :, None] * (upper - out)
    lips, together = seams.seam(y_up, y_lo, patch, size, style.lip_rgb * SEAM_SHADE)
    out = out + together[None, :, None] * (lips - out)
    return out.astype(np.float32)


def _own_teeth(style: MouthStyle, xs: np.ndarray, ys: np.ndarray, y_up: np.ndarray, gap: np.ndarray,
               left: float, mouth_width: float, soft: float) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, 3) the portrait's teeth strip hung from the target upper lip, its (h, w) alpha, and per
    column (w,) how much the portrait shows teeth there (0..1)."""
    column = (xs - left) / mouth_width * STRIP_COLUMNS - 0.5
    row = (ys - y_up[None, :]) / (STRIP_ROW_PER_WIDTH * mouth_width)
    map_x = np.broadcast_to(column[None, :], row.shape).astype(np.float32)
    teeth = cv2.remap(style.teeth_strip, map_x, row.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    length = np.interp(column, np.arange(STRIP_COLUMNS), style.teeth_length) * STRIP_ROW_PER_WIDTH * mouth_width
    height = np.minimum(length, 0.55 * gap)  # as the drawn teeth: the opening shows more than teeth
    inside = (column >= -0.5) & (column <= STRIP_COLUMNS - 0.5)
    alpha = np.clip((y_up + height - ys) / soft, 0, 1) * (height > 0.5)
    shown = np.clip(np.interp(column, np.arange(STRIP_COLUMNS), style.teeth_length) / OWN_TEETH_ROWS, 0, 1) * inside
    shown = cv2.GaussianBlur(shown[None, :].astype(np.float32), (0, 0), max(mouth_width / STRIP_COLUMNS * 2, 0.5))[0]
    return teeth, alpha, shown


def _tooth_index(angle: np.ndarray, bounds_deg: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Which tooth each column's arch angle falls on (0 = central), and where across it (0..1)."""
    bounds = np.radians(np.concatenate([[0.0], bounds_deg]))
    index = np.clip(np.searchsorted(bounds, angle, side="right") - 1, 0, len(bounds_deg) - 1)
    return index, (angle - bounds[index]) / (bounds[index + 1] - bounds[index])


def _tooth_profile(angle: np.ndarray, bounds_deg: tuple[float, ...]) -> np.ndarray:
    """Visible tooth length per column as a fraction of the central incisor's: each tooth shorter
    than the one before it, its biting edge rounded off toward both sides."""
    index, within = _tooth_index(angle, bounds_deg)
    length = TOOTH_LENGTHS[np.minimum(index, len(TOOTH_LENGTHS) - 1)]
    rounding = np.clip(np.abs(2 * within - 1) - 0.4, 0, None) / 0.6
    return length * (1 - 0.22 * rounding**2)


def _tooth_gaps(across: np.ndarray, bounds_deg: tuple[float, ...], half: float, soft: float,
               strength) -> np.ndarray:
    """Brightness factor per column (times `strength`, a number or per-pixel array): darker on the
    seams between neighbouring teeth."""
    edges = np.sin(np.radians(np.concatenate([[0.0], bounds_deg]))) / np.sin(ARCH_ANGLE) * half  # px from centre
    distance = np.min(np.abs(np.abs(across)[:, None] * half - edges[None, :]), axis=1)
    return 1 - TOOTH_SEAM_DARKNESS * strength * np.exp(-(distance**2) / (2 * (0.6 * soft) ** 2))
