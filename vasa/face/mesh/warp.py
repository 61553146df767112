"""Dense backward warping driven by sparse vertex motion.

The warp mesh is a Delaunay triangulation of the source vertices (face landmarks, anchor rings
that carry hair and neck, and points on the image border that never move). Each frame the mesh
is rasterised at its target positions on a coarse grid, nearest triangle on top, giving for each
grid cell the source position it shows (an exact backward map, folds and collapsing eyelids
included); the map's offset is smoothed off the face, upsampled, and one `cv2.remap` renders.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from scipy.spatial import Delaunay

BORDER_POINTS_PER_SIDE = 9
BORDER_RAMP = 0.03  # share of the crop over which motion fades to zero at its border
SUBPIXEL_BITS = 4
SILHOUETTE_STRETCH = 1.8  # outline triangles grown past this area ratio get a smoothed map  # fixed-point fraction bits for cv2's polygon filling


@dataclass(frozen=True)
class WarpMesh:
    vertices: np.ndarray  # (V, 2) source positions, crop units
    triangles: np.ndarray  # (F, 3)
    grid: int  # field resolution G
    smooth_mask: np.ndarray  # (G, G, 1) float32: 1 where the map is low-pass filtered (off the face)
    source_winding: np.ndarray  # (F,) +1 / -1: sign of each triangle's area in the source
    source_area: np.ndarray  # (F,) |area| of each triangle in the source, crop units²
    silhouette: np.ndarray  # (F,) bool: triangles touching the face outline


def border_points(count: int = BORDER_POINTS_PER_SIDE) -> np.ndarray:
    """Points on the crop's border (crop units), corners included."""
    t = np.linspace(0.0, 1.0, count)
    inner = t[1:-1]
    ring = np.concatenate([np.stack([t, np.zeros_like(t)], 1), np.stack([t, np.ones_like(t)], 1),
                           np.stack([np.zeros_like(inner), inner], 1), np.stack([np.ones_like(inner), inner], 1)])
    return ring


def build_warp_mesh(vertices: np.ndarray, grid: int, face_polygon: np.ndarray,
                    outline_vertices: np.ndarray) -> WarpMesh:
    """Triangulate the source vertices (crop units, border points included); `outline_vertices`
    are the indices of the face-outline vertices (their triangles get `SILHOUETTE_STRETCH` care)."""
    triangulation = Delaunay(vertices)
    mask = np.zeros((grid, grid), np.uint8)
    cv2.fillPoly(mask, [np.round(face_polygon * grid - 0.5).astype(np.int32)], 1)
    soft = cv2.GaussianBlur(1.0 - mask.astype(np.float32), (0, 0), grid / 64)
    corners = vertices[triangulation.simplices]
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    signed = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    silhouette = np.isin(triangulation.simplices, outline_vertices).any(axis=1)
    return WarpMesh(vertices, triangulation.simplices, grid, soft[:, :, None], np.sign(signed),
                    np.abs(signed) / 2, silhouette)


def rasterize(mesh: WarpMesh, target: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward map on the G grid: for each cell centre, the source position it shows.

    target (V, 2) crop units, depth (V,) (larger = farther). Triangles are painted far to near
    into an id buffer (`cv2.fillConvexPoly`, sub-cell precision), so where they overlap (a turned
    head folds the cheek behind the nose) the nearest wins; each cell then goes through its
    triangle's affine map target -> source. Returns the source positions (G*G, 2), crop units,
    and a (G, G) bool mask of cells drawn by an outline triangle stretched past
    SILHOUETTE_STRETCH (a turned-away cheek unfolding from a thin strip of the portrait).
    """
    g = mesh.grid
    triangles_target = target[mesh.triangles]  # (F, 3, 2)
    a, b, c = triangles_target[:, 0], triangles_target[:, 1], triangles_target[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    # Collapsed triangles (a closed eyelid) show nothing, nor do mirrored ones: a triangle whose
    # corners changed winding is the back of a fold, hidden behind the part that folded over it.
    drawn = (area * mesh.source_winding) * g * g > 1e-4
    order = np.argsort(-depth[mesh.triangles].mean(axis=1), kind="stable")
    order = order[drawn[order]]
    fixed = np.round((triangles_target * g - 0.5) * (1 << SUBPIXEL_BITS)).astype(np.int32)
    ids = np.full((g, g), len(area), np.int32)  # index F = "no triangle"
    for face in order.tolist():
        cv2.fillConvexPoly(ids, fixed[face], face, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    affine = _affine_maps(triangles_target, mesh.vertices[mesh.triangles], drawn)  # (F + 1, 2, 3)
    per_cell = affine[ids.ravel()]  # (G*G, 2, 3)
    cells = grid_centres(g)
    positions = (per_cell[:, :, 0] * cells[:, :1] + per_cell[:, :, 1] * cells[:, 1:]
                 + per_cell[:, :, 2]).astype(np.float32)
    # A cell on a triangle's edge may lie up to a cell outside it, where a nearly collapsed triangle
    # (a shut eyelid) extrapolates far (specks of cheek in the lash line): the cells of triangles that
    # magnify more than 2x stay within their triangle's source box grown by two cells (a cell of any
    # other triangle cannot land further out than that anyway).
    magnifying = np.append(np.linalg.norm(affine[:-1, :, :2], axis=(1, 2)) > 2.0, False)  # (F + 1,)
    at = np.flatnonzero(magnifying[ids.ravel()])
    if len(at):
        source = mesh.vertices[mesh.triangles[ids.ravel()[at]]]  # (n, 3, 2)
        positions[at] = np.clip(positions[at], source.min(axis=1) - 2 / g, source.max(axis=1) + 2 / g)
    holes = ids.ravel() == len(area)
    if holes.any():  # left by culled folds: fill from the surrounding map, not the identity
        positions = _fill_holes((positions - cells).reshape(g, g, 2), holes.reshape(g, g)).reshape(-1, 2) + cells
    stretched = mesh.silhouette & (np.abs(area) / 2 > SILHOUETTE_STRETCH * mesh.source_area)
    return positions, np.append(stretched, False)[ids]


def _fill_holes(offset: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Normalised convolution: hole cells take the Gaussian-weighted mean of the offsets around
    them (widening until every hole has neighbours), so a fold renders as a smooth squeeze."""
    valid = (~holes).astype(np.float32)
    filled = offset * valid[:, :, None]
    for sigma in (1.5, 4.0, 12.0):
        weight = cv2.GaussianBlur(valid, (0, 0), sigma)
        mean = cv2.GaussianBlur(filled, (0, 0), sigma) / np.maximum(weight, 1e-6)[:, :, None]
        reached = holes & (weight > 1e-3)
        offset[reached] = mean[reached]
        holes = holes & ~reached
        if not holes.any():
            break
    offset[holes] = 0.0
    return offset


def _affine_maps(target: np.ndarray, source: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per triangle the affine (2, 3) taking its target corners to its source corners; one
    identity map appended for cells no triangle covers. target, source: (F, 3, 2)."""
    edges_t = np.stack([target[:, 1] - target[:, 0], target[:, 2] - target[:, 0]], axis=2)  # (F, 2, 2) columns
    edges_s = np.stack([source[:, 1] - source[:, 0], source[:, 2] - source[:, 0]], axis=2)
    det = edges_t[:, 0, 0] * edges_t[:, 1, 1] - edges_t[:, 0, 1] * edges_t[:, 1, 0]
    det = np.where(valid, det, 1.0)
    inverse = np.stack([np.stack([edges_t[:, 1, 1], -edges_t[:, 0, 1]], 1),
                        np.stack([-edges_t[:, 1, 0], edges_t[:, 0, 0]], 1)], 1) / det[:, None, None]
    linear = edges_s @ inverse  # (F, 2, 2)
    shift = source[:, 0] - np.einsum("fij,fj->fi", linear, target[:, 0])
    maps = np.concatenate([linear, shift[:, :, None]], axis=2)
    maps[~valid] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    identity = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    return np.concatenate([maps, identity]).astype(np.float32)


@lru_cache(maxsize=8)
def grid_centres(grid: int) -> np.ndarray:
    """(G*G, 2) pixel-centre positions (x, y) of a G x G grid, crop units, row-major. Read-only."""
    c = (np.arange(grid) + 0.5) / grid
    x, y = np.meshgrid(c, c)
    centres = np.stack([x.ravel(), y.ravel()], axis=1)
    centres.flags.writeable = False
    return centres


def backward_map(mesh: WarpMesh, target: np.ndarray, depth: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Target vertex positions (V, 2) crop units -> remap tables (map_x, map_y) at `size` pixels."""
    g = mesh.grid
    positions, stretched = rasterize(mesh, target, depth)
    offset = (positions - grid_centres(g)).reshape(g, g, 2).astype(np.float32)
    if stretched.any():
        # An unfolding silhouette stretches a thin strip of the portrait, face edge and hair
        # together, triangle by triangle: smooth the map there so the edge comes out straight
        # (blurred at half resolution: the same result at a quarter of the cost).
        half = (g // 2, g // 2)
        weight = cv2.resize(cv2.GaussianBlur(cv2.resize(stretched.astype(np.float32), half,
                                                        interpolation=cv2.INTER_AREA), (0, 0), g / 192),
                            (g, g), interpolation=cv2.INTER_LINEAR)[:, :, None]
        smooth = cv2.resize(cv2.GaussianBlur(cv2.resize(offset, half, interpolation=cv2.INTER_AREA),
                                             (0, 0), g / 128), (g, g), interpolation=cv2.INTER_LINEAR)
        offset += np.clip(3 * weight, 0, 1) * (smooth - offset)
    # Smooth over hair and background (piecewise-linear kinks would bend straight lines there);
    # blurring a quarter-resolution copy is as good and ~10x cheaper than at full grid size.
    small = cv2.resize(offset, (g // 4, g // 4), interpolation=cv2.INTER_AREA)
    blurred = cv2.resize(cv2.GaussianBlur(small, (0, 0), g / 96), (g, g), interpolation=cv2.INTER_LINEAR)
    offset += mesh.smooth_mask * (blurred - offset)
    offset *= _border_hold(g)  # the blur spreads motion onto the border; the border must not move
    # Resize the offset, not the positions: a linear resize clamps at the border, where the
    # offset is zero (border points are fixed), so the identity map stays exact.
    offset_x = cv2.resize(offset[:, :, 0] * size, (size, size), interpolation=cv2.INTER_LINEAR)
    offset_y = cv2.resize(offset[:, :, 1] * size, (size, size), interpolation=cv2.INTER_LINEAR)
    identity = np.arange(size, dtype=np.float32)
    return offset_x + identity[None, :], offset_y + identity[:, None]


@lru_cache(maxsize=8)
def _border_hold(grid: int) -> np.ndarray:
    """(G, G, 1) weight: 0 on the outermost cells, rising to 1 over BORDER_RAMP of the crop."""
    ramp = max(2, int(round(BORDER_RAMP * grid)))
    edge = np.minimum(np.arange(grid), np.arange(grid)[::-1]).astype(np.float32)
    weight = np.clip(edge / ramp, 0.0, 1.0)
    return np.minimum(weight[:, None], weight[None, :])[:, :, None]


def remap(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
