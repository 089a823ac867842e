"""One training run's state: model, optimisers, discriminators, BatchNorm mode, checkpoints and resume."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vsda_deploy.labels import get_label_space
from vsda_deploy.preprocess import Normalization, preset
from vsda_train import engine
from vsda_train.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from vsda_train.config import ConfigError, TrainConfig, save_config
from vsda_train.discriminator import ImageDiscriminator, VideoDiscriminator
from vsda_train.models import create_model

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
    teacher: Any = None  # the mean teacher of vst.teacher=ema (vsda_train.teacher.EMATeacher)
    thresholds: Any = None  # its running class-balanced thresholds (vsda_train.teacher.RunningThresholds)

    @property
    def norm(self) -> Normalization:
        """Return the input normalisation of the model (``model.preprocess``)."""
        return preset(self.cfg.model.preprocess)

    def state(self) -> dict[str, Any]:
        """Return the checkpoint dict (plain tensors and primitives: ``weights_only`` loads it)."""
        size = self.cfg.data.predict_size
        return {
            "phase": self.phase,
            "iteration": self.it,
            "model": engine.unwrap(self.model).state_dict(),
            "model_config": engine.unwrap(self.model).config,
            "label_space": self.cfg.data.label_space,
            **({"eval_size": list(size)} if size else {}),  # the scale to run the model at (export, vsda-infer)
            "optimizer": self.optimizer.state_dict(),
            "discs": {k: engine.unwrap(d).state_dict() for k, d in self.discs.items()},
            "d_opts": {k: o.state_dict() for k, o in self.d_opts.items()},
            "scalers": {k: s.state_dict() for k, s in self.precision.scalers.items()},
            "rng": rng_state(self.np_rng),
            "config": self.cfg.to_dict(),
            "extra": self.extra,
            **({"teacher": self.teacher.state_dict()} if self.teacher is not None else {}),
            **({"thresholds": self.thresholds.state()} if self.thresholds is not None else {}),
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
        if self.teacher is not None:
            self.teacher.load_state_dict(ckpt["teacher"])
        if self.thresholds is not None:
            self.thresholds.load(ckpt["thresholds"])


# --- BatchNorm modes ----------------------------------------------------------------------


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Return the BatchNorm layers of ``model``."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_bn_affine(model: nn.Module, mode: str) -> None:
    """Stop training the BatchNorm affine weights in the ``frozen_affine`` and ``frozen`` modes."""
    if mode in ("frozen_affine", "frozen"):
        for bn in batchnorms(model):
            for p in bn.parameters():
                p.requires_grad_(False)


def set_train_mode(run: Run) -> None:
    """Put the model in training mode; ``frozen_stats`` and ``frozen`` keep BatchNorm's running statistics."""
    run.model.train()
    if run.cfg.model.bn in ("frozen_stats", "frozen"):
        for bn in batchnorms(run.model):
            bn.eval()


# --- building a run -----------------------------------------------------------------------


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
    elif cfg.model.bn != "train" and not cfg.model.pretrained and info.is_main:
        warnings.warn(f"model.bn={cfg.model.bn} without model.pretrained or --init: BatchNorm keeps its initial "
                      "statistics or weights; the DeepLabV2 recipe expects an ImageNet backbone and may diverge "
                      "without it", stacklevel=2)
    freeze_bn_affine(model, cfg.model.bn)
    model.to(device)
    if info.enabled and device.type == "cuda" and cfg.model.sync_bn and cfg.model.bn in ("train", "frozen_affine"):
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
    """Create the video (and optional per-frame and auxiliary-level) discriminators with their Adam optimisers."""
    vat, c = run.cfg.vat, num_classes_of(run.cfg)
    made: dict[str, nn.Module] = {}
    if vat.video_disc:
        made["video"] = VideoDiscriminator(c, vat.disc_width)
    if vat.image_disc:
        made["image"] = ImageDiscriminator(c, vat.disc_width)
    if vat.aux_adv_weight > 0:
        if getattr(engine.unwrap(run.model), "aux_head", None) is None:
            raise ConfigError("vat.aux_adv_weight > 0 needs a model with an auxiliary head "
                             "(e.g. model.kwargs.multi_level=true for DeepLabV2)")
        made["video_aux"] = VideoDiscriminator(c, vat.disc_width)
    if not made:
        raise ConfigError("vat: enable vat.video_disc and/or vat.image_disc")
    for name, disc in made.items():
        disc.to(run.device)
        run.discs[name] = engine.wrap_ddp(disc, run.info, run.device)
        opt = torch.optim.Adam(disc.parameters(), lr=vat.disc_lr, betas=vat.disc_betas)
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
        run.d_opts[name] = opt


# --- checkpoints --------------------------------------------------------------------------


def checkpoint(run: Run) -> None:
    """Write ``last.pt`` atomically on rank 0; every rank waits for it."""
    if run.info.is_main:
        save_checkpoint(run.out / "last.pt", run.state())
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


__all__ = ["PHASES", "Run", "TrainForward", "build_run", "checkpoint", "load_init", "prepare_out", "set_train_mode"]
