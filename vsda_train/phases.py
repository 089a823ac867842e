"""The training phases: source-only, VAT (phase 1) and VST (phase 2), read top to bottom.

Each phase is a loop over one step function: :func:`source_step`, :func:`vat_step`,
:func:`vst_step`. Everything else (data streams, DDP, AMP, checkpoints, logs) is plumbing
from :mod:`vsda_train.engine` and :mod:`vsda_train.checkpoint`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsda_deploy.labels import IGNORE_INDEX, get_label_space
from vsda_train import engine
from vsda_train.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from vsda_train.config import TrainConfig, save_config
from vsda_train.discriminator import ImageDiscriminator, VideoDiscriminator
from vsda_train.flow import flow_provider, spec_root, warp
from vsda_train.models import create_model
from vsda_train.transforms import ClipTransform

AUX_WEIGHT = 0.4
PHASES = ("source", "vat", "vst")


class TrainForward(nn.Module):
    """Expose ``forward_train`` as ``forward`` so DistributedDataParallel sees the training pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Any:
        return self.model.forward_train(x)


@dataclass
class Run:
    """The state of one training run: model, optimisers, discriminators, iteration."""

    cfg: TrainConfig
    phase: str
    out: Path
    info: engine.DistInfo
    device: torch.device
    model: nn.Module
    seg: nn.Module  # the model's training forward, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    precision: engine.Precision
    np_rng: np.random.Generator
    discs: dict[str, nn.Module] = field(default_factory=dict)
    d_opts: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    it: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # phase state saved in checkpoints

    def state(self) -> dict[str, Any]:
        """Return the checkpoint dict (plain tensors and primitives: ``weights_only`` loads it)."""
        return {
            "phase": self.phase,
            "iteration": self.it,
            "model": engine.unwrap(self.model).state_dict(),
            "model_config": engine.unwrap(self.model).config,
            "label_space": self.cfg.data.label_space,
            "optimizer": self.optimizer.state_dict(),
            "discs": {k: engine.unwrap(d).state_dict() for k, d in self.discs.items()},
            "d_opts": {k: o.state_dict() for k, o in self.d_opts.items()},
            "scalers": {k: s.state_dict() for k, s in self.precision.scalers.items()},
            "rng": rng_state(self.np_rng),
            "config": self.cfg.to_dict(),
            "extra": self.extra,
        }

    def load_state(self, ckpt: dict[str, Any]) -> None:
        """Restore a checkpoint written by :meth:`state` (resume)."""
        engine.unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        for k, d in self.discs.items():
            engine.unwrap(d).load_state_dict(ckpt["discs"][k])
            self.d_opts[k].load_state_dict(ckpt["d_opts"][k])
        for k, s in ckpt.get("scalers", {}).items():
            self.precision.scaler(k).load_state_dict(s)
        set_rng_state(ckpt["rng"], self.np_rng)
        self.it = int(ckpt["iteration"])
        self.extra = dict(ckpt.get("extra", {}))


# --- losses -----------------------------------------------------------------------------


def labelled_pixels(label: Tensor) -> Tensor:
    """Return the number of labelled pixels per rank, averaged over ranks (the CE normaliser).

    Normalising every rank's summed loss by the *global* mean count makes DDP's gradient
    average equal to the gradient of one process holding the whole global batch.
    """
    count = (label != IGNORE_INDEX).sum().double()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(count)
        count = count / torch.distributed.get_world_size()
    return count.clamp(min=1).float()


def supervised_loss(out: Any, label: Tensor) -> Tensor:
    """Return cross-entropy (ignore 255) of the logits plus ``AUX_WEIGHT`` x that of the aux logits."""
    norm = labelled_pixels(label)
    ce = lambda logits: F.cross_entropy(logits.float(), label, ignore_index=IGNORE_INDEX,  # noqa: E731
                                        reduction="sum") / norm
    loss = ce(out.logits)
    if out.aux_logits is not None:
        loss = loss + AUX_WEIGHT * ce(out.aux_logits)
    return loss


def bce_to(logits: Tensor, domain: float) -> Tensor:
    """Return the BCE-with-logits of discriminator logits against a constant domain label."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), domain))


def video_context(logits_t: Tensor, logits_prev: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(softmax(p_t), warp(softmax(p_{t-k})))``; out-of-view pixels of the warp are zero."""
    p_t, p_prev = logits_t.float().softmax(1), logits_prev.float().softmax(1)
    warped, valid = warp(p_prev, flow)
    return p_t, warped * valid


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


# --- the steps --------------------------------------------------------------------------


def source_step(run: Run, src: dict[str, Tensor]) -> dict[str, float]:
    """One supervised step on a source batch (frame t only)."""
    with run.precision.autocast():
        loss = supervised_loss(run.seg(src["frame"]), src["label"])
    run.precision.step("seg", loss, run.optimizer, run.model.parameters(), run.cfg.optim.grad_clip)
    return {"loss_seg": loss.item()}


def vat_step(run: Run, src: dict[str, Tensor], tgt: dict[str, Tensor]) -> dict[str, float]:
    """One VAT step: source CE + adversarial loss on target clips, then the discriminators' update.

    The video discriminator sees ``[softmax(p_t), warp(softmax(p_{t-k}))]`` and learns source (1)
    vs target (0); the segmenter is trained to make target clips look like source clips. Source
    and target crops of one size go through the segmenter in one pass (DDP then syncs once);
    crops of different sizes (the peers' 1280x720 source / 1024x512 target) in one pass per
    domain, the source gradient accumulated locally and synchronised with the target's.
    """
    same = src["frame"].shape[-2:] == tgt["frame"].shape[-2:]
    ctx, logs = (_vat_joint if same else _vat_split)(run, src, tgt)
    run.precision.update("seg", run.optimizer, run.model.parameters(), run.cfg.optim.grad_clip)
    logs.update(discriminator_step(run, ctx))
    return logs


def _vat_joint(run: Run, src: dict[str, Tensor], tgt: dict[str, Tensor]) -> tuple[dict, dict[str, float]]:
    """Segment source t, t-k and target t, t-k in one pass; backward CE + adversarial losses."""
    n = src["frame"].shape[0]
    with run.precision.autocast():
        out = run.seg(torch.cat([src["frame"], src["prev"], tgt["frame"], tgt["prev"]]))
        logits = out.logits.split(n)
        aux = out.aux_logits.split(n)[0] if out.aux_logits is not None else None
        loss_seg = supervised_loss(type(out)(logits[0], aux, out.features), src["label"])
    ctx = {"src": video_context(logits[0], logits[1], src["flow"]),
           "tgt": video_context(logits[2], logits[3], tgt["flow"])}
    loss_adv, logs = adversarial_loss(run, ctx["tgt"])
    run.precision.backward("seg", loss_seg + loss_adv)
    return ctx, {"loss_seg": loss_seg.item(), **logs}


def _vat_split(run: Run, src: dict[str, Tensor], tgt: dict[str, Tensor]) -> tuple[dict, dict[str, float]]:
    """Segment each domain's clips in its own pass; DDP syncs the summed gradient once, after the target's."""
    with no_sync(run.seg):
        with run.precision.autocast():
            out = run.seg(torch.cat([src["frame"], src["prev"]]))
            logits = out.logits.chunk(2)
            aux = out.aux_logits.chunk(2)[0] if out.aux_logits is not None else None
            loss_seg = supervised_loss(type(out)(logits[0], aux, out.features), src["label"])
        run.precision.backward("seg", loss_seg)
    src_ctx = video_context(logits[0].detach(), logits[1].detach(), src["flow"])  # only the discriminators see it
    with run.precision.autocast():
        out = run.seg(torch.cat([tgt["frame"], tgt["prev"]]))
        tgt_logits = out.logits.chunk(2)
    ctx = {"src": src_ctx, "tgt": video_context(tgt_logits[0], tgt_logits[1], tgt["flow"])}
    loss_adv, logs = adversarial_loss(run, ctx["tgt"])
    if out.aux_logits is not None:  # DDP reduces every parameter: keep the aux head in the graph
        loss_adv = loss_adv + 0.0 * out.aux_logits.float().sum()
    run.precision.backward("seg", loss_adv)
    return ctx, {"loss_seg": loss_seg.item(), **logs}


def adversarial_loss(run: Run, tgt_ctx: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Return the segmenter's weighted adversarial loss on target contexts (discriminators frozen) and its logs."""
    vat, total, logs = run.cfg.vat, torch.zeros((), device=tgt_ctx[0].device), {}
    if "video" in run.discs:
        with frozen(run.discs["video"]):
            loss = bce_to(engine.unwrap(run.discs["video"])(*tgt_ctx), 1.0)
        total, logs["loss_adv_video"] = total + vat.adv_weight * loss, loss.item()
    if "image" in run.discs:
        with frozen(run.discs["image"]):
            loss = bce_to(engine.unwrap(run.discs["image"])(tgt_ctx[0]), 1.0)
        total, logs["loss_adv_image"] = total + vat.image_adv_weight * loss, loss.item()
    return total, logs


def no_sync(module: nn.Module) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync()`` (accumulate gradients without all-reduce) for a DDP module, else a no-op."""
    return module.no_sync() if hasattr(module, "no_sync") else contextlib.nullcontext()


def discriminator_step(run: Run, ctx: dict[str, tuple[Tensor, ...]]) -> dict[str, float]:
    """Update each discriminator on detached source (1) and target (0) contexts; return its loss."""
    logs = {}
    for name, disc in run.discs.items():
        parts = (0, 1) if name == "video" else (0,)
        src, tgt = ([ctx[d][i].detach() for i in parts] for d in ("src", "tgt"))
        if src[0].shape == tgt[0].shape:
            n = src[0].shape[0]
            with run.precision.autocast():
                d_out = disc(*(torch.cat([a, b]) for a, b in zip(src, tgt, strict=True)))
                loss_d = 0.5 * (bce_to(d_out[:n], 1.0) + bce_to(d_out[n:], 0.0))
            run.precision.backward(f"d_{name}", loss_d)
        else:  # crops of different sizes: one pass per domain, synchronised once under DDP
            with no_sync(disc):
                with run.precision.autocast():
                    loss_src = 0.5 * bce_to(disc(*src), 1.0)
                run.precision.backward(f"d_{name}", loss_src)
            with run.precision.autocast():
                loss_tgt = 0.5 * bce_to(disc(*tgt), 0.0)
            run.precision.backward(f"d_{name}", loss_tgt)
            loss_d = loss_src.detach() + loss_tgt.detach()
        run.precision.update(f"d_{name}", run.d_opts[name])
        run.d_opts[name].zero_grad(set_to_none=True)
        logs[f"loss_d_{name}"] = loss_d.item()
    return logs


def vst_step(run: Run, tgt: dict[str, Tensor]) -> dict[str, float]:
    """One self-training step on target frames with their (temporally filtered) pseudo labels."""
    with run.precision.autocast():
        loss = supervised_loss(run.seg(tgt["frame"]), tgt["label"])
    run.precision.step("seg", loss, run.optimizer, run.model.parameters(), run.cfg.optim.grad_clip)
    return {"loss_st": loss.item()}


# --- building a run ---------------------------------------------------------------------


def num_classes_of(cfg: TrainConfig) -> int:
    return get_label_space(cfg.data.label_space).num_classes


def load_init(model: nn.Module, path: str) -> None:
    """Load segmenter weights from a vsda checkpoint; a different architecture is one clear error."""
    ckpt = load_checkpoint(path)
    want, have = engine.unwrap(model).config, ckpt.get("model_config", {})
    if have.get("num_classes") != want["num_classes"]:
        raise CheckpointError(
            f"{path}: checkpoint has {have.get('num_classes')} classes, the config asks for {want['num_classes']}")
    if have.get("name") != want["name"]:
        raise CheckpointError(f"{path}: checkpoint is a {have.get('name')!r}, the config builds {want['name']!r}")
    engine.unwrap(model).load_state_dict(ckpt["model"])


def build_run(cfg: TrainConfig, phase: str, init: str | None = None) -> Run:
    """Return a fresh Run: seeded, model built (and initialised from ``init``), optimisers made."""
    info = engine.init_distributed(cfg.run.device)
    device = engine.resolve_device(cfg.run.device, info)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    np_rng = engine.seed_everything(cfg.run.seed, cfg.run.deterministic)
    model = create_model(cfg.model.name, num_classes_of(cfg), cfg.model.pretrained, **cfg.model.kwargs)
    if init:
        load_init(model, init)
    elif cfg.model.freeze_bn and not cfg.model.pretrained and info.is_main:
        warnings.warn("model.freeze_bn without model.pretrained or --init: BatchNorm keeps its initial statistics "
                      "(mean 0, var 1); the DeepLabV2 recipe expects an ImageNet backbone and may diverge without it",
                      stacklevel=2)
    model.to(device)
    if info.enabled and device.type == "cuda" and cfg.model.sync_bn and not cfg.model.freeze_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.run.channels_last:
        model.to(memory_format=torch.channels_last)
    seg: nn.Module = TrainForward(model)
    if cfg.run.compile:
        seg = torch.compile(seg)
    seg = engine.wrap_ddp(seg, info, device)
    run = Run(cfg=cfg, phase=phase, out=Path(cfg.run.out_dir) / cfg.run.name, info=info, device=device,
              model=model, seg=seg, optimizer=engine.build_optimizer(model, cfg),
              precision=engine.Precision(cfg.run.amp, device), np_rng=np_rng)
    if phase == "vat":
        add_discriminators(run)
    return run


def add_discriminators(run: Run) -> None:
    """Create the video (and optional per-frame) discriminators with their Adam optimisers."""
    vat, c = run.cfg.vat, num_classes_of(run.cfg)
    made = {}
    if vat.video_disc:
        made["video"] = VideoDiscriminator(c, vat.disc_width)
    if vat.image_disc:
        made["image"] = ImageDiscriminator(c, vat.disc_width)
    if not made:
        raise ValueError("vat: enable vat.video_disc and/or vat.image_disc")
    for name, disc in made.items():
        disc.to(run.device)
        run.discs[name] = engine.wrap_ddp(disc, run.info, run.device)
        run.d_opts[name] = torch.optim.Adam(disc.parameters(), lr=vat.disc_lr, betas=vat.disc_betas)


def clip_stream(run: Run, spec: str, size: tuple[int, int], photometric: str, labels: bool,
                with_flow: bool, seed_offset: int, label_fn: Any = None,
                split: str = "train", batch_size: int | None = None) -> Iterator[dict[str, Tensor]]:
    """Return an endless stream of transformed batches of ``spec``, resumable at ``run.it``."""
    from vsda_train.data import build_dataset

    cfg = run.cfg
    flow = None
    if with_flow:
        flow = flow_provider("dis", root=spec_root(spec), preset=cfg.data.flow_preset,
                             cache=cfg.data.flow_cache, compute=cfg.data.compute_flow,
                             scale=cfg.data.flow_scale)
    clips = build_dataset(spec, split=split, k=cfg.data.k, labels=labels, flow=flow,
                          label_space=cfg.data.label_space)
    transform = ClipTransform(size, cfg.data.scale_range, hflip=True, photometric=photometric)
    data = engine.TrainClips(clips, transform, cfg.run.seed + seed_offset, labels=label_fn)
    return engine.infinite_loader(data, cfg, run.it, run.info, seed_offset, batch_size)


def to_device(batch: dict[str, Tensor], run: Run) -> dict[str, Tensor]:
    out = {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}
    if run.cfg.run.channels_last:
        for k in ("frame", "prev"):
            out[k] = out[k].contiguous(memory_format=torch.channels_last)
    return out


# --- the loop ---------------------------------------------------------------------------


def train_loop(run: Run, step: Any, streams: list[Iterator[dict[str, Tensor]]], total: int,
               start: int = 0, desc: str = "") -> None:
    """Run ``step(run, *batches)`` from ``run.it`` to ``total`` with poly LR, logs and checkpoints."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    cfg = run.cfg
    log = engine.MetricLog(run.out / "log.csv", run.info.is_main)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[rate]:.2f} it/s"), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[losses]}")]
    with Progress(*columns, disable=not run.info.is_main or os.environ.get("VSDA_NO_PROGRESS") == "1",
                  transient=False) as bar:
        task = bar.add_task(desc or run.phase, total=total, completed=run.it, rate=0.0, losses="")
        t0, it0 = time.perf_counter(), run.it
        while run.it < total:
            engine.poly_lr(run.optimizer, run.it - start, total - start, cfg.optim.poly_power, cfg.optim.warmup_iters)
            batches = [to_device(next(s), run) for s in streams]
            set_train_mode(run)
            logs = step(run, *batches)
            run.optimizer.zero_grad(set_to_none=True)
            run.it += 1
            if run.it % cfg.run.log_every == 0 or run.it == total:
                logs = engine.mean_over_ranks(logs, run.info, run.device)
                log.write(run.it, {**logs, "lr": run.optimizer.param_groups[0]["lr"]})
            rate = (run.it - it0) / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, completed=run.it, rate=rate,
                       losses=" ".join(f"{k[5:] if k.startswith('loss_') else k}={v:.3f}" for k, v in logs.items()))
            if run.it % cfg.run.ckpt_every == 0 or run.it == total:
                checkpoint(run)


def parameter_checksum(model: nn.Module) -> float:
    """Return the sum of |w| over all parameters (equal on every DDP rank when they agree)."""
    return float(sum(p.detach().double().abs().sum() for p in model.parameters()))


def set_train_mode(run: Run) -> None:
    """Put the model in training mode; with ``model.freeze_bn`` BatchNorm keeps its running statistics."""
    run.model.train()
    if run.cfg.model.freeze_bn:
        for m in run.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def checkpoint(run: Run) -> None:
    """Write ``last.pt`` atomically (rank 0); a test may ask for a SIGKILL right after it."""
    state = run.state() if run.info.is_main else None
    if run.info.enabled:  # every rank's parameter checksum, so a test can see the ranks agree
        sums: list[Any] = [None] * run.info.world_size
        torch.distributed.all_gather_object(sums, parameter_checksum(run.model))
        if state is not None:
            state["rank_checksums"] = sums
    if state is not None:
        save_checkpoint(run.out / "last.pt", state)
        kill_at = os.environ.get("VSDA_FAULT_KILL_AFTER_CKPT")  # fault injection for the resume test
        if kill_at and run.it == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
    if run.info.enabled:
        torch.distributed.barrier()


def prepare_out(run: Run, resume: bool) -> None:
    """Create the run folder, refuse to clobber a finished run unless resuming, save config.yaml."""
    last = run.out / "last.pt"
    if resume and last.exists():
        ckpt = load_checkpoint(last)
        if ckpt.get("phase") != run.phase:
            raise CheckpointError(f"{last}: a {ckpt.get('phase')!r} run, cannot resume it as {run.phase!r}")
        run.load_state(ckpt)
    elif last.exists() and run.info.is_main:
        raise FileExistsError(f"{run.out}: a run already exists here; pass --resume to continue it "
                              "or choose another --name")
    if run.info.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        save_config(run.cfg, run.out / "config.yaml")


def train_source(cfg: TrainConfig, resume: bool = False, oracle: bool = False,
                 photometric: str = "none") -> Run:
    """Supervised training on source clips (``oracle``: on target-train labels instead)."""
    run = build_run(cfg, "source")
    prepare_out(run, resume)
    spec = cfg.data.oracle if oracle else cfg.data.source
    if not spec:
        raise ValueError(f"data.{'oracle' if oracle else 'source'} is empty: give a dataset spec")
    size = cfg.data.target_size if oracle else cfg.data.source_size
    stream = clip_stream(run, spec, size, photometric, labels=True, with_flow=False, seed_offset=0)
    train_loop(run, source_step, [stream], cfg.optim.iters)
    return run


def train_vat(cfg: TrainConfig, init: str | None = None, resume: bool = False) -> Run:
    """Phase 1: source CE + video adversarial training on flow-aligned consecutive predictions."""
    if not cfg.data.source or not cfg.data.target:
        raise ValueError("vat needs data.source and data.target dataset specs")
    run = build_run(cfg, "vat", init)
    prepare_out(run, resume)
    with_flow = cfg.vat.video_disc
    bs = cfg.vat.batch_size
    src = clip_stream(run, cfg.data.source, cfg.data.source_size, cfg.vat.source_augment, True, with_flow, 0,
                      batch_size=bs)
    tgt = clip_stream(run, cfg.data.target, cfg.data.target_size, "none", False, with_flow, 1, batch_size=bs)
    if not with_flow:  # image-level adversarial training only: no flow needed
        src, tgt = _zero_flow(src), _zero_flow(tgt)
    train_loop(run, vat_step, [src, tgt], cfg.optim.iters)
    return run


def _zero_flow(stream: Iterator[dict[str, Tensor]]) -> Iterator[dict[str, Tensor]]:
    for batch in stream:
        f = batch["frame"]
        yield {**batch, "flow": torch.zeros(f.shape[0], 2, *f.shape[-2:])}


def train_vst(cfg: TrainConfig, init: str, resume: bool = False) -> Run:
    """Phase 2: rounds of (pseudo labels from the current model, self-training on target)."""
    from vsda_train.vst import make_pseudo_labels

    if not cfg.data.target:
        raise ValueError("vst needs data.target (the unlabelled target clips)")
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
        stream = clip_stream(run, cfg.data.target, cfg.data.target_size, cfg.vst.augment, labels=False,
                             with_flow=False, seed_offset=2 + r, label_fn=PseudoLabels(folder))
        end = total if r == rounds - 1 else (r + 1) * per_round
        train_loop(run, vst_step, [stream], end, desc=f"vst round {r + 1}/{rounds}")
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


def with_iters(cfg: TrainConfig, iters: int) -> TrainConfig:
    return replace(cfg, optim=replace(cfg.optim, iters=iters))
