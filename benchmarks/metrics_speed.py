"""Seconds to score the synthetic val split: mIoU, VPQ and semantic -> panoptic linking.

    python -m benchmarks.metrics_speed --data OUT [--split val] [--repeat 3] [--json FILE]

``OUT`` is the folder written by ``vsda-train synth OUT``; its Cityscapes-VPS tree is
``OUT/target``. The ground truth is scored against itself and against a perturbed copy
(shifted 2 px, random wrong-class blocks, instance ids changed every other frame).
Ground truth is read once beforehand, so the times are the metrics alone; the best of
``--repeat`` runs is reported.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.cityscapes_vps import dump_json
from vsda_deploy.errors import VsdaError
from vsda_deploy.evaluation import list_gt
from vsda_deploy.labels import VIPER15
from vsda_deploy.metrics import ConfusionMatrix, VideoPanopticQuality
from vsda_deploy.panoptic import PanopticTracker

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


def best_time(fn: Callable[[], float], repeat: int) -> tuple[float, float]:
    """Return ``(best seconds, value)`` of ``repeat`` calls of ``fn``."""
    times, value = [], float("nan")
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def main(
    data: Path = typer.Option(..., "--data", help="folder written by `vsda-train synth OUT`"),
    split: str = typer.Option("val", "--split", help="split of OUT/target to score"),
    repeat: int = typer.Option(3, "--repeat", min=1, help="runs per measurement; the best is kept"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the figures to this JSON file"),
) -> None:
    """Time mIoU, VPQ and semantic -> panoptic linking on the synthetic val split."""
    root = data / "target"
    try:
        start = time.perf_counter()
        videos = list_gt(root, split)
        gt = [[f.read() for f in frames] for frames in videos.values()]
        rgb = [[vps.read_rgb_png(f.image) for f in frames] for frames in videos.values()]
        read_s = time.perf_counter() - start
    except (VsdaError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    pred = [perturb(v, np.random.default_rng(i)) for i, v in enumerate(gt)]
    rows = {
        "read ground truth (PNG + JSON)": (read_s, float("nan")),
        "mIoU, GT vs GT": best_time(lambda: score_miou(gt, gt), repeat),
        "mIoU, GT vs perturbed": best_time(lambda: score_miou(gt, pred), repeat),
        "VPQ, GT vs GT": best_time(lambda: score_vpq(gt, gt), repeat),
        "VPQ, GT vs perturbed": best_time(lambda: score_vpq(gt, pred), repeat),
        "semantic->panoptic (DIS) + VPQ": best_time(lambda: link_instances(gt, rgb), repeat),
    }
    frames = sum(len(v) for v in gt)
    h, w = gt[0][0][0].shape
    table = Table(title=f"metrics speed: {len(gt)} videos, {frames} labelled frames of {w}x{h}, "
                        f"{os.cpu_count()} CPU(s)")
    for col in ("step", "seconds", "ms / frame", "score, %"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for name, (sec, value) in rows.items():
        table.add_row(name, f"{sec:.3f}", f"{1000 * sec / frames:.1f}",
                      "-" if np.isnan(value) else f"{value:.1f}")
    Console().print(table)
    if json_out is not None:
        dump_json(json_out, {
            "data": str(data), "split": split, "videos": len(gt), "frames": frames, "size": [w, h],
            "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "rows": {n: {"seconds": round(s, 4), "score": None if np.isnan(v) else round(v, 4)}
                     for n, (s, v) in rows.items()},
        })
        Console().print(f"wrote {json_out}")


if __name__ == "__main__":
    typer.run(main)
