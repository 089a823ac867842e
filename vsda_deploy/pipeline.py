"""One frame through the model: resize to the model's scale, normalise, predict, smooth, resize back, label.

``model_input`` is vsda's one pre-processing (``vsda_deploy.preprocess.resize_frame``, the resize training
uses too, then ``normalise``
with the model's channel order, mean and std): ``vsda-infer``, the export parity check, INT8 calibration
and the formats benchmark all feed models through it, and ``label_predictor`` is ``vsda-infer``'s
frame -> class map path for code that scores a model. The maths (``softmax``, ``argmax_classes``)
works in place on buffers that ``FramePipeline`` keeps from frame to frame.

The scale a frame runs at (``FramePipeline(input_size=...)``): by default the model's trained scale
(``Segmenter.default_size``: ``ModelMeta.input_size`` of an exported model, the ``eval_size`` of a
checkpoint); ``"native"``: each frame at its own size; ``(H, W)``: that size.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np

from vsda_deploy.backends import ModelError, Segmenter
from vsda_deploy.options import NATIVE, OptionError, check_hw
from vsda_deploy.preprocess import Normalization, normalise, resize_frame
from vsda_deploy.smoothing import StreamingSmoother

# Smoothing runs on class probabilities at most this wide, resized to the frame afterwards. The
# models predict at 1/8 of their input and upsample inside the graph, so a finer grid carries no
# more information, only cost: at 256x512 it halves the smoothing stage. (See FramePipeline.)
SMOOTH_WIDTH = 256


def model_input(frame_rgb: np.ndarray, size: tuple[int, int] | None, norm: Normalization,
                out: np.ndarray | None = None) -> np.ndarray:
    """Return the (1, 3, H, W) float32 model input of an RGB uint8 frame, resized to ``size`` first.

    ``size`` None keeps the frame's size; ``out`` (allocated when None) receives the result.
    """
    return normalise(resize_frame(frame_rgb, size), norm, out)


def softmax(logits: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """Return ``out`` = softmax of (C, H, W) float32 ``logits`` over classes; ``scratch`` is an (H, W) buffer.

    ``np.exp`` on purpose: ``cv2.exp`` is 3x faster on moderate values but was 10x slower on the
    strongly negative ones a confident model gives (measured in the frame loop).
    """
    np.max(logits, axis=0, out=scratch)
    np.subtract(logits, scratch, out=out)
    np.exp(out, out=out)
    np.sum(out, axis=0, out=scratch)
    np.reciprocal(scratch, out=scratch)  # one division per pixel, not per class and pixel
    out *= scratch
    return out


def argmax_classes(scores: np.ndarray, best: np.ndarray, better: np.ndarray) -> np.ndarray:
    """Return the (H, W) uint8 index of the largest of (C, H, W) ``scores`` (first one on ties).

    Plane by plane with (H, W) buffers ``best`` (float32) and ``better`` (bool): about twice as
    fast as ``np.argmax(axis=0)``, which reduces across strided memory.
    """
    label = np.zeros(scores.shape[1:], np.uint8)
    np.copyto(best, scores[0])
    for c in range(1, scores.shape[0]):
        np.greater(scores[c], best, out=better)
        np.maximum(best, scores[c], out=best)
        np.copyto(label, np.uint8(c), where=better)
    return label


class FramePipeline:
    """Pre-processes, predicts, smooths and labels one frame at a time, reusing its buffers."""

    def __init__(self, segmenter: Segmenter, smoother: StreamingSmoother,
                 input_size: tuple[int, int] | str | None = None, smooth_width: int = SMOOTH_WIDTH) -> None:
        self.segmenter, self.smoother, self.smooth_width = segmenter, smoother, smooth_width
        self.input_size = self._resolve(segmenter, input_size)  # None: each frame's own size
        self.norm = segmenter.meta.normalization
        self._buffers: dict[str, np.ndarray] = {}
        self._checked: tuple[int, int] | None = None

    @staticmethod
    def _resolve(segmenter: Segmenter, input_size: tuple[int, int] | str | None) -> tuple[int, int] | None:
        """Return the (H, W) every frame runs at, or None for each frame's own size; OptionError if impossible."""
        if input_size is None:
            return segmenter.default_size
        if input_size == NATIVE:
            if segmenter.fixed_size is not None:
                fh, fw = segmenter.fixed_size
                raise OptionError(f"--input-size native: {segmenter.path} has a fixed {fh}x{fw} (HxW) input; "
                                  "it runs at that size only (drop --input-size)")
            return None
        if isinstance(input_size, str):
            raise OptionError(f"--input-size {input_size!r}: expected HxW or {NATIVE}")
        size = check_hw(input_size)
        try:
            segmenter.check_size(*size)
        except ModelError as e:
            raise OptionError(str(e)) from None
        return size

    @property
    def scale(self) -> str:
        """Return the scale frames run at, for the report: ``HxW`` or ``native``."""
        return NATIVE if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]}"

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty(shape, dtype)
        return buf

    def preprocess(self, frame_rgb: np.ndarray) -> np.ndarray:
        """Return the normalised (1, 3, H, W) model input of an RGB frame (a buffer reused by the next call)."""
        size = self.input_size or frame_rgb.shape[:2]
        if size != self._checked:
            self.segmenter.check_size(*size)
            self._checked = size
        return model_input(frame_rgb, size, self.norm, self._buffer("input", (1, 3, *size)))

    def to_frame_size(self, scores: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        """Return (C, H, W) ``scores`` bilinearly resized to the frame (as the models' own upsampling)."""
        if scores.shape[1:] == frame_hw:
            return scores
        out = self._buffer("frame_scores", (scores.shape[0], *frame_hw))
        for c in range(scores.shape[0]):
            cv2.resize(scores[c], (frame_hw[1], frame_hw[0]), dst=out[c], interpolation=cv2.INTER_LINEAR)
        return out

    def _smooth(self, scores: np.ndarray, frame_rgb: np.ndarray, gap: bool) -> np.ndarray:
        """Return smoothed probabilities on a grid at most ``smooth_width`` wide (then resized to the frame)."""
        c, h, w = scores.shape
        if w > self.smooth_width:
            h, w = max(1, round(h * self.smooth_width / w)), self.smooth_width
            small = self._buffer("small_scores", (c, h, w))
            for i in range(c):
                cv2.resize(scores[i], (w, h), dst=small[i], interpolation=cv2.INTER_AREA)
            scores = small
        if self.segmenter.outputs == "logits":
            scores = softmax(scores, self._buffer("probs", (c, h, w)), self._buffer("scratch", (h, w)))
        return self.smoother.update(frame_rgb, scores, gap=gap)

    def process(self, frame_rgb: np.ndarray, gap: bool = False) -> tuple[np.ndarray, dict[str, float]]:
        """Return the (H, W) uint8 class map of a frame and the ms of each stage (read/total excluded)."""
        try:
            return self._process(frame_rgb, gap)
        except MemoryError:
            h, w = self.input_size or frame_rgb.shape[:2]
            raise ModelError(f"{self.segmenter.path}: out of memory running at {h}x{w} (HxW) on a "
                             f"{frame_rgb.shape[0]}x{frame_rgb.shape[1]} frame; pass a smaller --input-size") from None

    def _process(self, frame_rgb: np.ndarray, gap: bool) -> tuple[np.ndarray, dict[str, float]]:
        t0 = time.perf_counter()
        batch = self.preprocess(frame_rgb)
        t1 = time.perf_counter()
        scores = self.segmenter.predict(batch)[0]
        t2 = time.perf_counter()
        if self.smoother.mode != "none":  # argmax of logits = argmax of softmax: skip it when not smoothing
            scores = self._smooth(scores, frame_rgb, gap)
        t3 = time.perf_counter()
        scores = self.to_frame_size(scores, frame_rgb.shape[:2])
        hw = scores.shape[1:]
        semantic = argmax_classes(scores, self._buffer("best", hw), self._buffer("better", hw, bool))
        t4 = time.perf_counter()
        ms = {"preprocess": t1 - t0, "inference": t2 - t1, "smoothing": t3 - t2, "postprocess": t4 - t3}
        return semantic, {k: 1e3 * v for k, v in ms.items()}

    def labels(self, frame_rgb: np.ndarray) -> np.ndarray:
        """Return the (H, W) uint8 class map of one frame."""
        return self.process(frame_rgb)[0]


def label_predictor(segmenter: Segmenter, input_size: tuple[int, int] | str | None = None
                    ) -> Callable[[np.ndarray], np.ndarray]:
    """Return ``predict(rgb) -> (H, W) uint8 class map`` exactly as ``vsda-infer --smooth none`` labels frames."""
    return FramePipeline(segmenter, StreamingSmoother("none"), input_size).labels
