"""Pictures of an evaluation: square tiles of frames, labelled tiles, a header bar, PNG files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vasa.errors import VasaError

TILE = 256  # side of one picture in the sheets and side-by-side videos


def tile(image: np.ndarray, size: int = TILE) -> np.ndarray:
    """A square image resized to size x size (area interpolation when shrinking, cubic when growing)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interpolation)


def label(image: np.ndarray, text: str, scale: float = 0.55) -> np.ndarray:
    """Write `text` (lines split on newlines) in the top-left corner on a dark box (returns a copy)."""
    image = image.copy()
    y = 0
    for line in text.split("\n"):
        (w, h), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(image, (0, y), (w + 8, y + h + base + 6), (0, 0, 0), -1)
        cv2.putText(image, line, (4, y + h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        y += h + base + 6
    return image


def header(labels: list[str], widths: list[int], height: int = 30) -> np.ndarray:
    """A white bar (height, sum(widths), 3) with each label centred over its column."""
    bar = np.full((height, sum(widths), 3), 255, np.uint8)
    x = 0
    for text, width in zip(labels, widths):
        (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)
        cv2.putText(bar, text, (x + max(2, (width - w) // 2), height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (0, 0, 0), 1, cv2.LINE_AA)
        x += width
    return bar


def save_png(path: Path, image: np.ndarray) -> Path:
    """An RGB image as a maximally compressed PNG."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise VasaError(f"cannot write {path}")
    return Path(path)
