"""Option values shared by ``vsda-infer``, ``vsda-export`` and the benchmarks: sizes, and the error for bad ones.

``OptionError`` is a bad option value (malformed, out of range, or contradicting another option or
the model): the CLIs exit 2 on it, and 1 on every other failure. ``parse_hw`` is the one reader of
``HxW`` text; sides are bounded to [``MIN_SIDE``, ``MAX_SIDE``] px so that a typo cannot ask for a
buffer of many gigabytes.
"""

from __future__ import annotations

import re

from vsda_deploy.errors import VsdaError

MIN_SIDE = 16  # the models downsample by 8 to 32: below this a feature map vanishes
MAX_SIDE = 4096  # 4K video; one 4096x4096 frame of 19-class float32 logits is already 1.3 GB
NATIVE = "native"  # --input-size native: every frame at its own size


class OptionError(VsdaError, ValueError):
    """A bad option value; the message starts with the option."""


def parse_hw(text: str, option: str = "--input-size") -> tuple[int, int]:
    """Return ``(H, W)`` of ``HxW`` (e.g. ``512x1024``); OptionError names ``option`` and the bounds."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if m is None:
        raise OptionError(f"{option} {text!r}: expected HxW, e.g. 512x1024")
    return check_hw((int(m[1]), int(m[2])), option)


def check_hw(size: tuple[int, int], option: str = "--input-size") -> tuple[int, int]:
    """Return ``size`` (H, W) when both sides are within [MIN_SIDE, MAX_SIDE]; else OptionError."""
    h, w = (int(v) for v in size)
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise OptionError(f"{option} {h}x{w}: height and width must be within {MIN_SIDE}..{MAX_SIDE} px")
    return h, w


def parse_input_size(text: str | None) -> tuple[int, int] | str | None:
    """Return vsda-infer's ``--input-size``: None (the model's trained scale), ``"native"`` or ``(H, W)``."""
    if text is None:
        return None
    if text.strip().lower() == NATIVE:
        return NATIVE
    return parse_hw(text)
