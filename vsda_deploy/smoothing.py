"""Temporal smoothing of streaming class probabilities (numpy + OpenCV, no torch).

``StreamingSmoother.update(frame_rgb, probs)`` blends the current prediction with the previous
smoothed one, ``out = (1 - a) * current + a * previous``, to remove flicker:

* ``flow``: the previous output is first backward-warped onto the current frame with DIS flow
  computed at ``flow_scale`` of the probability grid (flow convention: ``vsda_deploy.flow``);
  ``a`` drops to 0 where the forward-backward check finds the pixel occluded or out of view.
* ``ema``: the previous output is blended where it is, without motion (a cheap baseline).
* ``none``: the current probabilities pass through.

In both blending modes ``a = alpha`` is lowered where the current prediction is already
confident: it is scaled by ``(1 - max_prob) / (1 - confidence_gate)`` above the gate, so a
confident pixel follows the model at once. The smoother restarts (output = current) on the first
frame, on a scene cut (mean absolute grey-level difference of consecutive thumbnails above
``scene_cut_threshold``), when ``update(..., gap=True)`` says frames were skipped, and on
``reset()``. Stage times of the last call are in ``smoother.timing`` (ms).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from vsda_deploy.flow import create_dis, occlusion_mask, pixel_grid

MODES = ("flow", "ema", "none")
THUMB_WIDTH = 64  # scene cuts are judged on thumbnails: cheap, and blind to small motion and noise
MIN_FLOW_WIDTH = 32  # DIS needs a few patches per pyramid level
# Chosen on target-train videos by `python -m benchmarks smoothing`: the highest TC whose mIoU stays
# within 0.5 of no smoothing (figures in docs/benchmarks.md).
DEFAULT_ALPHA = 0.85


@dataclass
class SmoothingTimes:
    """Milliseconds spent in the last ``update``: grey + flow + occlusion, warp, blend."""

    flow_ms: float = 0.0
    warp_ms: float = 0.0
    blend_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.flow_ms + self.warp_ms + self.blend_ms


def remap_planes(planes: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Return ``out`` (C, H, W): each plane of ``planes`` sampled bilinearly at ``(map_x, map_y)``."""
    for c in range(planes.shape[0]):  # one plane at a time: no (H, W, C) transpose, maps reused
        cv2.remap(planes[c], map_x, map_y, cv2.INTER_LINEAR, dst=out[c], borderMode=cv2.BORDER_REPLICATE)
    return out


def confidence_weight(probs: np.ndarray, gate: float, out: np.ndarray | None = None) -> np.ndarray:
    """Return (H, W) float32 in [0, 1]: 1 where max prob <= ``gate``, falling to 0 at max prob 1."""
    out = np.max(probs, axis=0, out=out)
    if gate >= 1.0:
        out.fill(1.0)
        return out
    np.subtract(1.0, out, out=out)
    np.multiply(out, 1.0 / (1.0 - gate), out=out)
    return np.clip(out, 0.0, 1.0, out=out)


class StreamingSmoother:
    """Smooths a stream of (C, H, W) class probabilities over time (see the module docstring)."""

    def __init__(self, mode: str = "flow", alpha: float = DEFAULT_ALPHA, flow_scale: float = 0.5,
                 preset: str = "ultrafast", scene_cut_threshold: float = 30.0,
                 confidence_gate: float = 0.9) -> None:
        if mode not in MODES:
            raise ValueError(f"smoothing mode must be one of {', '.join(MODES)}, got {mode!r}")
        for name, value, ok, allowed in (
                ("alpha", alpha, 0 <= alpha < 1, "[0, 1)"),
                ("flow_scale", flow_scale, 0 < flow_scale <= 1, "(0, 1]"),
                ("scene_cut_threshold", scene_cut_threshold, scene_cut_threshold > 0, "> 0"),
                ("confidence_gate", confidence_gate, 0 < confidence_gate <= 1, "(0, 1]")):
            if not ok:
                raise ValueError(f"{name} must be in {allowed}, got {value}")
        self.mode, self.alpha, self.flow_scale = mode, alpha, flow_scale
        self.scene_cut_threshold, self.confidence_gate = scene_cut_threshold, confidence_gate
        self._dis = create_dis(preset) if mode == "flow" else None
        self.timing = SmoothingTimes()
        self.restarts = 0  # first frames, scene cuts, gaps and resets
        self.scene_cuts = 0
        self._shape: tuple[int, ...] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next ``update`` returns its probabilities unchanged."""
        self._prev: np.ndarray | None = None
        self._prev_small: np.ndarray | None = None
        self._prev_thumb: np.ndarray | None = None

    def update(self, frame_rgb: np.ndarray, probs: np.ndarray, gap: bool = False) -> np.ndarray:
        """Return the smoothed (C, H, W) float32 probabilities of this frame.

        ``frame_rgb`` is the frame ``probs`` was predicted from, at any size (it is resized to the
        probability grid). ``gap=True`` says frames were skipped before this one. The returned
        array is owned by the smoother and stays valid until the next call; copy it to keep it.
        """
        probs = self._check(frame_rgb, probs)
        if self.mode == "none":
            self.timing = SmoothingTimes()
            return probs
        start = time.perf_counter()
        small = self._small_gray(frame_rgb, probs.shape[1:])
        cut = self._scene_cut(small)
        prev_small, self._prev_small = self._prev_small, small
        if gap or cut or self._prev is None or self._shape != probs.shape:
            return self._restart(probs, start)
        if self.mode == "ema":
            flow_done = warp_done = time.perf_counter()
            out = self._blend(probs, self._prev, None)
        else:
            keep = self._motion(small, prev_small)
            flow_done = time.perf_counter()
            past = remap_planes(self._prev, self._map_x, self._map_y, self._warped)
            warp_done = time.perf_counter()
            out = self._blend(probs, past, keep)
        self.timing = SmoothingTimes(1e3 * (flow_done - start), 1e3 * (warp_done - flow_done),
                                     1e3 * (time.perf_counter() - warp_done))
        return out

    def _check(self, frame_rgb: np.ndarray, probs: np.ndarray) -> np.ndarray:
        if probs.ndim != 3 or not np.issubdtype(probs.dtype, np.floating):
            raise ValueError(f"probs must be float (C, H, W) class probabilities, got {probs.dtype} "
                             f"{probs.shape}")
        colour = frame_rgb.ndim == 3 and frame_rgb.shape[2] == 3
        if frame_rgb.dtype != np.uint8 or not (colour or frame_rgb.ndim == 2):
            raise ValueError(f"frame_rgb must be (H, W, 3) uint8, got {frame_rgb.dtype} {frame_rgb.shape}")
        return np.asarray(probs, dtype=np.float32)

    def _small_gray(self, frame_rgb: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """Return the grey frame at ``flow_scale`` of the probability grid (uint8)."""
        w = max(MIN_FLOW_WIDTH, round(grid[1] * self.flow_scale))
        h = max(1, round(grid[0] * w / grid[1]))
        small = cv2.resize(frame_rgb, (w, h), interpolation=cv2.INTER_AREA)
        return small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)

    def _scene_cut(self, small: np.ndarray) -> bool:
        """Return whether ``small`` starts a new scene (and remember its thumbnail)."""
        size = (THUMB_WIDTH, max(1, round(THUMB_WIDTH * small.shape[0] / small.shape[1])))
        thumb = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
        prev, self._prev_thumb = self._prev_thumb, thumb
        if prev is None or prev.shape != thumb.shape:
            return False
        cut = cv2.norm(thumb, prev, cv2.NORM_L1) / thumb.size > self.scene_cut_threshold
        self.scene_cuts += cut
        return cut

    def _restart(self, probs: np.ndarray, start: float) -> np.ndarray:
        if self._shape != probs.shape:
            self._allocate(probs.shape)
        self.restarts += 1
        self._weight.fill(0.0)  # nothing of the past is used
        self._prev = self._next_buffer()
        np.copyto(self._prev, probs)
        self.timing = SmoothingTimes(blend_ms=1e3 * (time.perf_counter() - start))
        return self._prev

    def _allocate(self, shape: tuple[int, ...]) -> None:
        """Allocate the per-resolution buffers once, so the frame loop allocates little."""
        h, w = shape[1:]
        self._shape = shape
        self._outputs = [np.empty(shape, np.float32), np.empty(shape, np.float32)]
        self._turn = 0
        self._warped = np.empty(shape, np.float32)
        self._grid_x, self._grid_y = pixel_grid(h, w)
        self._map_x, self._map_y = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
        self._flow_up = np.empty((h, w, 2), np.float32)
        self._weight = np.empty((h, w), np.float32)

    def _next_buffer(self) -> np.ndarray:
        """Return the output buffer not holding the previous output (they alternate)."""
        self._turn ^= 1
        return self._outputs[self._turn]

    def _motion(self, small: np.ndarray, prev_small: np.ndarray) -> np.ndarray:
        """Set the warp maps from the flow t -> t-1; return the (H, W) weight of the warped past."""
        flow_bw = self._dis.calc(small, prev_small, None)
        flow_fw = self._dis.calc(prev_small, small, None)
        visible = (~occlusion_mask(flow_fw, flow_bw)).astype(np.float32)
        h, w = self._shape[1:]
        up = cv2.resize(flow_bw, (w, h), dst=self._flow_up, interpolation=cv2.INTER_LINEAR)
        # vectors are in small-grid pixels: scale them with the grid
        np.multiply(up[..., 0], w / small.shape[1], out=self._map_x)
        np.multiply(up[..., 1], h / small.shape[0], out=self._map_y)
        self._map_x += self._grid_x
        self._map_y += self._grid_y
        return cv2.resize(visible, (w, h), interpolation=cv2.INTER_LINEAR)

    def _blend(self, probs: np.ndarray, past: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
        """Return ``probs + a * (past - probs)`` in a fresh output buffer; it becomes the past."""
        a = confidence_weight(probs, self.confidence_gate, out=self._weight)
        a *= self.alpha
        if keep is not None:
            a *= keep
        out = self._next_buffer()
        np.subtract(past, probs, out=out)
        out *= a
        out += probs
        self._prev = out
        return out

    @property
    def weight(self) -> np.ndarray | None:
        """Return the (H, W) weight ``a`` of the past in the last update (None before the first)."""
        return getattr(self, "_weight", None)


