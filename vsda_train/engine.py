"""What every training phase needs: devices, DDP, deterministic data streams, LR, AMP, logs.

The phases (``vsda_train/phases.py``) read top to bottom; this module holds the plumbing
they share so that each step function stays one screen long.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from vsda_train.config import ConfigError, TrainConfig
from vsda_train.transforms import ClipTransform

# --- distributed ------------------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    """Rank and world size of this process (1 process without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistInfo:
    """Join the torchrun process group when launched by torchrun; gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def leave_distributed() -> None:
    """Wait for every rank, then leave the process group.

    A rank that exits while a gloo peer is still connected to it makes that peer abort, so every phase ends here.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def resolve_device(device: str, info: DistInfo) -> torch.device:
    """Return the torch device of this rank (``cuda`` means this rank's local GPU)."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine")
        return torch.device("cuda", info.local_rank if info.enabled else torch.device(device).index or 0)
    return torch.device(device)


def wrap_ddp(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """Return ``module`` wrapped in DistributedDataParallel when running distributed."""
    if not info.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    """Return the module inside DDP / torch.compile wrappers."""
    module = getattr(module, "_orig_mod", module)
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def seed_everything(seed: int, deterministic: bool = False) -> np.random.Generator:
    """Seed torch, random and numpy; return the run's numpy Generator."""
    torch.manual_seed(seed)
    random.seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return np.random.default_rng(seed)


# --- deterministic, resumable data streams ---------------------------------------------


class GlobalBatchSampler(Sampler):
    """Yield batches of ``(index, key)`` forever; batch ``it`` is a function of the seed and ``it`` alone.

    Subclasses give :meth:`global_batch`: the ``batch_size * world_size`` sample indices of
    iteration ``it`` and the key that seeds their augmentation. Starting at ``start_iter``
    reproduces exactly the batches an uninterrupted run would have drawn from that iteration
    on, which is what makes ``--resume`` exact. Under DDP each rank takes its own slice.
    """

    def __init__(self, batch_size: int, seed: int, start_iter: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.bs, self.seed, self.start, self.rank, self.world = batch_size, seed, start_iter, rank, world_size

    def global_batch(self, it: int) -> tuple[Sequence[int], int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        it = self.start
        while True:
            batch, key = self.global_batch(it)
            yield [(int(i), key) for i in batch[self.rank * self.bs:(self.rank + 1) * self.bs]]
            it += 1

    def __len__(self) -> int:  # infinite stream; DataLoader only needs a number
        return 1 << 62


class ClipBatchSampler(GlobalBatchSampler):
    """Batches of ``(index, epoch)`` in an order fixed by seed and epoch (a seeded shuffle per epoch)."""

    def __init__(self, n: int, batch_size: int, seed: int, start_iter: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if n == 0:
            raise ValueError("ClipBatchSampler: the dataset has no samples")
        super().__init__(batch_size, seed, start_iter, rank, world_size)
        self.n = n
        self.per_epoch = max(1, n // (batch_size * world_size))

    def _epoch_order(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        reps = math.ceil(self.bs * self.world * self.per_epoch / self.n)
        return np.tile(order, reps)

    def global_batch(self, it: int) -> tuple[Sequence[int], int]:
        epoch, step = divmod(it, self.per_epoch)
        g = self.bs * self.world
        return self._epoch_order(epoch)[step * g:(step + 1) * g], epoch


class TrainClips(Dataset):
    """A clip dataset with a training transform; ``(index, epoch)`` fixes the sample's randomness."""

    def __init__(self, clips: Any, transform: ClipTransform, seed: int,
                 labels: Any | None = None) -> None:
        self.clips, self.transform, self.seed = clips, transform, seed
        self.labels = labels  # optional callable meta -> label (pseudo labels)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, epoch = key
        frame, prev, label, flow, meta = self.clips[index]
        if self.labels is not None:
            label = self.labels(meta)
        rng = np.random.default_rng([self.seed, epoch, index])
        return self.transform(frame, prev, label, flow, rng, flow_fw=meta.get("flow_fw"),
                              instance=meta.get("instance"))


def infinite_loader(dataset: TrainClips, cfg: TrainConfig, start_iter: int, info: DistInfo,
                    seed_offset: int = 0, batch_size: int | None = None,
                    sampler: Sampler | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Return an endless iterator of collated training batches, resumable at ``start_iter``.

    ``sampler`` (a resumable batch sampler, e.g. rare-class sampling) replaces the seeded shuffle.
    """
    if sampler is None:
        sampler = ClipBatchSampler(len(dataset), batch_size or cfg.data.batch_size, cfg.run.seed + seed_offset,
                                   start_iter, info.rank, info.world_size)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.data.workers,
                        persistent_workers=cfg.data.workers > 0)
    return iter(loader)


# --- optimisation -----------------------------------------------------------------------


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Return SGD (or AdamW) over the model's parameter groups (heads at ``head_lr_mult``)."""
    groups = unwrap(model).param_groups(cfg.optim.lr, cfg.optim.head_lr_mult)
    for g in groups:
        g["initial_lr"] = g["lr"]
    if cfg.optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                               weight_decay=cfg.optim.weight_decay)
    if cfg.optim.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    raise ConfigError(f"optim.optimizer {cfg.optim.optimizer!r}: choose sgd or adamw")


def poly_lr(optimizer: torch.optim.Optimizer, it: int, total: int, power: float, warmup: int = 0) -> float:
    """Set every group's lr to ``initial_lr * (1 - it/total)^power`` (linear warm-up); return factor."""
    factor = (1 - min(it, total - 1) / total) ** power
    if warmup and it < warmup:
        factor *= (it + 1) / warmup
    for g in optimizer.param_groups:
        g["lr"] = g["initial_lr"] * factor
    return factor


@dataclass
class Precision:
    """Autocast context and gradient scaler for ``--amp none|bf16|fp16``."""

    mode: str
    device: torch.device
    scalers: dict[str, torch.amp.GradScaler] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("none", "bf16", "fp16"):
            raise ConfigError(f"--amp {self.mode!r}: choose none, bf16 or fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.mode == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.mode == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def scaler(self, name: str) -> torch.amp.GradScaler:
        if name not in self.scalers:
            enabled = self.mode == "fp16"
            self.scalers[name] = torch.amp.GradScaler(self.device.type, enabled=enabled)
        return self.scalers[name]

    def backward(self, name: str, loss: torch.Tensor) -> None:
        """Backward of ``loss`` through this name's scaler (gradients accumulate until ``update``)."""
        self.scaler(name).scale(loss).backward()

    def update(self, name: str, optimizer: torch.optim.Optimizer, params: Any = None,
               clip: float | None = None) -> None:
        """Optional gradient clipping, then the optimiser step, through this name's scaler."""
        scaler = self.scaler(name)
        if clip is not None and params is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(optimizer)
        scaler.update()

    def step(self, name: str, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
             params: Any = None, clip: float | None = None) -> None:
        """Backward, optional gradient clipping, optimiser step, through this name's scaler."""
        self.backward(name, loss)
        self.update(name, optimizer, params, clip)


# --- logging ----------------------------------------------------------------------------


class MetricLog:
    """CSV log of loss terms (and TensorBoard when installed), rank 0 only."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled
        self._writer = None
        self._fields: list[str] | None = None
        if enabled:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter  # optional

                self._writer = SummaryWriter(str(path.parent / "tb"))

    def write(self, it: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"iter": it, "time": round(time.time(), 3), **{k: round(v, 6) for k, v in values.items()}}
        new = not self.path.exists()
        if self._fields is None:
            self._fields = list(row)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self._writer is not None:
            for k, v in values.items():
                self._writer.add_scalar(k, v, it)


def mean_over_ranks(values: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Return loss values averaged over ranks (for logging only)."""
    if not info.enabled or not values:
        return values
    t = torch.tensor(list(values.values()), device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(values, t.tolist())}
