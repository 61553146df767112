"""An invisible watermark in the frames: a fixed, faint pattern of light and dark blobs that says
"made by vasa" and carries a 32-bit id, and is found again after re-encoding, down-scaling, cropping,
frame-rate conversion and cutting.

How it works (spread spectrum over a grid of cells):
- The frame is divided into GRID x GRID cells. A fixed key (a seeded permutation, the same in every
  install) gives each cell a random sign and one of three roles: the pilot (finds the geometry), the
  marker (decides), or one of the PAYLOAD_BITS bits (the id and its CRC-8; CELLS_PER_BIT cells each,
  scattered over the frame).
- A pilot or marker cell shows its sign; a cell of a coded bit shows its sign times +1 or -1 for the
  bit's value. The cell grid is upsampled smoothly to the frame and added to the luma (the same amount
  to R, G and B) at AMPLITUDE grey levels, scaled by the frame's texture (PSNR ~40.3 dB). It is the
  same in every frame, so it survives any change of frame rate or cut and adds up over frames when read.
- Reading: the frames' luma is averaged, its fine detail taken out and evened out, and the pilot is
  searched for over scale (how much of the original width is left after cropping) and position (FFT
  correlation). At the pilot's place the marker cells decide, and the coded bits' soft values go
  through a Viterbi decoder; the id counts only when its CRC-8 holds.
- The decision and its false-positive probability, by construction: with a place fixed by the pilot
  alone, the marker's correlation is S = sum over marker cells c of sign_c * v_c, v_c being what the
  video shows at cell c. In a video without the mark, v does not depend on the marker's signs, which
  the key draws independently and evenly, so S is a Rademacher sum and, by Hoeffding's inequality,
  P(S >= z * sqrt(sum v_c^2)) <= exp(-z^2 / 2) whatever the video shows. The marker is read at two
  places (the pilot's best overall and its best for an uncropped frame) and the better z counts, so
  the bound is 2 exp(-z^2 / 2): the mark is found when z >= Z_THRESHOLD, a false-positive probability
  of at most 2 exp(-Z_THRESHOLD^2 / 2) = 5.4e-7 per video.

The key is public (this file): the mark tells anyone who checks that vasa made the video; it is not a
secret, and a determined adversary can remove it. The signed manifest (vasa.provenance.manifest) is the
second, independent statement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

GRID = 64  # cells per side of the frame: 8 px cells at 512 px
PILOT_CELLS = 1536
ID_BITS = 32
CRC_BITS = 8
# the id and its CRC are sent with a convolutional code (rate 1/2, constraint length 7, the generators
# 171 and 133 octal of the classic K=7 code, 6 zero tail bits), read back by soft Viterbi decoding
CODE_MEMORY = 6
CODE_GENERATORS = (0o171, 0o133)
MESSAGE_BITS = ID_BITS + CRC_BITS
PAYLOAD_BITS = 2 * (MESSAGE_BITS + CODE_MEMORY)  # 92 coded bits
CELLS_PER_BIT = 11
MARKER_CELLS = GRID * GRID - PILOT_CELLS - PAYLOAD_BITS * CELLS_PER_BIT  # 1548
AMPLITUDE = 2.85  # grey levels at a cell's centre where the gain is 1 (the gain's mean square is 1)
GAIN_FLOOR, GAIN_CEIL = 0.4, 2.0  # the pattern's strength on flat areas and on the busiest ones (then
# normalised); DETAIL_FOR_FULL_GAIN: the |Laplacian| (grey levels, quarter size, smoothed) that adds 1
DETAIL_FOR_FULL_GAIN = 8.0
KEY_SEED = 0x7A5A_2024  # the public key: the seed of the cells' roles and signs
Z_THRESHOLD = 5.5  # the marker's score that counts as found (false positives <= 5.4e-7 a video)
READ_GAIN_POWER = 1.5  # reading divides the residual by the texture gain to this power (see _at_share)
READ_SIZE = 256  # the original frame's width on the grid the reader works on (4 px cells)
# the share of the original width a video shows (after cropping), searched from 0.55 to 1 in 1 % steps
WIDTH_SHARES = tuple(round(0.55 * 1.01**k, 4) for k in range(61))
UNCROPPED_SHARES = (1.0, 0.9975, 0.995)  # the whole frame, however scaled: the second place tried
PLACES_TRIED = 2  # the marker is read at the pilot's best place overall and at its best uncropped one
PILOT, MARKER = -1, -2  # cell roles; 0 .. PAYLOAD_BITS - 1 are the bits


@dataclass(frozen=True)
class Key:
    signs: np.ndarray  # (GRID, GRID) +-1
    role: np.ndarray  # (GRID, GRID): PILOT, MARKER or a payload bit's index


@lru_cache(maxsize=1)
def key() -> Key:
    rng = np.random.default_rng(KEY_SEED)
    order = rng.permutation(GRID * GRID)
    role = np.full(GRID * GRID, MARKER, dtype=np.int16)
    role[order[:PILOT_CELLS]] = PILOT
    payload_cells = order[PILOT_CELLS : PILOT_CELLS + PAYLOAD_BITS * CELLS_PER_BIT]
    role[payload_cells] = np.arange(payload_cells.size) % PAYLOAD_BITS
    signs = rng.integers(0, 2, GRID * GRID) * 2 - 1
    return Key(signs.reshape(GRID, GRID).astype(np.float32), role.reshape(GRID, GRID))


def crc8(value: int, bits: int = ID_BITS) -> int:
    """CRC-8 (polynomial 0x07) of the `bits`-bit value, most significant bit first."""
    crc = 0
    for i in range(bits - 1, -1, -1):
        crc ^= ((value >> i) & 1) << 7
        crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def message_bits(ident: int) -> list[int]:
    """The id's 32 bits, then their CRC-8, most significant first."""
    if not 0 <= int(ident) < 2**ID_BITS:
        raise ValueError(f"the watermark id must fit {ID_BITS} bits, got {ident}")
    word = (int(ident) << CRC_BITS) | crc8(int(ident))
    return [(word >> (MESSAGE_BITS - 1 - i)) & 1 for i in range(MESSAGE_BITS)]


def _parity(value: int) -> int:
    return bin(value).count("1") & 1


def _code_outputs(state: int, bit: int) -> tuple[int, int]:
    register = (bit << CODE_MEMORY) | state  # the newest bit on top of the last CODE_MEMORY ones
    return tuple(_parity(register & g) for g in CODE_GENERATORS)


def payload_bits(ident: int) -> np.ndarray:
    """(PAYLOAD_BITS,) of +-1: the message's convolutional code, two coded bits per input bit."""
    state, coded = 0, []
    for bit in message_bits(ident) + [0] * CODE_MEMORY:
        coded += _code_outputs(state, bit)
        state = (state >> 1) | (bit << (CODE_MEMORY - 1))
    return np.array(coded, np.float32) * 2 - 1


@lru_cache(maxsize=1)
def _trellis() -> tuple[np.ndarray, np.ndarray]:
    """(states, 2) next state and (states, 2, 2) the +-1 coded pair, for each state and input bit."""
    states = 2**CODE_MEMORY
    following = np.zeros((states, 2), np.int64)
    pairs = np.zeros((states, 2, 2), np.float64)
    for state in range(states):
        for bit in (0, 1):
            following[state, bit] = (state >> 1) | (bit << (CODE_MEMORY - 1))
            pairs[state, bit] = np.array(_code_outputs(state, bit)) * 2 - 1
    return following, pairs


def viterbi(soft: np.ndarray) -> list[int]:
    """The message whose code correlates best with `soft` (PAYLOAD_BITS,) (positive = 1): soft-decision
    Viterbi over the code's 64 states, ending in state 0 (the tail)."""
    following, pairs = _trellis()
    states = following.shape[0]
    score = np.full(states, -np.inf)
    score[0] = 0.0
    history = []
    for step in range(len(soft) // 2):
        gain = pairs @ soft[2 * step : 2 * step + 2]  # (states, 2)
        candidate = score[:, None] + gain
        best = np.full(states, -np.inf)
        origin = np.zeros((states, 2), np.int64)  # (previous state, bit) of each state's best path
        for bit in (0, 1):
            for state in range(states):
                target = following[state, bit]
                if candidate[state, bit] > best[target]:
                    best[target] = candidate[state, bit]
                    origin[target] = (state, bit)
        history.append(origin)
        score = best
    state, bits = 0, []
    for origin in reversed(history):
        state, bit = origin[state]
        bits.append(int(bit))
    return bits[::-1][:MESSAGE_BITS]


def cell_grid(ident: int) -> np.ndarray:
    """(GRID, GRID) float32: each cell's value, +-1."""
    k = key()
    values = np.ones((GRID, GRID), np.float32)
    payload = k.role >= 0
    values[payload] = payload_bits(ident)[k.role[payload]]
    return k.signs * values


def _upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    # cubic interpolation between cell centres: smooth blobs, no hard cell edges to see
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


@lru_cache(maxsize=8)
def _pattern(ident: int, height: int, width: int) -> np.ndarray:
    return _upsample(cell_grid(ident), height, width) * np.float32(AMPLITUDE)  # (H, W) grey levels


def texture_gain(frame: np.ndarray) -> np.ndarray:
    """(H, W) float32: how strongly each place of the RGB frame may be marked. The eye sees a faint
    pattern on flat skin or a plain background and misses it in hair, fabric or an edge (contrast
    masking), so the pattern is scaled by the frame's local detail (|Laplacian| at a quarter of the
    size, smoothed; the green channel stands for the luma), between GAIN_FLOOR and GAIN_CEIL, and
    normalised to a mean square of 1: every frame gets the same energy."""
    height, width = frame.shape[:2]
    return _gain(cv2.pyrDown(np.ascontiguousarray(frame[::2, ::2, 1])), height, width)


def _luma_gain(luma: np.ndarray) -> np.ndarray:
    """texture_gain of a luma image (H, W), such as a video's mean luma."""
    return _gain(cv2.pyrDown(cv2.pyrDown(luma)), *luma.shape)


def _gain(small: np.ndarray, height: int, width: int) -> np.ndarray:
    detail = cv2.GaussianBlur(np.abs(cv2.Laplacian(small, cv2.CV_32F)), (0, 0), sigmaX=2.0)
    gain = np.clip(GAIN_FLOOR + detail / DETAIL_FOR_FULL_GAIN, GAIN_FLOOR, GAIN_CEIL)
    gain /= np.sqrt(np.mean(gain * gain))
    return cv2.resize(gain, (width, height), interpolation=cv2.INTER_LINEAR)


class Watermarker:
    """Marks RGB uint8 frames with one id: `mark(frame)` returns a new frame (~1.5 ms at 512 px on 2 cores)."""

    def __init__(self, ident: int):
        payload_bits(ident)  # checks the range
        self.ident = int(ident)

    def mark(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
        delta = cv2.multiply(_pattern(self.ident, *frame.shape[:2]), texture_gain(frame), dtype=cv2.CV_16S)
        # the same change to R, G and B moves only the luma; saturating
        return cv2.add(frame, cv2.merge([delta, delta, delta]), dtype=cv2.CV_8U)


# ---------------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class Reading:
    found: bool
    z: float  # the marker's correlation in units of its spread under no mark
    false_positive_p: float  # bound on the chance that a video without the mark scores z or more
    ident: int | None  # the id read, when found and its CRC-8 holds
    pilot_z: float  # the pilot's correlation peak, in standard deviations of its correlation surface
    width_share: float  # the share of the original frame's width the video shows
    offset_px: tuple[int, int]  # where the video's top-left corner lies on the original frame (x, y)
    frames: int

    def as_dict(self) -> dict:
        return {
            "found": self.found,
            "score": round(self.z, 2),
            "threshold": Z_THRESHOLD,
            "false_positive_probability": self.false_positive_p,
            "id": None if self.ident is None else f"{self.ident:08x}",
            "pilot_z": round(self.pilot_z, 2),
            "width_share": round(self.width_share, 4),
            "offset_px": list(self.offset_px),
            "frames_read": self.frames,
        }


def false_positive_bound(z: float) -> float:
    """The bound on P(score >= z) for a video without the mark: Hoeffding's at each of the PLACES_TRIED
    places the pilot chose, added up (the score is the best of them)."""
    return float(min(1.0, PLACES_TRIED * math.exp(-max(z, 0.0) ** 2 / 2)))


THRESHOLD_FALSE_POSITIVE_P = false_positive_bound(Z_THRESHOLD)


class Accumulator:
    """Adds up video frames' luma (any size, uint8 or float) for `read`."""

    def __init__(self):
        self.total: np.ndarray | None = None
        self.frames = 0

    def add(self, luma: np.ndarray) -> None:
        luma = np.asarray(luma, dtype=np.float32)
        if luma.ndim == 3:  # RGB
            luma = cv2.cvtColor(luma, cv2.COLOR_RGB2GRAY)
        if self.total is None:
            self.total = np.zeros_like(luma, dtype=np.float64)
        elif luma.shape != self.total.shape:
            raise ValueError(f"frame size changed from {self.total.shape} to {luma.shape}")
        self.total += luma
        self.frames += 1

    def mean(self) -> np.ndarray:
        if self.total is None:
            raise ValueError("no frames were added")
        return (self.total / self.frames).astype(np.float32)


def _residual(luma: np.ndarray) -> np.ndarray:
    """The luma's fine detail, evened out: what a 5x5 median does not keep, divided by its local
    strength, so that edges and texture of the picture weigh no more than flat skin and background."""
    detail = luma - cv2.medianBlur(luma, 5)
    return detail / np.sqrt(cv2.GaussianBlur(detail * detail, (0, 0), sigmaX=2.0) + 1.0)


def _high_pass(image: np.ndarray) -> np.ndarray:
    return image - cv2.GaussianBlur(image, (0, 0), sigmaX=3.0)


@lru_cache(maxsize=1)
def _pilot_spectrum() -> np.ndarray:
    k = key()
    pilot = np.where(k.role == -1, k.signs, 0.0).astype(np.float32)
    return np.fft.rfft2(_high_pass(_upsample(pilot, READ_SIZE, READ_SIZE)))


def _pilot_search(residual: np.ndarray) -> tuple[float, tuple[int, int]]:
    """The pilot's best place for `residual` (h, w) inside the reading grid: (z, (x, y)). The surface is
    the circular correlation at every offset; z is the best offset that keeps the video inside the
    original frame, in standard deviations of the whole surface."""
    h, w = residual.shape
    surface = np.fft.irfft2(_pilot_spectrum() * np.conj(np.fft.rfft2(residual, (READ_SIZE, READ_SIZE))),
                            (READ_SIZE, READ_SIZE))
    valid = surface[: READ_SIZE - h + 1, : READ_SIZE - w + 1]
    y, x = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return float((valid[y, x] - surface.mean()) / (surface.std() + 1e-12)), (int(x), int(y))


def _at_share(mean_luma: np.ndarray, share: float, stretched: bool = False) -> np.ndarray | None:
    """The weighed residual of the video on the reading grid, if it shows `share` of the original's width.
    The mark is drawn over the whole frame, square grid or not, so the grid's square is the original frame
    stretched: `stretched` takes the same share of its height (a crop of the same share off each side),
    otherwise the video keeps its own aspect on the grid (a crop to another aspect of a square frame)."""
    height, width = mean_luma.shape
    w = int(round(READ_SIZE * share))
    h = w if stretched else int(round(height * w / width))
    if w > READ_SIZE or h > READ_SIZE or w < 16 or h < 16:
        return None
    scaled = cv2.resize(mean_luma, (w, h), interpolation=cv2.INTER_AREA)
    # weigh places against the embedding's gain there: once the residual is evened out by the local
    # detail, the flat places (marked faintly) hold the mark with the least picture around it. The
    # weights are a function of the picture alone, so the false-positive bound holds; the power was
    # chosen on the edits of scripts/bench_watermark.py (1.5: lowest score at half size, CRF 32, 5.4 -> 6.1)
    return _residual(scaled) / _luma_gain(scaled) ** READ_GAIN_POWER


def read(mean_luma: np.ndarray, frames: int) -> Reading:
    """Look for the mark in a video's mean luma (h, w); the video may be scaled and cropped."""
    height, width = mean_luma.shape
    mean_luma = np.ascontiguousarray(mean_luma, dtype=np.float32)

    shapes = (False,) if height == width else (False, True)  # a square video: the two are one

    def search(shares, stretches=shapes):
        best = (-np.inf, 0.0, (0, 0), None)
        for share in shares:
            for stretched in stretches:
                residual = _at_share(mean_luma, share, stretched)
                if residual is not None:
                    z, place = _pilot_search(residual)
                    if z > best[0]:
                        best = (z, share, place, residual)
        return best

    coarse = search(WIDTH_SHARES)
    if coarse[3] is None:
        raise ValueError(f"frames of {width}x{height} are too small to read a watermark from")
    searched = max(coarse, search(coarse[1] * (1 + np.arange(-4, 5) * 0.0025)), key=lambda best: best[0])
    # the second place tried: the whole original frame (scaled, not cropped), the commonest case, where
    # a busy picture can hold a chance pilot peak higher than a weakened true one
    whole = search(UNCROPPED_SHARES, (True,))
    places = [searched] + ([whole] if whole[3] is not None else [])
    readings = []
    for z, share, (x, y), residual in places:
        z_marker, bits = _read_cells(residual, x, y)  # bits: the coded bits' soft values
        readings.append((z_marker, bits, z, share, (x, y), residual.shape))
    z_marker, bits, z, share, (x, y), (grid_h, grid_w) = max(readings, key=lambda reading: reading[0])
    found = z_marker >= Z_THRESHOLD
    ident = None
    if found:
        word = int("".join(str(b) for b in viterbi(bits)), 2)
        candidate = word >> CRC_BITS
        ident = candidate if crc8(candidate) == word & 0xFF else None
    offset = (int(round(x * width / grid_w)), int(round(y * height / grid_h)))  # in video pixels
    return Reading(found, z_marker, false_positive_bound(z_marker), ident, z, float(share), offset, frames)


@lru_cache(maxsize=1)
def _spread() -> np.ndarray:
    # column j: cell j's blob along one axis, as _upsample draws it
    return cv2.resize(np.eye(GRID, dtype=np.float32), (GRID, READ_SIZE), interpolation=cv2.INTER_CUBIC)


def _read_cells(residual: np.ndarray, x: int, y: int) -> tuple[float, np.ndarray]:
    """At the place (x, y) on the reading grid: the marker's z and the payload's PAYLOAD_BITS soft values
    (each coded bit's cells' correlation)."""
    canvas = np.zeros((READ_SIZE, READ_SIZE), np.float32)
    h, w = residual.shape
    canvas[y : y + h, x : x + w] = residual
    spread = _spread()  # (READ_SIZE, GRID): the upsampling, one axis
    cells = spread.T @ _high_pass(canvas) @ spread  # v_c: the matched filter of each cell's blob
    k = key()
    marker = k.role == MARKER
    z = float(np.sum(cells[marker] * k.signs[marker]) / (np.sqrt(np.sum(cells[marker] ** 2)) + 1e-12))
    payload = k.role >= 0
    sums = np.bincount(k.role[payload], weights=(cells * k.signs)[payload], minlength=PAYLOAD_BITS)
    return z, sums
