"""Making the pseudo labels of video self-training (VST) for the target set, shared out over DDP ranks.

The frames that get a pseudo label are the target training samples (``data.target_frames``);
they and their voting neighbours (``vst.neighbours`` times k frames away, in the same video) are
predicted at the training scale (``data.target_resize``). The videos are dealt out over the
ranks; each file is written by one rank only.

1. Predict (each rank, its videos, in frame order): class and uint8 confidence level of every
   needed frame; for each frame to label, the temporally consistent label (neighbours warped by
   optical flow; occluded or out-of-view pixels do not vote). ``<folder>/raw/<name>.npy`` keeps
   (label, consistent label, level), 3 bytes a pixel; the per-class confidence histogram counts
   the raw labels, or with ``vst.time_first`` the consistent ones; with ``vst.time_rule: rank`` it
   counts every raw label at its time rank (consistent pixels above all others); with
   ``vst.time_rule: fuse`` the class and level are those of the softmax averaged with the visible
   neighbours' warped softmax, and the consistent label is that fused class.
2. The histograms are summed over the ranks: every rank takes the same class-balanced thresholds.
3. Label (each rank, its videos): confident and consistent pixels keep their class -> ``<name>.png``.
4. The statistics are summed over the ranks; rank 0 writes ``stats.json`` and removes ``raw/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vsda_deploy.flow import in_view, occlusion_mask, warp
from vsda_deploy.labels import IGNORE_INDEX, get_label_space
from vsda_deploy.preprocess import IMAGENET, Normalization, resize_frame, resize_label
from vsda_train.clips import ScaledClips, dataset_flow, domain_clips
from vsda_train.pseudo_labels import (
    LEVELS,
    ConfidenceHistogram,
    PseudoLabelStats,
    fuse_probs,
    min_level,
    quantise,
    select_confident,
    temporal_filter,
    time_ranks,
)
from vsda_train.transforms import normalize


@torch.no_grad()
def predict_probs(model: torch.nn.Module, frame: np.ndarray, device: torch.device,
                  scales: Sequence[float] = (1.0,), flip: bool = False, norm: Normalization = IMAGENET) -> torch.Tensor:
    """Return softmax probabilities (C, H, W) of one RGB uint8 frame.

    With several ``scales`` and/or ``flip`` (test-time augmentation) the probabilities are the mean over
    the rescaled and mirrored copies, each brought back to the frame's size (and orientation) first.
    """
    model.eval()
    x = normalize(frame, norm).unsqueeze(0).to(device)
    size = x.shape[-2:]
    total, n = None, 0
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        for mirrored in (False, True) if flip else (False,):
            logits = model(xs.flip(-1) if mirrored else xs).float()
            logits = logits.flip(-1) if mirrored else logits
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            probs = logits.softmax(1)
            total, n = (probs if total is None else total + probs), n + 1
    return (total / n)[0].cpu()


# --- which frames -------------------------------------------------------------------------


@dataclass
class VideoPlan:
    """One target video: where each frame is stored, and the frames that get a pseudo label."""

    frames: dict[int, str] = field(default_factory=dict)  # frame index -> path
    labelled: dict[int, str] = field(default_factory=dict)  # frame index -> output name


def plan_videos(train: ScaledClips, universe: ScaledClips) -> dict[str, VideoPlan]:
    """Return ``{video: plan}``: the frames of ``universe`` and the training samples of ``train`` to label."""
    plans: dict[str, VideoPlan] = {}
    for rec in universe.records:
        plan = plans.setdefault(rec.video, VideoPlan())
        plan.frames[rec.index], plan.frames[rec.prev_index] = rec.path, rec.prev_path
    for rec in train.records:
        plan = plans.setdefault(rec.video, VideoPlan())
        plan.frames.setdefault(rec.index, rec.path)
        plan.labelled[rec.index] = Path(rec.name).with_suffix(".png").name
    return {v: plans[v] for v in sorted(plans) if plans[v].labelled}


def shard(videos: Sequence[str], rank: int, world: int) -> list[str]:
    """Return this rank's share of ``videos``: every ``world``-th one, starting at ``rank``."""
    return list(videos)[rank::world]


# --- one video ----------------------------------------------------------------------------


class FrameWindow:
    """Frames of one video at the training size and their predictions, computed once and forgotten behind t.

    With ``keep_probs`` (``vst.time_rule: fuse``) each frame's softmax is kept too, (H, W, C) float32.
    """

    def __init__(self, clips: ScaledClips, plan: VideoPlan, predict: Any, keep_probs: bool = False) -> None:
        self.clips, self.plan, self.predict, self.keep_probs = clips, plan, predict, keep_probs
        self.items: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # index -> frame, label, level
        self.probs: dict[int, np.ndarray] = {}  # index -> softmax (H, W, C), with keep_probs

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if index not in self.items:
            frame = resize_frame(self.clips.clips.read_frame(self.plan.frames[index]), self.clips.size)
            probs = self.predict(frame)
            conf, label = probs.max(0)
            self.items[index] = frame, label.numpy().astype(np.uint8), quantise(conf.numpy())
            if self.keep_probs:
                self.probs[index] = probs.permute(1, 2, 0).numpy()
        return self.items[index]

    def key(self, index: int) -> str:
        return self.clips.clips.frame_key(self.plan.frames[index])

    def forget_before(self, index: int) -> None:
        for i in [i for i in self.items if i < index]:
            del self.items[i]
            self.probs.pop(i, None)


def visible_neighbours(window: FrameWindow, t: int, cfg: Any, flow: Any) -> Iterator[tuple[int, np.ndarray,
                                                                                          np.ndarray]]:
    """Yield ``(n, flow_tn, visible)`` for each neighbour n of frame ``t`` in its video: the flow taking a
    pixel of t to where it is in n, and where n sees it (in view; not occluded, with ``vst.occlusion_check``)."""
    frame_t = window[t][0]
    for offset in cfg.vst.neighbours:
        n = t + offset * cfg.data.k
        if n not in window.plan.frames:
            continue
        frame_n = window[n][0]
        flow_tn = flow(window.key(t), window.key(n), frame_t, frame_n)
        visible = in_view(flow_tn)
        if cfg.vst.occlusion_check:
            visible &= ~occlusion_mask(flow(window.key(n), window.key(t), frame_n, frame_t), flow_tn)
        yield n, flow_tn, visible


def consistent_label(window: FrameWindow, t: int, cfg: Any, flow: Any) -> np.ndarray:
    """Return the label of frame ``t`` with 255 where a visible neighbour's prediction disagrees."""
    label = window[t][1]
    if not cfg.vst.temporal_filter:
        return label
    warped, votes = [], []
    for n, flow_tn, visible in visible_neighbours(window, t, cfg, flow):
        warped.append(warp(window[n][1], flow_tn, nearest=True)[0])
        votes.append(visible)
    return temporal_filter(label, warped, votes)


def fused_label(window: FrameWindow, t: int, cfg: Any, flow: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (class, confidence level) of frame ``t`` from its softmax averaged, pixel by pixel, with the
    softmax of each neighbour that sees the pixel, warped onto t by the flow (``vst.time_rule: fuse``)."""
    warped, seen = [], []
    for n, flow_tn, visible in visible_neighbours(window, t, cfg, flow):
        warped.append(warp(window.probs[n], flow_tn)[0])
        seen.append(visible)
    return fuse_probs(window.probs[t], warped, seen)


def raw_path(folder: Path, name: str) -> Path:
    return folder / "raw" / f"{Path(name).stem}.npy"


def predict_video(window: FrameWindow, cfg: Any, flow: Any, folder: Path, hist: ConfidenceHistogram,
                  on_frame: Any) -> None:
    """Pass 1 on one video: save (label, consistent, level) of each frame to label; add to the histogram."""
    time_first = cfg.vst.temporal_filter and cfg.vst.time_first
    rank = ranked(cfg)
    reach = min(0, *cfg.vst.neighbours) * cfg.data.k
    for t, name in sorted(window.plan.labelled.items()):
        _, label, level = window[t]
        if fused(cfg):  # the fused class in place of the consistent one, at the fused confidence
            consistent, level = fused_label(window, t, cfg, flow)
            hist.update(level, consistent)
        else:
            consistent = consistent_label(window, t, cfg, flow)
            hist.update(*((time_ranks(label, consistent, level), label) if rank
                          else (level, consistent if time_first else label)))
        _atomic_npy(raw_path(folder, name), np.stack([label, consistent, level]))
        window.forget_before(t + reach)
        on_frame()


def fused(cfg: Any) -> bool:
    """Return whether time fuses the predictions (``vst.time_rule: fuse``) rather than vetoing pixels."""
    return cfg.vst.temporal_filter and cfg.vst.time_rule == "fuse"


def ranked(cfg: Any) -> bool:
    """Return whether time ranks the pixels (``vst.time_rule: rank``) rather than vetoing them."""
    return cfg.vst.temporal_filter and cfg.vst.time_rule == "rank"


def select(label: np.ndarray, consistent: np.ndarray, level: np.ndarray, thresholds: np.ndarray,
           cfg: Any) -> np.ndarray:
    """Return the pseudo label of one frame: the class-balanced top fraction under the phase's time rule."""
    if not ranked(cfg):
        return select_confident(consistent, level, thresholds)
    kept = select_confident(label, time_ranks(label, consistent, level), thresholds)
    kept[level < min_level(cfg.vst.min_confidence)] = IGNORE_INDEX
    return kept


def label_video(plan: VideoPlan, folder: Path, thresholds: np.ndarray, stats: PseudoLabelStats, oracle: Any,
                cfg: Any) -> None:
    """Pass 2 on one video: write the pseudo label PNG of each frame and count its statistics."""
    for name in plan.labelled.values():
        label, consistent, level = np.load(raw_path(folder, name))
        kept = select(label, consistent, level, thresholds, cfg)
        _atomic_png(folder / name, kept)
        raw = consistent if fused(cfg) else label  # what the class top fraction was taken of
        gt = oracle(name, kept.shape) if oracle else None
        stats.update(raw, kept, gt)
        if gt is not None and cfg.vst.temporal_filter and not fused(cfg) and not ranked(cfg):  # the veto rule
            stats.update_time(label, consistent, select_confident(label, level, thresholds) != IGNORE_INDEX, gt)


# --- the whole pass -----------------------------------------------------------------------


def make_pseudo_labels(run: Any, folder: Path) -> dict:
    """Write the pseudo labels of the target set into ``folder`` (sharded over ranks); return their statistics."""
    cfg, info = run.cfg, run.info
    space = get_label_space(cfg.data.label_space)
    train = domain_clips(cfg, "target", labels=False, with_flow=False, frames=cfg.data.target_frames)
    universe = train if cfg.data.target_frames == "all" else domain_clips(cfg, "target", False, False)
    plans = plan_videos(train, universe)
    mine = shard(list(plans), info.rank, info.world_size)
    flow = dataset_flow(cfg, cfg.data.target)
    (folder / "raw").mkdir(parents=True, exist_ok=True)

    def predict(frame: np.ndarray) -> torch.Tensor:
        return predict_probs(run.model, frame, run.device, cfg.vst.tta_scales, cfg.vst.tta_flip, run.norm)

    hist = ConfidenceHistogram(space.num_classes, 2 * LEVELS if ranked(cfg) else LEVELS)
    with _Progress(run, plans, mine, train, folder) as progress:
        for video in mine:
            window = FrameWindow(universe, plans[video], predict, keep_probs=fused(cfg))
            predict_video(window, cfg, flow, folder, hist, progress.advance)
    _barrier(info)
    hist.counts = _sum_over_ranks(hist.counts, info)
    thresholds = hist.thresholds(cfg.vst.class_top_fraction, 0.0 if ranked(cfg) else cfg.vst.min_confidence)
    stats = PseudoLabelStats(space.num_classes)
    oracle = OracleLabels(cfg) if cfg.data.oracle else None
    for video in mine:
        label_video(plans[video], folder, thresholds, stats, oracle, cfg)
    stats.counts = _sum_over_ranks(stats.counts, info)
    stats.time = _sum_over_ranks(stats.time, info)
    summary = stats.summary(space.classes)
    level = np.where(thresholds >= hist.levels, LEVELS - 1, thresholds % LEVELS)  # a class never predicted: 1.0
    summary["thresholds"] = {n: int(t) / (LEVELS - 1) for n, t in zip(space.classes, level)}
    if ranked(cfg):  # a threshold above LEVELS keeps consistent pixels only, from that confidence on
        summary["consistent_only"] = {n: bool(LEVELS <= t < hist.levels) for n, t in zip(space.classes, thresholds)}
    if info.is_main:
        _atomic_text(folder / "stats.json", json.dumps(summary, indent=1))
        shutil.rmtree(folder / "raw")
    _barrier(info)
    return summary


class OracleLabels:
    """Target-train labels by frame name, read one at a time when asked (pseudo-label accuracy only)."""

    def __init__(self, cfg: Any) -> None:
        self.clips = domain_clips(cfg, "oracle", labels=True, with_flow=False)
        self.index = {Path(rec.name).with_suffix(".png").name: i for i, rec in enumerate(self.clips.records)}

    def __call__(self, name: str, shape: tuple[int, int]) -> np.ndarray | None:
        i = self.index.get(name)
        if i is None:
            return None
        label, _ = self.clips.clips.load_label(self.clips.records[i])
        return resize_label(label, shape)


# --- plumbing -----------------------------------------------------------------------------


class _Progress:
    """Rank 0's progress bar over its share of frames, after one line with the pass's size and disk."""

    def __init__(self, run: Any, plans: dict[str, VideoPlan], mine: list[str], train: ScaledClips,
                 folder: Path) -> None:
        self.run, self.total = run, sum(len(plans[v].labelled) for v in mine)
        labelled = sum(len(p.labelled) for p in plans.values())
        predicted = sum(len(p.frames) for p in plans.values())
        h, w = train.size or train.clips.frames(0)[0].shape[:2]
        views = len(run.cfg.vst.tta_scales) * (2 if run.cfg.vst.tta_flip else 1)
        self.intro = (f"pseudo labels -> {folder}: {labelled} frames to label, up to {predicted} to predict "
                      f"({views} view(s) each) at {h}x{w} over {run.info.world_size} rank(s); "
                      f"{_gib(labelled * 3 * h * w):.2f} GiB of intermediate files, "
                      f"{_gib(labelled * h * w):.2f} GiB of labels (PNG: less)")
        self.bar: Any = None
        self.started = time.perf_counter()
        self.done = 0

    def __enter__(self) -> _Progress:
        if self.run.info.is_main:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

            print(self.intro, flush=True)
            disable = os.environ.get("VSDA_NO_PROGRESS") == "1"
            self.bar = Progress("pseudo labels (rank 0)", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TimeRemainingColumn(), disable=disable)
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.total)
        return self

    def advance(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.advance(self.task)
            if self.done == min(8, self.total) and self.total > self.done:
                per = (time.perf_counter() - self.started) / self.done
                print(f"pseudo labels: {per:.2f} s a frame; about {per * self.total / 60:.1f} min for "
                      f"{self.total} frames on each rank", flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _gib(n: float) -> float:
    return n / 2**30


def _sum_over_ranks(counts: np.ndarray, info: Any) -> np.ndarray:
    """Return integer ``counts`` summed over DDP ranks (unchanged in one process)."""
    if not info.enabled:
        return counts
    t = torch.from_numpy(np.ascontiguousarray(counts, np.int64))
    torch.distributed.all_reduce(t)
    return t.numpy()


def _barrier(info: Any) -> None:
    if info.enabled:
        torch.distributed.barrier()


def _tmp(path: Path) -> Path:
    tag = hashlib.sha1(f"{os.getpid()}{path}".encode()).hexdigest()[:8]
    return path.with_name(f".{path.stem}.{tag}.tmp{path.suffix}")


def _atomic_npy(path: Path, array: np.ndarray) -> None:
    tmp = _tmp(path)
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def _atomic_png(path: Path, label: np.ndarray) -> None:
    tmp = _tmp(path)
    if not cv2.imwrite(str(tmp), label):
        tmp.unlink(missing_ok=True)
        raise OSError(f"{path}: cannot write the pseudo label")
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = _tmp(path)
    tmp.write_text(text)
    os.replace(tmp, path)


__all__ = ["make_pseudo_labels", "plan_videos", "predict_probs", "shard"]
