"""A legend of the classes in a frame (colour swatch and name) drawn onto its overlay (``--legend``).

Classes covering at least ``MIN_FRACTION`` of the frame are listed in class order (a stable order, so
entries do not jump between frames), in a dark box at the top left, in as many columns as the frame's
height needs. Sizes scale with the frame, so the legend reads the same at 256x512 and at 1080p.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_FRACTION = 0.001  # a class on fewer pixels than this (speckle) is left out
FONT = cv2.FONT_HERSHEY_SIMPLEX


def present_classes(semantic: np.ndarray, num_classes: int, min_fraction: float = MIN_FRACTION) -> list[int]:
    """Return the class ids covering at least ``min_fraction`` of ``semantic``, in class order."""
    counts = np.bincount(semantic.ravel(), minlength=256)[:num_classes]
    return [int(c) for c in np.flatnonzero(counts >= max(1, min_fraction * semantic.size))]


def _layout(height: int) -> tuple[float, int, int]:
    """Return (font scale, text thickness, row height in px) for a frame ``height`` px high."""
    scale = min(max(height / 720 * 0.7, 0.3), 1.4)
    return scale, 1 if scale < 0.8 else 2, max(9, round(26 * scale / 0.6))


def draw_legend(picture: np.ndarray, semantic: np.ndarray, classes: tuple[str, ...], lut: np.ndarray,
                min_fraction: float = MIN_FRACTION) -> np.ndarray:
    """Draw the legend of the classes in ``semantic`` onto the RGB ``picture`` (in place); return it."""
    present = present_classes(semantic, len(classes), min_fraction)
    if not present:
        return picture
    h, w = picture.shape[:2]
    scale, thick, row = _layout(h)
    pad, swatch = max(3, row // 4), max(6, round(row * 0.7))
    per_col = max(1, (h - 2 * pad) // row)
    cols = [present[i:i + per_col] for i in range(0, len(present), per_col)]
    widths = [swatch + pad + max(cv2.getTextSize(classes[c], FONT, scale, thick)[0][0] for c in col) for col in cols]
    box_w = min(w, sum(widths) + pad * (len(cols) + 1))
    box_h = min(h, min(len(present), per_col) * row + pad)
    region = picture[:box_h, :box_w]
    region[...] = (region.astype(np.float32) * 0.35).astype(np.uint8)  # darken: names stay readable on any scene
    x = pad
    for col, col_w in zip(cols, widths):
        for k, c in enumerate(col):
            top = pad + k * row
            colour = tuple(int(v) for v in lut[c])
            cv2.rectangle(picture, (x, top), (x + swatch, top + swatch), colour, -1)
            cv2.rectangle(picture, (x, top), (x + swatch, top + swatch), (255, 255, 255), 1)
            cv2.putText(picture, classes[c], (x + swatch + pad, top + swatch), FONT, scale, (255, 255, 255), thick,
                        cv2.LINE_AA)
        x += col_w + pad
    return picture
