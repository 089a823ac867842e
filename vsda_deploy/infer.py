"""The streaming pipeline of ``vsda-infer``: source -> pre-process -> model -> smoothing -> outputs.

``run_inference(InferOptions(source, model, ...))`` reads frames from any source of
``vsda_deploy.sources`` (or the videos of a dataset split: ``cityscapes-vps:ROOT``,
``cityscapes-seq:ROOT``), segments them one at a time and returns the report:

* pre-process: resize to the scale the model was trained for (``ModelMeta.input_size``, a
  checkpoint's ``eval_size``; ``input_size="native"``: each frame's own size; ``(H, W)``: that),
  then the model's normalisation (``vsda_deploy.pipeline``);
* inference: ``Segmenter.predict``;
* smoothing: softmax, then ``StreamingSmoother`` on the model's output grid, downscaled to at
  most ``smooth_width`` px wide (reset at every new video and at gaps in the frame index;
  skipped entirely with ``smooth="none"``, so the class map is then exactly the model's);
* post-process: scores bilinearly back to the frame's size, argmax, panoptic ids, sinks.

Latency per stage is kept in bounded-memory histograms. ``wait`` is the time spent waiting for the
source with nothing to do (a live camera's next frame, the pacing of ``realtime``); ``total`` is the
work of one frame, from reading it to its outputs written, without that wait. The first ``warmup``
frames are left out of latencies and FPS (not of the metrics). With ground truth the frames stream
through the same ``SplitScorer`` that ``vsda-train eval`` uses (scoring time counts in FPS, not in
latency). SIGINT / SIGTERM stop the loop after the current frame; outputs are then finished normally.

Every output path is checked before the first frame (``vsda_deploy.outputs``). An output that fails
while streaming stops the run: the others are finished, the failed one keeps what is valid, and the
report (when it can be written) lists what was lost under ``outputs`` and ``errors``.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.backends import ModelError, load_segmenter
from vsda_deploy.data.base import DatasetError
from vsda_deploy.datasets import GroundTruth, load_ground_truth, open_dataset, parse_dataset_spec
from vsda_deploy.evaluation import EvalResult, PredFrame, SplitScorer
from vsda_deploy.infer_options import InferOptions
from vsda_deploy.labels import LABEL_SPACES
from vsda_deploy.latency import LatencyHistogram
from vsda_deploy.live import live_line
from vsda_deploy.metrics import VideoPanopticQuality
from vsda_deploy.options import OptionError
from vsda_deploy.outputs import OutputError, check_file_output, write_json
from vsda_deploy.overlay_video import OverlayVideoWriter
from vsda_deploy.panoptic import PanopticTracker
from vsda_deploy.pipeline import (  # the maths is re-exported: tests import it from here
    FramePipeline,
    argmax_classes,  # noqa: F401
    softmax,  # noqa: F401
)
from vsda_deploy.sinks import JsonLinesWriter, LabelWriter, PanopticWriter, Sink, WindowSink
from vsda_deploy.smoothing import StreamingSmoother
from vsda_deploy.sources import DEFAULT_FPS, FrameSource, open_source

log = logging.getLogger(__name__)

STAGES = ("wait", "read", "preprocess", "inference", "smoothing", "postprocess", "total")
METRIC_KEYS = ("miou", "iou", "vpq", "vpq_things", "vpq_stuff", "vpq_k", "tc")
WAITING_S = 1.0  # the live line says how long no frame came once it is this long


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
    """The report JSON, the scores (with ground truth), why the stream stopped, and what failed."""

    report: dict[str, Any]
    scores: EvalResult | None = None
    stopped_by: str | None = None
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def error(self) -> str | None:
        """Return the first failure (a lost source, an output that could not be written), None if none."""
        return self.errors[0] if self.errors else None


class Stream:
    """One run of ``vsda-infer``: owns the source, model, smoother, sinks and statistics."""

    def __init__(self, options: InferOptions, on_frame: Callable[[FrameOutput], None] | None = None,
                 source: FrameSource | None = None, console: Console | None = None) -> None:
        self.options, self.on_frame, self.console = options, on_frame, console
        self.stop_reason: str | None = None
        self._stop = threading.Event()
        if options.report is not None:  # checked now, not after the whole stream
            check_file_output(Path(options.report), "--report")
        self.segmenter = load_segmenter(options.model, options.backend, options.device,
                                        provider=options.provider, precision=options.precision)
        self.space = LABEL_SPACES.get(self.segmenter.meta.label_space)
        self.source, self.gt, self._parse_name = self._open_source(source)
        try:
            self._check_label_space()
            smoother = StreamingSmoother(options.smooth, options.alpha)
            self.pipeline = FramePipeline(self.segmenter, smoother, options.input_size, options.smooth_width)
            self.sinks = self._open_sinks()
        except BaseException:
            self.source.close()
            raise
        self.tracker = PanopticTracker(self.space.things) if options.panoptic else None
        self.scorer = SplitScorer(label_space=self.space) if self.gt is not None else None
        meta = self.segmenter.meta
        self.window = WindowSink(meta.palette, classes=meta.classes, legend=options.legend) if options.show else None
        self.latency = {stage: LatencyHistogram() for stage in STAGES}
        self.warm_latency = {stage: LatencyHistogram() for stage in STAGES}  # used when the run is that short
        self.processed = 0
        self.failed: dict[str, tuple[Sink, str, str]] = {}  # option -> (sink, error, what was kept)
        self._start_at = self._warm_at = self._last_at = math.nan

    def _open_source(self, source: FrameSource | None) -> tuple[FrameSource, GroundTruth | None,
                                                                Callable[[str], vps.VpsFrameName] | None]:
        """Return the source, its ground truth and the strict frame-name parser (None: names are free)."""
        o = self.options
        dataset = None if source is not None else parse_dataset_spec(o.source)
        if dataset is not None:
            if o.gt:
                raise OptionError(f"--gt {o.gt}: SOURCE {o.source} already brings its ground truth; drop --gt")
            source, gt = open_dataset(o.source, o.split, o.realtime, self.space or "viper15")
            return source, gt, source.frame_name
        gt = load_ground_truth(o.gt, o.split, self.space or "viper15") if o.gt else None
        source = source or open_source(o.source, realtime=o.realtime, max_reconnects=o.max_reconnects)
        return source, gt, gt.frame_name if gt else None

    def _check_label_space(self) -> None:
        meta = self.segmenter.meta
        known = self.space is not None and meta.classes == self.space.classes
        if (self.gt is not None or self.options.panoptic) and not known:
            raise ModelError(f"{self.segmenter.path}: its {meta.num_classes} classes ({meta.label_space}) are not "
                             f"those of a label space that scoring and --panoptic know ({', '.join(LABEL_SPACES)})")

    def _labelled_ids(self) -> list[str] | None:
        """Return the Cityscapes-VPS image ids of the ground truth in its JSON's order (None: no such GT)."""
        if self.gt is None or self.gt.kind != "cityscapes-vps":
            return None
        return [g.image_id for g in self.gt.labelled.values()]

    def _open_sinks(self) -> dict[str, Sink]:
        """Return the outputs, each path checked (a probe written and removed); nothing is left on failure."""
        o, meta = self.options, self.segmenter.meta
        sinks: dict[str, Sink] = {}
        try:
            if o.save_video is not None:
                sinks["video"] = OverlayVideoWriter(o.save_video, meta.palette, meta.classes, o.legend)
            if o.save_labels is not None:
                sinks["labels"] = LabelWriter(o.save_labels)
                if o.panoptic:
                    sinks["panoptic"] = PanopticWriter(o.save_labels, self._labelled_ids())
            if o.save_jsonl is not None:
                sinks["jsonl"] = JsonLinesWriter(o.save_jsonl, meta.classes)
        except BaseException:
            for sink in sinks.values():
                sink.abort()
            raise
        self.outputs = {sink.option: sink for sink in sinks.values()}
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
        except DatasetError:
            return None

    def frames(self) -> Iterator[FrameOutput]:
        """Yield every processed frame until the source ends, ``max_frames``, or a stop request."""
        prev: tuple[int, vps.VpsFrameName | None] | None = None
        source_frames = iter(self.source)
        self._start_at = self._last_at = time.perf_counter()
        if self.options.warmup == 0:
            self._warm_at = self._start_at
        while not self._stop.is_set() and self.processed < (self.options.max_frames or math.inf):
            t0 = time.perf_counter()
            frame = next(source_frames, None)
            if frame is None:
                return
            elapsed_ms = 1e3 * (time.perf_counter() - t0)
            wait_ms = min(elapsed_ms, 1e3 * self.source.waited_s)
            t0 += wait_ms / 1e3  # total counts the work from here on
            name = self._frame_name(frame.name)
            gap = self._restart_if_new_video(prev, frame.index, name)
            prev = (frame.index, name)
            semantic, ms = self.pipeline.process(frame.image, gap)
            t_post = time.perf_counter()
            instance = self.tracker.update(semantic, frame.image) if self.tracker is not None else None
            out = FrameOutput(frame.index, frame.name, name, frame.image, semantic, instance,
                              {"wait": wait_ms, "read": elapsed_ms - wait_ms, **ms})
            self._write(out, self._slot(frame.index, frame.timestamp))
            argmax_ms = ms["postprocess"]
            self._close_timing(out.latency_ms, t0, t_post, argmax_ms)
            if "jsonl" in self.sinks:  # its own write time is added to the stats, not to the line
                self._write_jsonl(out, frame.timestamp)
                self._close_timing(out.latency_ms, t0, t_post, argmax_ms)
            self._count(out.latency_ms, time.perf_counter())
            if self.on_frame is not None:
                self.on_frame(out)
            yield out

    def _slot(self, index: int, timestamp: float) -> int:
        """Return the frame's time slot in the overlay video: its index in a file, its capture time when live."""
        if not self.source.live:
            return index
        return round(timestamp * (self.source.fps or DEFAULT_FPS))

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

    def _write(self, out: FrameOutput, slot: int) -> None:
        sinks = self.sinks
        if "video" in sinks:
            if sinks["video"].written == 0:
                sinks["video"].fps = self.source.fps or DEFAULT_FPS
            self._guarded(sinks["video"], lambda s: s.write(out.image, out.semantic, slot))
        if "labels" in sinks:
            self._guarded(sinks["labels"], lambda s: s.write(out.name, out.semantic))
        if "panoptic" in sinks:
            self._guarded(sinks["panoptic"], lambda s: s.write(out.name, out.semantic, out.instance))
        if self.window is not None:
            self.window.write(out.image, out.semantic, f"{self.fps():.1f} FPS")
            if self.window.stop_requested:
                self.request_stop("window closed (q / Esc)")

    def _guarded(self, sink: Sink, write: Callable[[Any], None]) -> None:
        """Run one sink's write; a failure keeps what the sink can, drops it and stops the stream."""
        try:
            write(sink)
        except OutputError as e:
            self.failed[sink.option] = (sink, str(e), sink.salvage())
            self.sinks = {k: v for k, v in self.sinks.items() if v is not sink}
            log.debug("%s", e)
            self.request_stop(f"{sink.option} failed")

    def _write_jsonl(self, out: FrameOutput, timestamp: float) -> None:
        video = out.frame_name.video if out.frame_name else None
        record = {"index": out.index, "name": out.name, "video": video, "timestamp": round(timestamp, 6),
                  "latency_ms": {k: round(out.latency_ms[k], 3) for k in STAGES}}
        self._guarded(self.sinks["jsonl"], lambda s: s.write(record, out.semantic))

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
        """Stream to the end (or a stop); return the report, also written to ``--report``.

        Sinks are finished, or removed when the run fails before its first frame. What failed on the way
        (the source, an output, the report file itself) is in ``InferResult.errors``.
        """
        try:
            with self._live_line():
                self._consume(self.frames())
        except BaseException:
            self._finish_sinks(failed=self.processed == 0)
            raise
        finally:
            self.source.close()
            self.segmenter.close()
        self._finish_sinks(failed=False)
        scores = self._scores()
        report = self.report(scores)
        errors = list(report["errors"])
        if self.options.report is not None:
            try:
                write_json(Path(self.options.report), report, "--report")
            except OutputError as e:  # the summary is still returned (and printed by the CLI)
                errors.append(str(e))
        return InferResult(report, scores, self.stop_reason, errors)

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
            except OutputError as e:  # close() kept what it could and says what
                self.failed[sink.option] = (sink, str(e), e.kept or "")
            except Exception as e:  # one broken sink must not keep the others from finishing
                log.error("could not finish an output: %s", e)
        self.sinks = {}

    def _scores(self) -> EvalResult | None:
        if self.scorer is None:
            return None
        notes = []
        if self.scorer.frames < len(self.gt.labelled):
            notes.append(f"{self.scorer.frames} of {len(self.gt.labelled)} labelled frames were streamed and scored")
        result = self.scorer.result(f"vsda-infer ({self.segmenter.backend})", notes)
        if self.gt.kind == "cityscapes-seq":  # no instance labels: VPQ is not measurable
            empty = VideoPanopticQuality(self.space.num_classes, self.space.things).result()
            result = dataclasses.replace(result, vpq=empty, notes=(*result.notes, "cityscapes-seq: VPQ not "
                                                                   "measured (no instance labels)"))
        return result

    def _outputs(self) -> dict[str, dict[str, Any]]:
        """Return the report's ``outputs``: per option, the path, what was written, and what a failure lost."""
        entries = {}
        for option, sink in self.outputs.items():
            _, error, kept = self.failed.get(option, (None, None, None))
            entries[option] = {"path": str(sink.path), "written": sink.written, "complete": error is None,
                               "error": error, "kept": kept or None}
        return entries

    def report(self, scores: EvalResult | None = None) -> dict[str, Any]:
        """Return the report JSON (the schema is in docs/deploy.md)."""
        counters = self.source.counters()
        metrics = None
        if scores is not None:
            data = scores.to_json()
            metrics = {k: data[k] for k in METRIC_KEYS}
        errors = [self.source.error] if self.source.error else []
        errors += [f"{error}{'; ' + kept if kept else ''}" for _, error, kept in self.failed.values()]
        return {
            "frames": {"read": counters["read"], "processed": self.processed, "dropped": counters["dropped"],
                       "corrupt": counters["corrupt"]},
            "fps": round(self.fps(), 2),
            "latency_ms": {stage: h.summary() for stage, h in self._timed()[0].items()},
            **self.segmenter.describe(),
            "input_size": self.pipeline.scale,
            "reconnects": counters["reconnects"],
            "metrics": metrics,
            "outputs": self._outputs(),
            "stopped_by": self.stop_reason,
            "errors": errors,
        }

    @contextmanager
    def _live_line(self) -> Iterator[None]:
        if not self.options.live:
            yield
            return
        with live_line(self.status_line, self.console or Console(stderr=True)):
            yield

    def status_line(self) -> str:
        """Return the one-line live status: frames, FPS, latency, drops, the source's state (and mIoU)."""
        c = self.source.counters()
        timed = self._timed()[0]
        total, wait = timed["total"], timed["wait"]
        p50 = f"{total.percentile(50):.1f} ms" if total.count else "warming up"
        line = f"{self.processed} frames · {self.fps():.1f} FPS · total p50 {p50}"
        if wait.count and self.source.live:
            line += f" · wait p50 {wait.percentile(50):.1f} ms"
        line += f" · dropped {c['dropped']}"
        if c["corrupt"] or c["reconnects"]:
            line += f" · corrupt {c['corrupt']} · reconnects {c['reconnects']}"
        if self.scorer is not None and self.scorer.frames:
            line += f" · mIoU {self.scorer.cm.miou():.1f}"
        idle = time.perf_counter() - self._last_at
        if self.source.state:
            line += f" · {self.source.state}"
        elif idle >= WAITING_S and not self._stop.is_set():
            line += f" · no frame for {idle:.0f} s"
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
                  source: FrameSource | None = None, console: Console | None = None) -> InferResult:
    """Run ``vsda-infer`` as described in the module docstring; return its report and scores.

    ``on_frame`` sees every processed frame; ``source`` replaces ``options.source`` with an
    open ``FrameSource`` (e.g. one with a custom capture); ``console`` shows the live line (stderr by
    default). Faults before the first frame (options, outputs, model, source, label space) raise with a
    message starting with the option or file at fault, and nothing is written: ``OptionError`` for a
    bad option, another ``VsdaError`` or an ``OSError`` for the rest.
    """
    stream = Stream(options, on_frame, source, console)
    with stop_on_signals(stream):
        return stream.run()
