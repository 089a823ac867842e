"""One frame through the model: normalise, predict, smooth, resize back and label (``FramePipeline``).

The maths (``normalise``, ``softmax``, ``argmax_classes``) works in place on buffers that the
pipeline keeps from frame to frame.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from vsda_deploy.backends import Segmenter
from vsda_deploy.smoothing import StreamingSmoother

# Smoothing runs on class probabilities at most this wide, resized to the frame afterwards. The
# models predict at 1/8 of their input and upsample inside the graph, so a finer grid carries no
# more information, only cost: at 256x512 it halves the smoothing stage. (See FramePipeline.)
SMOOTH_WIDTH = 256


def normalise(image: np.ndarray, mean: np.ndarray, std: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Return ``out`` (1, 3, H, W) float32 = ``(image / 255 - mean) / std`` per RGB channel.

    The operations and their order are those of ``vsda_train.transforms.normalize``, so the
    runtime feeds a model bit-identical inputs to training-side evaluation.
    """
    for c in range(3):
        plane = out[0, c]
        np.divide(image[..., c], np.float32(255.0), out=plane, dtype=np.float32)
        np.subtract(plane, mean[c], out=plane)
        np.divide(plane, std[c], out=plane)
    return out


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
                 input_size: tuple[int, int] | None = None, smooth_width: int = SMOOTH_WIDTH) -> None:
        meta = segmenter.meta
        self.segmenter, self.smoother, self.smooth_width = segmenter, smoother, smooth_width
        self.input_size = input_size or segmenter.fixed_size  # None: each frame's own size
        self.mean = np.asarray(meta.mean, np.float32)
        self.std = np.asarray(meta.std, np.float32)
        self._buffers: dict[str, np.ndarray] = {}
        self._checked: tuple[int, int] | None = None

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty(shape, dtype)
        return buf

    def preprocess(self, frame_rgb: np.ndarray) -> np.ndarray:
        """Return the normalised (1, 3, H, W) model input of an RGB frame."""
        size = self.input_size or frame_rgb.shape[:2]
        if size != self._checked:
            self.segmenter.check_size(*size)
            self._checked = size
        if size != frame_rgb.shape[:2]:
            frame_rgb = cv2.resize(frame_rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return normalise(frame_rgb, self.mean, self.std, self._buffer("input", (1, 3, *size)))

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
