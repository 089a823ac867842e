"""The streaming pipeline of ``vsda-infer``: source -> pre-process -> model -> smoothing -> outputs.

``run_inference(InferOptions(source, model, ...))`` reads frames from any source of
``vsda_deploy.sources`` (or the videos of a dataset split: ``cityscapes-vps:ROOT``,
``cityscapes-seq:ROOT``), segments them one at a time and returns the report:

* pre-process: resize to the model's input size (a static input, or ``input_size``; a
  dynamic model runs at the frame's size), ``(x / 255 - mean) / std`` from the model metadata;
* inference: ``Segmenter.predict``;
* smoothing: softmax, then ``StreamingSmoother`` on the model's output grid, downscaled to at
  most ``smooth_width`` px wide (reset at every new video and at gaps in the frame index;
  skipped entirely with ``smooth="none"``, so the class map is then exactly the model's);
* post-process: scores bilinearly back to the frame's size, argmax, panoptic ids, sinks.

Latency per stage is kept in bounded-memory histograms; ``total`` is the wall time of one frame
from asking the source for it to its outputs written. The first ``warmup`` frames are left out
of latencies and FPS (not of the metrics). With ground truth the frames stream through the
same ``SplitScorer`` that ``vsda-train eval`` uses (scoring time counts in FPS, not in latency).
SIGINT / SIGTERM stop the loop after the current frame; outputs are then finished normally.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.backends import ModelError, Segmenter, load_segmenter
from vsda_deploy.evaluation import EvalResult, GtFrame, PredFrame, SplitScorer, list_gt, render_result
from vsda_deploy.labels import CITYSCAPES_LUT, VIPER15
from vsda_deploy.metrics import VideoPanopticQuality
from vsda_deploy.panoptic import PanopticTracker
from vsda_deploy.sinks import (
    JsonLinesWriter,
    LabelWriter,
    OverlayVideoWriter,
    PanopticWriter,
    Sink,
    WindowSink,
    check_output_file,
)
from vsda_deploy.smoothing import MODES, StreamingSmoother
from vsda_deploy.sources import DEFAULT_FPS, Frame, FrameSource, ImageSequenceSource, SourceError, open_source

log = logging.getLogger(__name__)

STAGES = ("read", "preprocess", "inference", "smoothing", "postprocess", "total")
METRIC_KEYS = ("miou", "iou", "vpq", "vpq_things", "vpq_stuff", "vpq_k", "tc")
DATASET_KINDS = ("cityscapes-vps", "cityscapes-seq")
LIVE_REFRESH_S = 0.25
# Smoothing runs on class probabilities at most this wide, resized to the frame afterwards. The
# models predict at 1/8 of their input and upsample inside the graph, so a finer grid carries no
# more information, only cost: at 256x512 it halves the smoothing stage. (See FramePipeline.)
SMOOTH_WIDTH = 256


@dataclass(frozen=True)
class InferOptions:
    """Everything ``run_inference`` needs; the CLI options map one to one."""

    source: str
    model: str | Path
    backend: str = "auto"
    device: str = "cpu"
    provider: str = "auto"  # ONNX Runtime execution provider: auto | cpu | cuda | tensorrt
    precision: str = "fp32"  # torch backend only: fp32 | fp16
    input_size: tuple[int, int] | None = None  # (H, W)
    smooth: str = "flow"
    alpha: float = 0.6
    smooth_width: int = SMOOTH_WIDTH  # smoothing grid at most this wide (px)
    gt: str | None = None
    split: str = "val"
    save_video: Path | None = None
    save_labels: Path | None = None
    panoptic: bool = False
    save_jsonl: Path | None = None
    report: Path | None = None
    show: bool = False
    max_frames: int | None = None
    realtime: bool = False
    warmup: int = 10
    live: bool = False  # a Rich status line on stderr (the CLI sets it when stderr is a terminal)

    def __post_init__(self) -> None:
        if self.smooth not in MODES:
            raise ValueError(f"--smooth {self.smooth!r}: choose from {', '.join(MODES)}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {self.max_frames}")
        if not 0 <= self.alpha < 1:
            raise ValueError(f"--alpha must be in [0, 1), got {self.alpha}")
        if self.smooth_width < 16:
            raise ValueError(f"--smooth-width must be >= 16, got {self.smooth_width}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        if self.input_size is not None and min(self.input_size) < 1:
            raise ValueError(f"--input-size must be positive, got {self.input_size}")
        if self.panoptic and self.save_labels is None:
            raise ValueError("--panoptic writes pan_pred/ + pred.json into the --save-labels folder; "
                             "give --save-labels DIR")


def parse_size(text: str) -> tuple[int, int]:
    """Return ``(H, W)`` of ``HxW`` (e.g. ``512x1024``)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if m is None or min(int(m[1]), int(m[2])) < 1:
        raise ValueError(f"--input-size {text!r}: expected HxW, e.g. 512x1024")
    return int(m[1]), int(m[2])


# --- latency --------------------------------------------------------------------------------

class LatencyHistogram:
    """Percentiles of a stream of latencies in bounded memory: log-spaced bins 1% wide (1 µs .. 1000 s)."""

    LOW_MS, HIGH_MS, GROWTH = 1e-3, 1e6, 1.01

    def __init__(self) -> None:
        self._bins = math.ceil(math.log(self.HIGH_MS / self.LOW_MS) / math.log(self.GROWTH))
        self.counts = np.zeros(self._bins + 2, np.int64)  # [under, bins..., over]
        self.count = 0
        self.low, self.high = math.inf, 0.0

    def add(self, ms: float) -> None:
        """Count one latency in milliseconds."""
        if ms <= self.LOW_MS:
            i = 0
        else:
            i = min(self._bins + 1, 1 + int(math.log(ms / self.LOW_MS) / math.log(self.GROWTH)))
        self.counts[i] += 1
        self.count += 1
        self.low, self.high = min(self.low, ms), max(self.high, ms)

    def percentile(self, q: float) -> float:
        """Return the nearest-rank ``q``-th percentile (within 1%); NaN when empty."""
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q / 100.0 * self.count))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        centre = self.LOW_MS * self.GROWTH ** (i - 0.5)  # geometric centre of bin i
        return min(max(centre, self.low), self.high)

    def summary(self) -> dict[str, float | None]:
        """Return ``{"p50", "p95", "p99"}`` in ms (3 decimals), None when empty."""
        return {f"p{q}": (round(self.percentile(q), 3) if self.count else None) for q in (50, 95, 99)}


# --- ground truth and dataset sources ------------------------------------------------------

_SEQ_NAME = re.compile(r"^(?P<city>[A-Za-z]+(?:_[A-Za-z]+)*)_(?P<seq>\d{6})_(?P<frame>\d{6})")


def parse_seq_name(name: str) -> vps.VpsFrameName:
    """Return a Cityscapes-Seq frame name (``city_seq_frame_*``) as a frame name; video ``city_seq``."""
    m = _SEQ_NAME.match(Path(name).name)
    if m is None:
        raise ValueError(f"{name}: not a Cityscapes frame name ({{city}}_{{seq:06d}}_{{frame:06d}}_*)")
    return vps.VpsFrameName(stem=m[0], video=f"{m['city']}_{m['seq']}", index=int(m["frame"]),
                            city=m["city"], seq=int(m["seq"]), frame=int(m["frame"]))


@dataclass(frozen=True)
class SeqGtFrame:
    """A labelled Cityscapes-Seq frame (``gtFine`` labelIds): semantic only, no instances."""

    name: vps.VpsFrameName
    image_id: str
    path: Path

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(semantic, instance)`` in the VIPER15 space; instance is all 0 (not labelled)."""
        raw = cv2.imread(str(self.path), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.ndim != 2:
            raise OSError(f"{self.path}: cannot read as a single-channel labelIds PNG")
        semantic = CITYSCAPES_LUT[VIPER15.name][raw.astype(np.uint8)]
        return semantic, np.zeros(raw.shape, np.int32)


@dataclass(frozen=True)
class GroundTruth:
    """The labelled frames of a split, by frame stem, and how to name a streamed frame."""

    kind: str  # cityscapes-vps | cityscapes-seq
    labelled: dict[str, GtFrame | SeqGtFrame]
    videos: frozenset[str]

    def frame_name(self, name: str) -> vps.VpsFrameName:
        """Return the parsed name of a streamed frame; ValueError names the frame."""
        return vps.parse_frame_name(name) if self.kind == "cityscapes-vps" else parse_seq_name(name)


def parse_dataset_spec(spec: str) -> tuple[str, Path] | None:
    """Return ``(kind, root)`` of ``cityscapes-vps:ROOT`` / ``cityscapes-seq:ROOT``; None for other specs."""
    kind, sep, root = spec.partition(":")
    if not sep or kind not in DATASET_KINDS:
        return None
    if not root:
        raise SourceError(f"{spec}: give the dataset root, e.g. {kind}:data/synth/target")
    return kind, Path(root).expanduser()


def vps_ground_truth(root: Path, split: str) -> GroundTruth:
    """Return the Cityscapes-VPS labels of a split (``list_gt``: official JSON or ``panoptic_inst``)."""
    gt = list_gt(root, split)
    return GroundTruth("cityscapes-vps", {g.name.stem: g for v in gt.values() for g in v}, frozenset(gt))


def seq_ground_truth(root: Path, split: str) -> GroundTruth:
    """Return the Cityscapes-Seq labels of a split: ``gtFine/{split}/{city}/*_gtFine_labelIds.png``."""
    folder = root / "gtFine" / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: Cityscapes gtFine folder not found")
    labelled = {}
    for path in sorted(folder.glob("*/*_gtFine_labelIds.png")):
        name = parse_seq_name(path.name)
        labelled[name.stem] = SeqGtFrame(name, name.stem, path)
    if not labelled:
        raise FileNotFoundError(f"{folder}: no *_gtFine_labelIds.png labels")
    return GroundTruth("cityscapes-seq", labelled, frozenset(g.name.video for g in labelled.values()))


def load_ground_truth(spec: str, split: str) -> GroundTruth:
    """Return the ground truth of ``--gt cityscapes-vps:ROOT`` or ``cityscapes-seq:ROOT``."""
    parsed = parse_dataset_spec(spec)
    if parsed is None:
        raise ValueError(f"--gt {spec}: unknown ground-truth spec; use cityscapes-vps:ROOT or cityscapes-seq:ROOT")
    kind, root = parsed
    return vps_ground_truth(root, split) if kind == "cityscapes-vps" else seq_ground_truth(root, split)


def seq_videos(root: Path, split: str) -> dict[str, list[Path]]:
    """Return ``{city_seq: frames}`` of ``leftImg8bit_sequence/{split}``, sorted by frame number."""
    folder = root / "leftImg8bit_sequence" / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: Cityscapes-Seq frame folder not found")
    videos: dict[str, list[tuple[int, Path]]] = {}
    for path in folder.glob("*/*_leftImg8bit.png"):
        name = parse_seq_name(path.name)
        videos.setdefault(name.video, []).append((name.index, path))
    if not videos:
        raise FileNotFoundError(f"{folder}: no *_leftImg8bit.png frames")
    return {v: [p for _, p in sorted(frames)] for v, frames in sorted(videos.items())}


class VideoListSource(FrameSource):
    """The videos of a dataset split one after another, each read like an image folder; counters add up."""

    def __init__(self, spec: str, videos: dict[str, list[Path]], *, realtime: bool = False,
                 fps: float | None = None) -> None:
        super().__init__(spec, fps or DEFAULT_FPS)
        self.videos = videos
        self._pending = iter(videos.items())
        self._source: ImageSequenceSource | None = None
        self._realtime = realtime
        self._done = {"read": 0, "dropped": 0, "corrupt": 0}

    def __next__(self) -> Frame:
        while True:
            if self._source is None:
                _, paths = next(self._pending)  # StopIteration: every video done
                self._source = ImageSequenceSource(self.spec, paths, realtime=self._realtime, fps=self.fps)
            try:
                return next(self._source)
            except StopIteration:
                self.error = self.error or self._source.error
                for key in self._done:
                    self._done[key] += getattr(self._source, key)
                self._source = None
            finally:
                self._sync()

    def _sync(self) -> None:
        live = self._source
        self.read, self.dropped, self.corrupt = (self._done[k] + (getattr(live, k) if live else 0)
                                                 for k in ("read", "dropped", "corrupt"))

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
        self._pending = iter(())


def open_dataset(spec: str, split: str, realtime: bool) -> tuple[VideoListSource, GroundTruth | None]:
    """Return the frames of a dataset split (every frame: ``img_all``) and its labels (None if unlabelled)."""
    kind, root = parse_dataset_spec(spec)
    if not root.is_dir():
        raise SourceError(f"{spec}: dataset root {root} not found")
    try:
        if kind == "cityscapes-vps":
            folder = "img_all" if (root / split / "img_all").is_dir() else "img"
            videos = vps.list_frames(root, split, folder)
        else:
            videos = seq_videos(root, split)
    except (FileNotFoundError, ValueError) as e:
        raise SourceError(f"{spec}: {e}") from None
    try:
        gt = vps_ground_truth(root, split) if kind == "cityscapes-vps" else seq_ground_truth(root, split)
    except FileNotFoundError as e:
        log.warning("%s: no labels for split %r (%s); running without metrics", spec, split, e)
        return VideoListSource(spec, videos, realtime=realtime), None
    streamed = {gt.frame_name(p.name).stem for paths in videos.values() for p in paths}
    missing = sorted(set(gt.labelled) - streamed)
    if missing:
        raise SourceError(f"{spec}: labelled frame {missing[0]} has no frame in split {split!r} "
                          f"({len(missing)} missing)")
    return VideoListSource(spec, videos, realtime=realtime), gt


# --- one frame through the model -----------------------------------------------------------

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


# --- the stream -----------------------------------------------------------------------------

@dataclass
class FrameOutput:
    """What one frame produced: the frame, its video, class map, instance ids and stage latencies."""

    index: int
    name: str
    frame_name: vps.VpsFrameName | None  # parsed Cityscapes name (video, frame index), when it has one
    image: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray | None
    latency_ms: dict[str, float]


@dataclass
class InferResult:
    """The report JSON, the scores (with ground truth), why the stream stopped, and a source error."""

    report: dict[str, Any]
    scores: EvalResult | None = None
    stopped_by: str | None = None
    error: str | None = None


class Stream:
    """One run of ``vsda-infer``: owns the source, model, smoother, sinks and statistics."""

    def __init__(self, options: InferOptions, on_frame: Callable[[FrameOutput], None] | None = None,
                 source: FrameSource | None = None) -> None:
        self.options, self.on_frame = options, on_frame
        self.stop_reason: str | None = None
        self._stop = threading.Event()
        self.segmenter = load_segmenter(options.model, options.backend, options.device,
                                        provider=options.provider, precision=options.precision)
        self.source, self.gt, self._parse_name = self._open_source(source)
        self._check_label_space()
        smoother = StreamingSmoother(options.smooth, options.alpha)
        self.pipeline = FramePipeline(self.segmenter, smoother, options.input_size, options.smooth_width)
        self.tracker = PanopticTracker(VIPER15.things) if options.panoptic else None
        self.scorer = SplitScorer() if self.gt is not None else None
        self.sinks = self._open_sinks()
        self.window = WindowSink(self.segmenter.meta.palette) if options.show else None
        self.latency = {stage: LatencyHistogram() for stage in STAGES}
        self.warm_latency = {stage: LatencyHistogram() for stage in STAGES}  # used when the run is that short
        self.processed = 0
        self._start_at = self._warm_at = self._last_at = math.nan

    def _open_source(self, source: FrameSource | None) -> tuple[FrameSource, GroundTruth | None,
                                                                Callable[[str], vps.VpsFrameName] | None]:
        """Return the source, its ground truth and the strict frame-name parser (None: names are free)."""
        o = self.options
        dataset = None if source is not None else parse_dataset_spec(o.source)
        if dataset is not None:
            if o.gt:
                raise ValueError(f"--gt {o.gt}: SOURCE {o.source} already brings its ground truth; drop --gt")
            source, gt = open_dataset(o.source, o.split, o.realtime)
            return source, gt, vps.parse_frame_name if dataset[0] == "cityscapes-vps" else parse_seq_name
        gt = load_ground_truth(o.gt, o.split) if o.gt else None
        source = source or open_source(o.source, realtime=o.realtime)
        return source, gt, gt.frame_name if gt else None

    def _check_label_space(self) -> None:
        meta = self.segmenter.meta
        if (self.gt is not None or self.options.panoptic) and meta.classes != VIPER15.classes:
            self.source.close()
            raise ModelError(f"{self.segmenter.path}: its {meta.num_classes} classes ({meta.label_space}) are not "
                             "the VIPER15 space that ground-truth scoring and --panoptic use")

    def _open_sinks(self) -> dict[str, Sink]:
        o, meta = self.options, self.segmenter.meta
        sinks: dict[str, Sink] = {}
        try:
            if o.report is not None:  # checked now, not after the whole stream
                check_output_file(Path(o.report), "--report")
            if o.save_video is not None:
                sinks["video"] = OverlayVideoWriter(o.save_video, self.source.fps or DEFAULT_FPS, meta.palette)
            if o.save_labels is not None:
                sinks["labels"] = LabelWriter(o.save_labels)
                if o.panoptic:
                    sinks["panoptic"] = PanopticWriter(o.save_labels)
            if o.save_jsonl is not None:
                sinks["jsonl"] = JsonLinesWriter(o.save_jsonl, meta.classes)
        except (ValueError, OSError):
            self.source.close()
            raise
        return sinks

    def request_stop(self, reason: str) -> None:
        """Stop after the current frame (safe from a signal handler)."""
        if self._stop.is_set():
            return
        self.stop_reason = reason
        self._stop.set()
        if self.source.live:  # a live read can block on a stalled stream: closing it wakes the loop
            threading.Thread(target=self.source.close, daemon=True).start()

    def _frame_name(self, name: str) -> vps.VpsFrameName | None:
        if self._parse_name is not None:
            return self._parse_name(name)
        try:  # frames named like Cityscapes-VPS: smoothing and ids restart at each video
            return vps.parse_frame_name(name)
        except ValueError:
            return None

    def frames(self, live: Callable[[], None] = lambda: None) -> Iterator[FrameOutput]:
        """Yield every processed frame until the source ends, ``max_frames``, or a stop request."""
        prev: tuple[int, vps.VpsFrameName | None] | None = None
        source_frames = iter(self.source)
        self._start_at = time.perf_counter()
        if self.options.warmup == 0:
            self._warm_at = self._start_at
        while not self._stop.is_set() and self.processed < (self.options.max_frames or math.inf):
            t0 = time.perf_counter()
            frame = next(source_frames, None)
            if frame is None:
                return
            read_ms = 1e3 * (time.perf_counter() - t0)
            name = self._frame_name(frame.name)
            gap = self._restart_if_new_video(prev, frame.index, name)
            prev = (frame.index, name)
            semantic, ms = self.pipeline.process(frame.image, gap)
            t_post = time.perf_counter()
            instance = self.tracker.update(semantic, frame.image) if self.tracker is not None else None
            out = FrameOutput(frame.index, frame.name, name, frame.image, semantic, instance, {"read": read_ms, **ms})
            self._write(out)
            argmax_ms = ms["postprocess"]
            self._close_timing(out.latency_ms, t0, t_post, argmax_ms)
            if "jsonl" in self.sinks:  # its own write time is added to the stats, not to the line
                self._write_jsonl(out, frame.timestamp)
                self._close_timing(out.latency_ms, t0, t_post, argmax_ms)
            self._count(out.latency_ms, time.perf_counter())
            live()
            if self.on_frame is not None:
                self.on_frame(out)
            yield out

    def _restart_if_new_video(self, prev: tuple[int, vps.VpsFrameName | None] | None, index: int,
                              name: vps.VpsFrameName | None) -> bool:
        """Reset the smoother and panoptic ids at a new video; return whether frames were skipped."""
        if prev is not None and name is not None and prev[1] is not None and name.video != prev[1].video:
            prev = None
        if prev is None:
            self.pipeline.smoother.reset()
            if self.tracker is not None:
                self.tracker.reset()
            return False
        return index != prev[0] + 1 or (name is not None and prev[1] is not None and name.index != prev[1].index + 1)

    @staticmethod
    def _close_timing(ms: dict[str, float], t0: float, t_post: float, argmax_ms: float) -> None:
        """Set ``postprocess`` (resize + argmax, then ids and outputs until now) and ``total`` (since t0)."""
        now = time.perf_counter()
        ms["postprocess"] = argmax_ms + 1e3 * (now - t_post)
        ms["total"] = 1e3 * (now - t0)

    def _write(self, out: FrameOutput) -> None:
        sinks = self.sinks
        if "video" in sinks:
            sinks["video"].write(out.image, out.semantic)
        if "labels" in sinks:
            sinks["labels"].write(out.name, out.semantic)
        if "panoptic" in sinks:
            sinks["panoptic"].write(out.name, out.semantic, out.instance)
        if self.window is not None:
            self.window.write(out.image, out.semantic, f"{self.fps():.1f} FPS")
            if self.window.stop_requested:
                self.request_stop("window closed (q / Esc)")

    def _write_jsonl(self, out: FrameOutput, timestamp: float) -> None:
        video = out.frame_name.video if out.frame_name else None
        record = {"index": out.index, "name": out.name, "video": video, "timestamp": round(timestamp, 6),
                  "latency_ms": {k: round(out.latency_ms[k], 3) for k in STAGES}}
        self.sinks["jsonl"].write(record, out.semantic)

    def _count(self, ms: dict[str, float], now: float) -> None:
        self.processed += 1
        warm = self.processed <= self.options.warmup
        for stage in STAGES:
            (self.warm_latency if warm else self.latency)[stage].add(ms[stage])
        if warm:
            self._warm_at = now
        self._last_at = now

    def _timed(self) -> tuple[dict[str, LatencyHistogram], int, float]:
        """Return the latencies, frame count and seconds FPS is measured over: after warm-up, else all."""
        timed = self.processed - min(self.processed, self.options.warmup)
        if timed:
            return self.latency, timed, self._last_at - self._warm_at
        return self.warm_latency, self.processed, self._last_at - self._start_at

    def fps(self) -> float:
        """Return frames per second after warm-up (over every frame of a run shorter than that)."""
        _, frames, seconds = self._timed()
        return frames / seconds if frames and seconds > 0 else 0.0

    def run(self) -> InferResult:
        """Stream to the end (or a stop); return the report. Sinks are finished, or removed on early failure."""
        try:
            with self._live_line() as live:
                self._consume(self.frames(live))
        except BaseException:
            self._finish_sinks(failed=self.processed == 0)
            raise
        finally:
            self.source.close()
            self.segmenter.close()
        self._finish_sinks(failed=False)
        scores = self._scores()
        report = self.report(scores)
        if self.options.report is not None:
            vps.dump_json(self.options.report, report)
        return InferResult(report, scores, self.stop_reason, self.source.error)

    def _consume(self, outputs: Iterator[FrameOutput]) -> None:
        if self.scorer is None:
            collections.deque(outputs, maxlen=0)
            return
        for video, group in itertools.groupby(outputs, key=lambda out: out.frame_name.video):
            preds = (PredFrame(o.frame_name, o.semantic, o.image, o.name) for o in group)
            if video in self.gt.videos:
                self.scorer.score_semantic_video(preds, self.gt.labelled)
            else:  # a video without labels: streamed, not scored (as vsda-train eval)
                collections.deque(preds, maxlen=0)

    def _finish_sinks(self, failed: bool) -> None:
        for sink in [*self.sinks.values(), *([self.window] if self.window else [])]:
            try:
                sink.abort() if failed else sink.close()
            except Exception as e:  # one broken sink must not keep the others from finishing
                log.error("could not finish an output: %s", e)

    def _scores(self) -> EvalResult | None:
        if self.scorer is None:
            return None
        notes = []
        if self.scorer.frames < len(self.gt.labelled):
            notes.append(f"{self.scorer.frames} of {len(self.gt.labelled)} labelled frames were streamed and scored")
        result = self.scorer.result(f"vsda-infer ({self.segmenter.backend})", notes)
        if self.gt.kind == "cityscapes-seq":  # no instance labels: VPQ is not measurable
            empty = VideoPanopticQuality(VIPER15.num_classes, VIPER15.things).result()
            result = dataclasses.replace(result, vpq=empty, notes=(*result.notes, "cityscapes-seq: VPQ not "
                                                                   "measured (no instance labels)"))
        return result

    def report(self, scores: EvalResult | None = None) -> dict[str, Any]:
        """Return the report JSON (see the deploy issue for its schema)."""
        counters = self.source.counters()
        metrics = None
        if scores is not None:
            data = scores.to_json()
            metrics = {k: data[k] for k in METRIC_KEYS}
        return {
            "frames": {"read": counters["read"], "processed": self.processed, "dropped": counters["dropped"],
                       "corrupt": counters["corrupt"]},
            "fps": round(self.fps(), 2),
            "latency_ms": {stage: h.summary() for stage, h in self._timed()[0].items()},
            **self.segmenter.describe(),
            "reconnects": counters["reconnects"],
            "metrics": metrics,
        }

    @contextmanager
    def _live_line(self) -> Iterator[Callable[[], None]]:
        if not self.options.live:
            yield lambda: None
            return
        last = [0.0]
        with Live(Text(""), console=Console(stderr=True), refresh_per_second=4, transient=True) as live:
            def update() -> None:
                now = time.monotonic()
                if now - last[0] >= LIVE_REFRESH_S:
                    last[0] = now
                    live.update(Text(self.status_line()))
            yield update

    def status_line(self) -> str:
        """Return the one-line live status: frames, FPS, latency, drops (and mIoU with ground truth)."""
        c = self.source.counters()
        total = self._timed()[0]["total"]
        p50 = f"{total.percentile(50):.1f} ms" if total.count else "warming up"
        line = f"{self.processed} frames · {self.fps():.1f} FPS · total p50 {p50} · dropped {c['dropped']}"
        if c["corrupt"] or c["reconnects"]:
            line += f" · corrupt {c['corrupt']} · reconnects {c['reconnects']}"
        if self.scorer is not None and self.scorer.frames:
            line += f" · mIoU {self.scorer.cm.miou():.1f}"
        return line


@contextmanager
def stop_on_signals(stream: Stream) -> Iterator[None]:
    """Within the block, SIGINT / SIGTERM stop ``stream`` cleanly; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if stream.stop_reason is not None:
            raise KeyboardInterrupt
        stream.request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_inference(options: InferOptions, on_frame: Callable[[FrameOutput], None] | None = None,
                  source: FrameSource | None = None) -> InferResult:
    """Run ``vsda-infer`` as described in the module docstring; return its report and scores.

    ``on_frame`` sees every processed frame; ``source`` replaces ``options.source`` with an
    open ``FrameSource`` (e.g. one with a custom capture). Faults before the first frame
    (model, source, label space, outputs) raise with a message starting with the file or option
    at fault, and nothing is written.
    """
    stream = Stream(options, on_frame, source)
    with stop_on_signals(stream):
        return stream.run()


# --- the final report -----------------------------------------------------------------------

def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_report(result: InferResult) -> Group:
    """Return a Rich renderable: latency per stage, frame counts, then the scores (with ground truth)."""
    r = result.report
    frames = r["frames"]
    table = Table(title="latency per frame", caption=f"{r['backend']} · {r['provider']} · {r['precision']} · "
                                                     f"{r['device']}")
    table.add_column("stage")
    for q in ("p50", "p95", "p99"):
        table.add_column(f"{q} ms", justify="right")
    for stage, values in r["latency_ms"].items():
        table.add_row(stage, *(_ms(values[q]) for q in ("p50", "p95", "p99")), style="bold" if stage == "total" else "")
    parts: list[Any] = [table, f"{frames['processed']} frames processed at {r['fps']:.1f} FPS",
                        f"read {frames['read']} · dropped {frames['dropped']} · corrupt {frames['corrupt']} · "
                        f"reconnects {r['reconnects']}"]
    if result.stopped_by:
        parts.append(f"stopped by {result.stopped_by}")
    if result.scores is not None:
        parts.append(render_result(result.scores))
    return Group(*parts)
