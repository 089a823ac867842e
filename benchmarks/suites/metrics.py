"""The ``metrics`` suite: how long scoring the val split takes (mIoU, VPQ, TC, semantic -> panoptic).

The ground truth of ``--data``'s val split is read once; it is then scored against itself (a
perfect prediction: every metric must be 100, checked) and against a plausible wrong copy
(shifted, blotched, instance ids switched: ``perturb``). Each row is
the median of ``--runs`` repeats, so the times are the metric code alone.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.suite import Column, Row, SuiteOptions, SuiteResult, classify, dataset_root, new_result
from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.evaluation import list_gt
from vsda_deploy.labels import VIPER15
from vsda_deploy.metrics import ConfusionMatrix, TemporalConsistency, VideoPanopticQuality
from vsda_deploy.panoptic import PanopticTracker

COLUMNS = [Column("s_p50", "seconds p50", "{:.3f}"), Column("ms_per_frame", "ms / frame", "{:.2f}"),
           Column("value", "score", "{:.2f}")]


Frame = tuple[np.ndarray, np.ndarray]  # (semantic, instance)


def perturb(video: list[Frame], rng: np.random.Generator) -> list[Frame]:
    """Return a plausible wrong prediction of a video: shifted, blotched, ids switched."""
    out = []
    for t, (sem, inst) in enumerate(video):
        sem, inst = np.roll(sem, 2, axis=1), np.roll(inst, 2, axis=1) + 100 * (inst > 0)
        h, w = sem.shape
        for _ in range(6):
            y, x = rng.integers(0, h - h // 8), rng.integers(0, w - w // 8)
            sem[y:y + h // 8, x:x + w // 8] = rng.integers(0, VIPER15.num_classes)
        if t % 2:
            inst = np.where(inst > 0, inst + 1, 0)  # a different id every other frame
        out.append((sem.astype(np.uint8), inst.astype(np.int32)))
    return out


def score_miou(gt: list[list[Frame]], pred: list[list[Frame]]) -> float:
    """Return the mIoU of ``pred`` against ``gt`` (one confusion matrix)."""
    cm = ConfusionMatrix(VIPER15.num_classes)
    for gv, pv in zip(gt, pred):
        for (gs, _), (ps, _) in zip(gv, pv):
            cm.update(ps, gs)
    return cm.miou()


def score_vpq(gt: list[list[Frame]], pred: list[list[Frame]]) -> float:
    """Return the VPQ (mean over k = 0, 5, 10, 15) of ``pred`` against ``gt``."""
    vpq = VideoPanopticQuality()
    for gv, pv in zip(gt, pred):
        vpq.reset()
        for (gs, gi), (ps, pi) in zip(gv, pv):
            vpq.update(gs, gi, ps, pi)
    return vpq.result().vpq()


def link_instances(gt: list[list[Frame]], rgb: list[list[np.ndarray]]) -> float:
    """Return the VPQ of the GT semantic turned panoptic by ``PanopticTracker`` (DIS flow)."""
    tracker = PanopticTracker()
    pred = []
    for gv, rv in zip(gt, rgb):
        tracker.reset()
        pred.append([(s, tracker.update(s, frame_rgb=r)) for (s, _), r in zip(gv, rv)])
    return score_vpq(gt, pred)


def score_tc(pred: list[list[tuple[np.ndarray, np.ndarray]]], rgb: list[list[np.ndarray]]) -> float:
    """Return the TC (DIS flow between frames) of the semantic maps of ``pred``."""
    tc = TemporalConsistency(VIPER15.num_classes)
    for video, frames in zip(pred, rgb, strict=True):
        tc.reset()
        for (sem, _), frame in zip(video, frames, strict=True):
            tc.update(sem, frame_rgb=frame)
    return tc.value()


def timed(fn: Callable[[], float], runs: int) -> tuple[list[float], float]:
    """Return ``(seconds of each of runs calls, the value of the last)``."""
    times, value = [], float("nan")
    for _ in range(runs):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return times, value


def run(opts: SuiteOptions) -> SuiteResult:
    """Time every metric on the val split; a perfect prediction not scoring 100 is a ❎ row."""
    root = dataset_root(opts.data)
    t0 = time.perf_counter()
    videos = list_gt(root, "val")
    gt = [[f.read() for f in frames] for frames in videos.values()]
    rgb = [[vps.read_rgb_png(f.image) for f in frames] for frames in videos.values()]
    read_s = time.perf_counter() - t0
    pred = [perturb(v, np.random.default_rng(i)) for i, v in enumerate(gt)]
    frames = sum(len(v) for v in gt)
    result = new_result("metrics", COLUMNS, opts.settings())
    result.extra["name_header"] = "measurement"
    result.rows.append(Row("read ground truth (PNG + JSON)", values={"s_p50": read_s,
                                                                     "ms_per_frame": 1e3 * read_s / frames}))
    cases = [("mIoU, GT vs GT", lambda: score_miou(gt, gt), 100.0),
             ("mIoU, GT vs perturbed", lambda: score_miou(gt, pred), None),
             ("VPQ, GT vs GT", lambda: score_vpq(gt, gt), 100.0),
             ("VPQ, GT vs perturbed", lambda: score_vpq(gt, pred), None),
             ("TC (DIS flow) of the GT frames", lambda: score_tc(gt, rgb), None),
             ("semantic -> panoptic (DIS) + VPQ", lambda: link_instances(gt, rgb), None)]
    for name, fn, expected in cases:
        times, value = timed(fn, opts.runs)
        failures = [f"scored {value:.3f}, expected {expected}"] if expected is not None and abs(
            value - expected) > 1e-6 else []
        status, reason = classify(failures)
        s = statistics.median(times)
        result.rows.append(Row(name, status, reason, {"s_p50": s, "ms_per_frame": 1e3 * s / frames,
                                                      "value": value}))
    h, w = gt[0][0][0].shape
    result.notes.append(f"{len(gt)} videos, {frames} labelled frames of {w}x{h}; median of {opts.runs} runs")
    return result


def plot(result: SuiteResult, path: Path) -> Path | None:
    """Write horizontal bars of ms per frame per measurement; return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r.values.get("ms_per_frame") is not None]
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.45 * len(rows)))
    bars = ax.barh(range(len(rows)), [r.values["ms_per_frame"] for r in rows], color="tab:blue")
    ax.bar_label(bars, fmt="%.2f ms", fontsize=8, padding=2)
    ax.set_yticks(range(len(rows)), [r.name for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, max(r.values["ms_per_frame"] for r in rows) * 1.3)
    ax.set_xlabel("ms per labelled frame")
    ax.set_title(f"metric speed · {result.machine.get('summary', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
