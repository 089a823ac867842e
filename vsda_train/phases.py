"""The training phases, read top to bottom: source-only, VAT (phase 1) and VST (phase 2).

Each phase builds a :class:`~vsda_train.run.Run`, its data streams (:func:`clip_stream`) and
runs :func:`~vsda_train.loop.train_loop` over one step function of :mod:`vsda_train.steps`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vsda_deploy.labels import get_label_space
from vsda_train import engine
from vsda_train.clips import domain_clips
from vsda_train.config import ConfigError, TrainConfig
from vsda_train.flow_pairs import on_demand_line
from vsda_train.loop import CheckpointHook, train_loop
from vsda_train.rare_class import RareClassBatchSampler, cached_class_counts, rare_class_line
from vsda_train.run import Run, build_run, num_classes_of, prepare_out
from vsda_train.steps import mean_teacher_step, source_step, vat_step, vst_step
from vsda_train.transforms import ClipTransform


def clip_stream(run: Run, domain: str, photometric: str, labels: bool, with_flow: bool, seed_offset: int,
                label_fn: Any = None, batch_size: int | None = None, spec: str | None = None,
                teacher_view: bool = False, with_prev: bool | None = None) -> Iterator[dict[str, Tensor]]:
    """Return an endless stream of transformed batches of ``domain``, resumable at ``run.it``.

    Source and oracle clips are the labelled frames; target clips are ``data.target_frames``. Frame
    t-k is read only for the steps that look at it (``with_prev``; default: with flow or
    ``teacher_view``). ``teacher_view`` adds the frames before the photometric change and, with
    flow, the forward flow.
    """
    cfg = run.cfg
    frames = cfg.data.target_frames if domain == "target" else "all"
    clips = domain_clips(cfg, domain, labels, with_flow, frames=frames, spec=spec, forward_flow=teacher_view,
                         with_prev=(with_flow or teacher_view) if with_prev is None else with_prev)
    if with_flow and run.info.is_main and (line := on_demand_line(clips, cfg.data.workers)):
        print(line, flush=True)
    crop = cfg.data.source_size if domain == "source" else cfg.data.target_size
    instances = labels and label_fn is None and getattr(run.model, "instance_head", None) is not None
    transform = ClipTransform(crop, cfg.data.scale_range, hflip=cfg.data.hflip, photometric=photometric,
                              norm=run.norm, keep_clean=teacher_view, instances=instances)
    data = engine.TrainClips(clips, transform, cfg.run.seed + seed_offset, labels=label_fn)
    sampler = None
    if labels and label_fn is None and cfg.data.rcs_temperature > 0:
        sampler = rare_class_sampler(run, clips, seed_offset, batch_size or cfg.data.batch_size)
    return engine.infinite_loader(data, cfg, run.it, run.info, seed_offset, batch_size, sampler)


def rare_class_sampler(run: Run, clips: Any, seed_offset: int, batch_size: int) -> RareClassBatchSampler:
    """Return the rare-class sampler of a labelled stream; the main rank prints what it does to the classes."""
    cfg = run.cfg
    counts = cached_class_counts(clips.clips, num_classes_of(cfg), clips.size)
    sampler = RareClassBatchSampler(counts, batch_size, cfg.run.seed + seed_offset, cfg.data.rcs_temperature,
                                    cfg.data.rcs_min_pixels, run.it, run.info.rank, run.info.world_size)
    if run.info.is_main:
        print(rare_class_line(sampler, counts, get_label_space(cfg.data.label_space).classes), flush=True)
    return sampler


def train_source(cfg: TrainConfig, resume: bool = False, on_checkpoint: CheckpointHook | None = None) -> Run:
    """Supervised training on source clips (``source.oracle``: on target-train labels instead)."""
    run = build_run(cfg, "source")
    prepare_out(run, resume)
    stream = clip_stream(run, "oracle" if cfg.source.oracle else "source", cfg.source.augment, labels=True,
                         with_flow=False, seed_offset=0)
    train_loop(run, source_step, [stream], cfg.optim.iters, on_checkpoint=on_checkpoint)
    engine.leave_distributed()
    return run


def train_vat(cfg: TrainConfig, init: str | None = None, resume: bool = False,
              on_checkpoint: CheckpointHook | None = None) -> Run:
    """Phase 1: source CE + video adversarial training on flow-aligned consecutive predictions."""
    if not cfg.data.source or not cfg.data.target:
        raise ConfigError("vat needs data.source and data.target dataset specs")
    run = build_run(cfg, "vat", init)
    prepare_out(run, resume)
    with_flow = cfg.vat.video_disc or cfg.vat.aux_adv_weight > 0
    bs = cfg.vat.batch_size
    src = clip_stream(run, "source", cfg.vat.source_augment, True, with_flow, 0, batch_size=bs, with_prev=True)
    tgt = clip_stream(run, "target", "none", False, with_flow, 1, batch_size=bs, with_prev=True)
    if not with_flow:  # image-level adversarial training only: no flow needed
        src, tgt = _zero_flow(src), _zero_flow(tgt)
    train_loop(run, vat_step, [src, tgt], cfg.optim.iters, on_checkpoint=on_checkpoint)
    engine.leave_distributed()
    return run


def _zero_flow(stream: Iterator[dict[str, Tensor]]) -> Iterator[dict[str, Tensor]]:
    for batch in stream:
        f = batch["frame"]
        yield {**batch, "flow": torch.zeros(f.shape[0], 2, *f.shape[-2:])}


def train_vst(cfg: TrainConfig, init: str, resume: bool = False,
              on_checkpoint: CheckpointHook | None = None) -> Run:
    """Phase 2: rounds of (pseudo labels from the current model, self-training on target).

    The rounds split ``optim.iters``; the LR schedule runs over the whole phase, not per round.
    """
    from vsda_train.vst import make_pseudo_labels

    if not cfg.data.target:
        raise ConfigError("vst needs data.target (the unlabelled target clips)")
    if cfg.vst.teacher == "ema":
        return train_mean_teacher(cfg, init, resume, on_checkpoint)
    run = build_run(cfg, "vst", init)
    prepare_out(run, resume)
    rounds, total = cfg.vst.rounds, cfg.optim.iters
    per_round = total // rounds
    while run.it < total:
        r = min(run.it // per_round, rounds - 1)
        folder = run.out / "pseudo" / f"round{r}"
        if run.extra.get("pseudo_round") != r:
            stats = make_pseudo_labels(run, folder)
            run.extra = {"pseudo_round": r, "pseudo_stats": stats}
        stream = clip_stream(run, "target", cfg.vst.augment, labels=False, with_flow=False, seed_offset=2 + r,
                             label_fn=PseudoLabels(folder))
        end = total if r == rounds - 1 else (r + 1) * per_round
        train_loop(run, vst_step, [stream], end, desc=f"vst round {r + 1}/{rounds}", on_checkpoint=on_checkpoint)
    engine.leave_distributed()
    return run


def pseudo_labels_only(cfg: TrainConfig, init: str) -> tuple[Path, dict]:
    """Write the pseudo labels the offline VST phase would train on, and their statistics, without training:
    ``runs/NAME/pseudo/round0``. Return that folder and the statistics."""
    from vsda_train.vst import make_pseudo_labels

    if not cfg.data.target:
        raise ConfigError("pseudo needs data.target (the unlabelled target clips)")
    if cfg.vst.teacher == "ema":
        raise ConfigError("vst.teacher=ema makes its pseudo labels online while it trains; pseudo writes the "
                          "offline phase's (vst.teacher=offline)")
    run = build_run(cfg, "vst", init)
    prepare_out(run, resume=False)
    folder = run.out / "pseudo" / "round0"
    stats = make_pseudo_labels(run, folder)
    engine.leave_distributed()
    return folder, stats


def train_mean_teacher(cfg: TrainConfig, init: str, resume: bool = False,
                       on_checkpoint: CheckpointHook | None = None) -> Run:
    """Phase 2 with a mean teacher (``vst.teacher: ema``): source CE plus online, time-filtered, mixed pseudo labels."""
    from vsda_train.teacher import EMATeacher, RunningThresholds

    if (cfg.vst.source_weight > 0 or cfg.vst.mix == "source") and not cfg.data.source:
        raise ConfigError("vst.teacher=ema with vst.source_weight > 0 or vst.mix=source needs data.source")
    source_size, target_size = list(cfg.data.source_size), list(cfg.data.target_size)
    if cfg.vst.mix == "source" and any(s < t for s, t in zip(source_size, target_size, strict=True)):
        raise ConfigError(f"vst.mix=source pastes windows of the source crops onto the target crops: data.source_size "
                          f"{source_size} must be at least data.target_size {target_size}")
    run = build_run(cfg, "vst", init)
    run.teacher = EMATeacher(engine.unwrap(run.model)).to(run.device)
    run.thresholds = RunningThresholds(num_classes_of(cfg), cfg.vst.class_top_fraction, cfg.vst.threshold_decay)
    prepare_out(run, resume)
    src = clip_stream(run, "source", cfg.vat.source_augment, True, False, 0)
    with_flow = cfg.vst.temporal_filter or cfg.vst.pseudo_from == "previous"
    tgt = clip_stream(run, "target", cfg.vst.augment, False, with_flow, 2, teacher_view=True)
    train_loop(run, mean_teacher_step, [src, tgt], cfg.optim.iters, desc="vst (mean teacher)",
               on_checkpoint=on_checkpoint)
    if cfg.data.oracle and not (run.out / "pseudo" / "teacher" / "stats.json").is_file():
        from vsda_train.vst import make_pseudo_labels

        # what its teacher's labels are worth at the end, measured as VST's are (target-train labels)
        make_pseudo_labels(replace(run, model=run.teacher.model), run.out / "pseudo" / "teacher")
    engine.leave_distributed()
    return run


@dataclass(frozen=True)
class PseudoLabels:
    """Load the pseudo label PNG of a target frame (picklable for DataLoader workers)."""

    folder: Path

    def __call__(self, meta: dict) -> np.ndarray:
        import cv2

        path = self.folder / Path(meta["name"]).with_suffix(".png").name
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if label is None:
            raise FileNotFoundError(f"{path}: pseudo label missing (regenerate with vsda-train vst)")
        return label


__all__ = ["PseudoLabels", "clip_stream", "train_mean_teacher", "train_source", "train_vat", "train_vst"]
