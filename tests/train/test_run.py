"""BatchNorm modes and what a checkpoint records (vsda_train/run.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import one_torch_thread  # noqa: F401 (fixture)
from vsda_train.config import load_config
from vsda_train.run import batchnorms, build_run, set_train_mode


def _run(tmp_path: Path, bn: str, **data):
    sets = [f"model.bn={bn}", "model.name=ddrnet23_slim", "model.kwargs={width: 8}", "run.name=bn",
            f"run.out_dir={tmp_path}", *(f"data.{k}={v}" for k, v in data.items())]
    cfg = load_config(None, sets)
    with pytest.warns(UserWarning, match="model.bn") if bn != "train" else _quiet():
        return build_run(cfg, "source")


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


@pytest.mark.parametrize(("bn", "affine_trains", "stats_move"), [
    ("train", True, True), ("frozen_affine", False, True), ("frozen_stats", True, False), ("frozen", False, False),
])
def test_bn_modes(tmp_path: Path, bn: str, affine_trains: bool, stats_move: bool) -> None:
    """frozen_affine is the peers' DeepLabV2 recipe: running statistics keep updating in train mode while the
    affine weights stay fixed (ADVENT / DA-VSN set requires_grad=False on BN parameters)."""
    run = _run(tmp_path, bn)
    layers = batchnorms(run.model)
    assert layers and all(p.requires_grad == affine_trains for m in layers for p in m.parameters())
    group_ids = {id(p) for g in run.optimizer.param_groups for p in g["params"] if p.requires_grad}
    assert all((id(m.weight) in group_ids) == affine_trains for m in layers)
    set_train_mode(run)
    before = [m.running_mean.clone() for m in layers]
    with torch.no_grad():
        run.model(torch.randn(2, 3, 64, 96))
    moved = any(not torch.equal(b, m.running_mean) for b, m in zip(before, layers))
    assert moved == stats_move


def test_checkpoint_records_the_eval_size_and_preprocess(tmp_path: Path) -> None:
    run = _run(tmp_path, "train", target_resize="[64,128]")
    state = run.state()
    assert state["eval_size"] == [64, 128]  # eval_size defaults to target_resize
    assert state["config"]["model"]["preprocess"] == "imagenet"
    run = _run(tmp_path, "train", target_resize="[64,128]", eval_size="[32,64]")
    assert run.state()["eval_size"] == [32, 64]
    assert "eval_size" not in _run(tmp_path, "train").state()  # frames at their own size: nothing to record
