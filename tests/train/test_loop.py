"""The LR schedule (poly horizon apart from the stop point, discriminator schedule) and gradient clipping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import one_torch_thread  # noqa: F401 (fixture)
from vsda_train.config import load_config
from vsda_train.loop import set_learning_rates
from vsda_train.run import build_run


def _run(tmp_path: Path, phase: str, *sets: str):
    cfg = load_config(None, ["model.kwargs={width: 8}", "run.name=lr", f"run.out_dir={tmp_path}",
                             "optim.lr=0.01", "optim.head_lr_mult=10", "vat.disc_lr=0.001", *sets])
    return build_run(cfg, phase)


@pytest.mark.parametrize("horizon", [None, 250000])
def test_poly_lr_runs_over_the_horizon_not_the_stop_point(tmp_path: Path, horizon: int | None) -> None:
    sets = ["optim.iters=40000", *([f"optim.poly_horizon={horizon}"] if horizon else [])]
    run = _run(tmp_path, "source", *sets)
    run.it = 20000
    set_learning_rates(run)
    h = horizon or 40000
    factor = (1 - 20000 / h) ** 0.9
    backbone, head = run.optimizer.param_groups
    assert backbone["lr"] == pytest.approx(0.01 * factor) and head["lr"] == pytest.approx(0.1 * factor)


def test_constant_head_schedule_keeps_the_heads_at_ten_times_the_base_lr(tmp_path: Path) -> None:
    """DA-VSN / TPS: ADVENT's poly update touches param groups 0 and 1 only, their heads sit in group 2."""
    run = _run(tmp_path, "source", "optim.iters=40000", "optim.poly_horizon=250000", "optim.head_schedule=constant")
    run.it = 20000
    set_learning_rates(run)
    backbone, head = run.optimizer.param_groups
    assert backbone["lr"] == pytest.approx(0.01 * (1 - 20000 / 250000) ** 0.9) and head["lr"] == pytest.approx(0.1)


@pytest.mark.parametrize(("schedule", "factor"), [("constant", 1.0), ("poly", (1 - 100 / 250000) ** 0.9)])
def test_discriminator_lr_schedule(tmp_path: Path, schedule: str, factor: float) -> None:
    run = _run(tmp_path, "vat", "optim.iters=40000", "optim.poly_horizon=250000", f"vat.disc_schedule={schedule}")
    run.it = 100
    set_learning_rates(run)
    assert run.d_opts["video"].param_groups[0]["lr"] == pytest.approx(0.001 * factor)


def test_grad_clip_bounds_the_segmenter_gradient(tmp_path: Path) -> None:
    from vsda_train.steps import source_step

    def grad_norm(clip: str) -> float:
        run = _run(tmp_path, "source", f"optim.grad_clip={clip}", "optim.lr=0")
        batch = {"frame": torch.randn(2, 3, 32, 64), "label": torch.randint(0, 15, (2, 32, 64))}
        torch.manual_seed(0)
        source_step(run, batch)
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in run.model.parameters()
                                                           if p.grad is not None])))

    free = grad_norm("none")
    assert free > 0.05 and grad_norm("0.05") == pytest.approx(0.05, rel=1e-3)


def test_disc_grad_clip_reaches_each_discriminator(tmp_path: Path, monkeypatch) -> None:
    from vsda_train import steps

    run = _run(tmp_path, "vat", "vat.disc_grad_clip=1.0", "vat.disc_width=8")
    calls = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, clip: calls.append((list(params), clip)))
    ctx = {d: {"main": (torch.rand(1, 15, 32, 32), torch.rand(1, 15, 32, 32))} for d in ("src", "tgt")}
    steps.discriminator_step(run, ctx)
    disc_params = list(run.discs["video"].parameters())
    assert len(calls) == 1 and calls[0][1] == 1.0 and len(calls[0][0]) == len(disc_params)
