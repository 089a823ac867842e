"""One optimisation step of each phase: source-only, VAT (phase 1) and VST (phase 2), read top to bottom.

A VAT step segments the source clip and the target clip (frame t and t-k each), adds the source
cross-entropy and the segmenter's adversarial loss on the target video context, updates the
segmenter, then updates the discriminators on detached contexts. ``vat.passes`` says how the
clips go through the segmenter, whatever their crop sizes:

* ``per_domain`` (the peers'): one pass per domain, so BatchNorm in train mode normalises each
  domain with its own batch statistics; under DDP the source pass accumulates locally and the
  summed gradient is synchronised once, after the target pass.
* ``joint``: source and target clips in one pass (one set of batch statistics); crops of one size only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from vsda_deploy.labels import get_label_space
from vsda_train import engine
from vsda_train.config import ConfigError
from vsda_train.histogram_matching import match_histograms
from vsda_train.instance_loss import instance_loss, instance_targets
from vsda_train.losses import bce_to, supervised_loss, video_context
from vsda_train.run import Run
from vsda_train.teacher import (
    block_mask,
    class_mix,
    confidence_levels,
    consistent_labels,
    crop_like,
    cross_frame_labels,
    domain_mix,
    select,
)

SOURCE, TARGET = 1.0, 0.0  # the discriminators' domain labels
DISC_INPUTS = {"video": ("main", 2), "image": ("main", 1), "video_aux": ("aux", 2)}  # level, context parts


def adv_weights(run: Run) -> dict[str, float]:
    """Return the segmenter's adversarial weight per discriminator."""
    vat = run.cfg.vat
    return {"video": vat.adv_weight, "image": vat.image_adv_weight, "video_aux": vat.aux_adv_weight}


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Within the block, ``module``'s parameters take no gradient (the segmenter's adversarial pass)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def no_sync(module: nn.Module) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync()`` (accumulate gradients without all-reduce) for a DDP module, else a no-op."""
    return module.no_sync() if hasattr(module, "no_sync") else contextlib.nullcontext()


# --- source-only and VST ------------------------------------------------------------------


def source_step(run: Run, src: dict[str, Tensor]) -> dict[str, float]:
    """One supervised step on a source batch (frame t only); with instance ids, the instance loss too."""
    with run.precision.autocast():
        out = run.seg(src["frame"])
        loss = supervised_loss(out, src["label"], run.cfg.optim.aux_weight)
    logs = {"loss_seg": loss.item()}
    if out.instances is not None and "instance" in src:
        inst = _instance_loss(run, out.instances, src["instance"], src["label"])
        logs["loss_inst"] = inst.item()
        loss = loss + inst
    run.precision.step("seg", loss, run.optimizer, _trained(run), run.cfg.optim.grad_clip)
    return logs


def _instance_loss(run: Run, pred: Tensor, instance: Tensor, label: Tensor) -> Tensor:
    """Panoptic-DeepLab's centre + offset loss of the instance head against the batch's instance ids."""
    cfg = run.cfg.source
    things = get_label_space(run.cfg.data.label_space).things
    targets = instance_targets(instance, label, things, cfg.center_sigma)
    return instance_loss(pred, targets, cfg.center_weight, cfg.offset_weight)


def vst_step(run: Run, tgt: dict[str, Tensor]) -> dict[str, float]:
    """One self-training step on target frames with their (temporally filtered) pseudo labels."""
    with run.precision.autocast():
        loss = supervised_loss(run.seg(tgt["frame"]), tgt["label"], run.cfg.optim.aux_weight)
    run.precision.step("seg", loss, run.optimizer, _trained(run), run.cfg.optim.grad_clip)
    return {"loss_st": loss.item()}


def mean_teacher_step(run: Run, src: dict[str, Tensor], tgt: dict[str, Tensor]) -> dict[str, float]:
    """One phase-2 step with a mean teacher: online time-filtered pseudo labels, mixed frames, EMA update.

    The source pass (weight ``vst.source_weight``) accumulates locally under DDP; the mixed target
    pass synchronises the summed gradient once. ``kept`` logs the share of the student's pixels that
    carry a label (with ``vst.mix: source``, the pasted source pixels included). With
    ``vst.source_match: histogram`` the source frames take the colour histograms of the clean target
    frames of the step (TPS) before either use.
    """
    vst = run.cfg.vst
    if vst.source_match == "histogram":
        src = {**src, "frame": match_histograms(src["frame"], tgt["frame_clean"], src.get("valid"), tgt.get("valid"))}
    target, frames, pseudo = teacher_labels(run, tgt, src)
    passes = {}  # name: (frames, labels, weight), in the order they are learned
    if vst.source_weight > 0:
        passes["loss_seg"] = (src["frame"], src["label"], vst.source_weight)
    passes["loss_st"] = (frames, target, 1.0)
    if vst.mask_ratio > 0:
        masked = block_mask(tgt["frame"], vst.mask_ratio, vst.mask_block, step_generator(run, 1))
        passes["loss_mask"] = (masked, pseudo, vst.mask_weight)
    logs = {}
    for i, (name, (x, y, weight)) in enumerate(passes.items()):
        last = i == len(passes) - 1  # only the last pass synchronises the summed gradient under DDP
        with contextlib.nullcontext() if last else no_sync(run.seg):
            with run.precision.autocast():
                loss = weight * supervised_loss(run.seg(x), y, run.cfg.optim.aux_weight)
            run.precision.backward("seg", loss)
        logs[name] = loss.item()
    run.precision.update("seg", run.optimizer, _trained(run), run.cfg.optim.grad_clip)
    run.teacher.update(engine.unwrap(run.model), vst.ema_momentum)
    return {**logs, "kept": (target != 255).float().mean().item()}


def step_generator(run: Run, stream: int) -> torch.Generator:
    """Return a CPU generator seeded by the run's seed, step, rank and ``stream``: resumed runs draw the same."""
    seed = run.cfg.run.seed * 1_000_003 + run.it * 7919 + run.info.rank + stream * 104_729
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def teacher_labels(run: Run, tgt: dict[str, Tensor], src: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(mixed labels, mixed frames, target labels)`` of a target batch: teacher labels, filtered, mixed.

    ``vst.mix: source`` pastes classes of the source batch ``src`` (frames and true labels) onto it.
    The target labels are the filtered teacher labels of the unmixed target frames.
    """
    vst = run.cfg.vst
    label, consistent, level = _teacher_view(run, tgt)
    thresholds = run.thresholds.update(level, consistent if vst.time_first else label)
    kept = select(consistent, level, thresholds)
    if vst.mix == "none":
        return kept, tgt["frame"], kept
    generator = step_generator(run, 0)
    if vst.mix == "source":
        source, source_labels = crop_like(src["frame"], src["label"], tuple(kept.shape[-2:]), generator)
        frames, mixed = domain_mix(source, source_labels, tgt["frame"], kept, generator)
    else:
        frames, mixed = class_mix(tgt["frame"], kept, label, generator)
    return mixed, frames, kept


def _teacher_view(run: Run, tgt: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Return the teacher's ``(label, time-filtered label, uint8 confidence)`` of frame t."""
    vst, teacher = run.cfg.vst, run.teacher
    if vst.pseudo_from == "previous":
        label, level = cross_frame_labels(teacher.probs(tgt["prev_clean"]), tgt["flow"], tgt["flow_fw"],
                                          vst.occlusion_check)
        return label, label, level
    probs = teacher.probs(tgt["frame_clean"])
    if vst.temporal_filter:
        return consistent_labels(probs, teacher.probs(tgt["prev_clean"]), tgt["flow"], tgt["flow_fw"],
                                 vst.occlusion_check)
    conf, label = probs.max(1)
    return label, label, confidence_levels(conf)


def _trained(run: Run) -> list[nn.Parameter]:
    return [p for p in run.model.parameters() if p.requires_grad]


# --- VAT ----------------------------------------------------------------------------------


def contexts(out: Any, n: int, flow: Tensor, levels: set[str]) -> dict[str, tuple[Tensor, Tensor]]:
    """Return the video context of each output level of a pass over ``[frames t; frames t-k]`` (n each)."""
    ctx = {"main": video_context(out.logits[:n], out.logits[n:], flow)}
    if "aux" in levels:
        ctx["aux"] = video_context(out.aux_logits[:n], out.aux_logits[n:], flow)
    return ctx


def _levels(run: Run) -> set[str]:
    return {DISC_INPUTS[name][0] for name in run.discs}


def vat_step(run: Run, src: dict[str, Tensor], tgt: dict[str, Tensor]) -> dict[str, float]:
    """One VAT step: source CE + adversarial loss on target clips, then the discriminators' update."""
    passes = run.cfg.vat.passes
    if passes == "joint" and src["frame"].shape[-2:] != tgt["frame"].shape[-2:]:
        raise ConfigError(f"vat.passes=joint needs source and target crops of one size, got "
                         f"{tuple(src['frame'].shape[-2:])} and {tuple(tgt['frame'].shape[-2:])}; "
                         "use vat.passes=per_domain")
    ctx, logs = (_vat_joint if passes == "joint" else _vat_per_domain)(run, src, tgt)
    run.precision.update("seg", run.optimizer, _trained(run), run.cfg.optim.grad_clip)
    logs.update(discriminator_step(run, ctx))
    return logs


def _source_loss(run: Run, out: Any, n: int, label: Tensor) -> Tensor:
    """Return the supervised loss of frame t, the first ``n`` images of a pass."""
    aux = out.aux_logits[:n] if out.aux_logits is not None else None
    return supervised_loss(type(out)(out.logits[:n], aux, out.features), label, run.cfg.optim.aux_weight)


def _vat_per_domain(run: Run, src: dict[str, Tensor], tgt: dict[str, Tensor]) -> tuple[dict, dict[str, float]]:
    """Segment each domain's clips in its own pass; DDP syncs the summed gradient once, after the target's."""
    n, levels = src["frame"].shape[0], _levels(run)
    with no_sync(run.seg):
        with run.precision.autocast():
            out = run.seg(torch.cat([src["frame"], src["prev"]]))
            loss_seg = _source_loss(run, out, n, src["label"])
        run.precision.backward("seg", loss_seg)
    src_ctx = contexts(_detached(out), n, src["flow"], levels)  # only the discriminators see it
    with run.precision.autocast():
        out = run.seg(torch.cat([tgt["frame"], tgt["prev"]]))
    tgt_ctx = contexts(out, tgt["frame"].shape[0], tgt["flow"], levels)
    loss_adv, logs = adversarial_loss(run, tgt_ctx)
    if out.aux_logits is not None and "aux" not in levels:  # DDP reduces every parameter: keep aux in the graph
        loss_adv = loss_adv + 0.0 * out.aux_logits.float().sum()
    run.precision.backward("seg", loss_adv)
    return {"src": src_ctx, "tgt": tgt_ctx}, {"loss_seg": loss_seg.item(), **logs}


def _vat_joint(run: Run, src: dict[str, Tensor], tgt: dict[str, Tensor]) -> tuple[dict, dict[str, float]]:
    """Segment source t, t-k and target t, t-k in one pass; backward CE + adversarial losses."""
    n, levels = src["frame"].shape[0], _levels(run)
    with run.precision.autocast():
        out = run.seg(torch.cat([src["frame"], src["prev"], tgt["frame"], tgt["prev"]]))
        loss_seg = _source_loss(run, out, n, src["label"])
    halves = [_slice(out, 0, 2 * n), _slice(out, 2 * n, 4 * n)]
    ctx = {"src": contexts(halves[0], n, src["flow"], levels), "tgt": contexts(halves[1], n, tgt["flow"], levels)}
    loss_adv, logs = adversarial_loss(run, ctx["tgt"])
    run.precision.backward("seg", loss_seg + loss_adv)
    return ctx, {"loss_seg": loss_seg.item(), **logs}


def _slice(out: Any, a: int, b: int) -> Any:
    aux = out.aux_logits[a:b] if out.aux_logits is not None else None
    return type(out)(out.logits[a:b], aux, out.features[a:b])


def _detached(out: Any) -> Any:
    aux = out.aux_logits.detach() if out.aux_logits is not None else None
    return type(out)(out.logits.detach(), aux, out.features.detach())


def adversarial_loss(run: Run, tgt_ctx: dict[str, tuple[Tensor, Tensor]]) -> tuple[Tensor, dict[str, float]]:
    """Return the segmenter's weighted adversarial loss on target contexts (discriminators frozen) and its logs.

    Target clips are pushed towards the *source* label: the segmenter learns to make target
    predictions (and their motion) look like source ones.
    """
    total, logs, weights = torch.zeros((), device=tgt_ctx["main"][0].device), {}, adv_weights(run)
    for name, disc in run.discs.items():
        level, parts = DISC_INPUTS[name]
        with frozen(disc):
            loss = bce_to(engine.unwrap(disc)(*tgt_ctx[level][:parts]), SOURCE)
        total, logs[f"loss_adv_{name}"] = total + weights[name] * loss, loss.item()
    return total, logs


def discriminator_step(run: Run, ctx: dict[str, dict[str, tuple[Tensor, ...]]]) -> dict[str, float]:
    """Update each discriminator on detached source (1) and target (0) contexts; return its loss.

    Each domain goes through the discriminator in its own pass (crops may differ in size); under
    DDP the first pass accumulates locally and the second synchronises the sum once.
    """
    logs = {}
    for name, disc in run.discs.items():
        level, parts = DISC_INPUTS[name]
        src, tgt = ([t.detach() for t in ctx[d][level][:parts]] for d in ("src", "tgt"))
        with no_sync(disc):
            with run.precision.autocast():
                loss_src = 0.5 * bce_to(disc(*src), SOURCE)
            run.precision.backward(f"d_{name}", loss_src)
        with run.precision.autocast():
            loss_tgt = 0.5 * bce_to(disc(*tgt), TARGET)
        run.precision.backward(f"d_{name}", loss_tgt)
        run.precision.update(f"d_{name}", run.d_opts[name], disc.parameters(), run.cfg.vat.disc_grad_clip)
        run.d_opts[name].zero_grad(set_to_none=True)
        logs[f"loss_d_{name}"] = loss_src.item() + loss_tgt.item()
    return logs


__all__ = [
    "adversarial_loss", "discriminator_step", "mean_teacher_step", "source_step", "step_generator", "teacher_labels",
    "vat_step", "vst_step",
]
