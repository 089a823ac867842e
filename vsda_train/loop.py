"""The training loop shared by every phase: LR schedule, steps, logs, progress and checkpoints.

The poly schedule runs over ``optim.poly_horizon`` iterations (default: the stop point
``optim.iters``) and is a function of the run's iteration alone, so it is continuous across
VST rounds and across a resume. With ``vat.disc_schedule: poly`` the discriminators' learning
rate follows the same factor, as in the peers' recipe; ``optim.head_schedule: constant`` keeps
the heads at their initial rate, as DA-VSN's and TPS's optimisers end up doing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from vsda_train import engine
from vsda_train.run import Run, checkpoint, set_train_mode

CheckpointHook = Callable[[Run], None]


def lr_horizon(run: Run) -> int:
    """Return the iteration at which the poly LR reaches zero."""
    return run.cfg.optim.poly_horizon or run.cfg.optim.iters


def set_learning_rates(run: Run) -> float:
    """Set the segmenter's (and, with ``vat.disc_schedule: poly``, the discriminators') LR for ``run.it``."""
    optim = run.cfg.optim
    factor = engine.poly_lr(run.optimizer, run.it, lr_horizon(run), optim.poly_power, optim.warmup_iters)
    if optim.head_schedule == "constant":
        for g in run.optimizer.param_groups:
            if g.get("name") == "head":
                g["lr"] = g["initial_lr"]
    if run.cfg.vat.disc_schedule == "poly":
        for opt in run.d_opts.values():
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * factor
    return factor


def to_device(batch: dict[str, Tensor], run: Run) -> dict[str, Tensor]:
    """Return the batch on the run's device (channels-last frames when configured)."""
    out = {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}
    if run.cfg.run.channels_last:
        for k in ("frame", "prev"):
            out[k] = out[k].contiguous(memory_format=torch.channels_last)
    return out


def _progress(run: Run, desc: str, stop: int) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[rate]:.2f} it/s"), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[losses]}")]
    disable = not run.info.is_main or os.environ.get("VSDA_NO_PROGRESS") == "1"
    return Progress(*columns, disable=disable, transient=False)


def train_loop(run: Run, step: Callable[..., dict[str, float]], streams: list[Iterator[dict[str, Tensor]]],
               stop: int, desc: str = "", on_checkpoint: CheckpointHook | None = None) -> None:
    """Run ``step(run, *batches)`` from ``run.it`` to ``stop`` with the poly LR, logs and checkpoints.

    ``on_checkpoint(run)`` is called on every rank after each checkpoint is written.
    """
    cfg = run.cfg
    log = engine.MetricLog(run.out / "log.csv", run.info.is_main)
    with _progress(run, desc, stop) as bar:
        task = bar.add_task(desc or run.phase, total=stop, completed=run.it, rate=0.0, losses="")
        t0, it0 = time.perf_counter(), run.it
        while run.it < stop:
            set_learning_rates(run)
            batches = [to_device(next(s), run) for s in streams]
            set_train_mode(run)
            logs = step(run, *batches)
            run.optimizer.zero_grad(set_to_none=True)
            run.it += 1
            if run.it % cfg.run.log_every == 0 or run.it == stop:
                logs = engine.mean_over_ranks(logs, run.info, run.device)
                log.write(run.it, {**logs, "lr": run.optimizer.param_groups[0]["lr"]})
            rate = (run.it - it0) / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, completed=run.it, rate=rate,
                       losses=" ".join(f"{k.removeprefix('loss_')}={v:.3f}" for k, v in logs.items()))
            if run.it % cfg.run.ckpt_every == 0 or run.it == stop:
                checkpoint(run)
                if on_checkpoint is not None:
                    on_checkpoint(run)


__all__ = ["lr_horizon", "set_learning_rates", "to_device", "train_loop"]
