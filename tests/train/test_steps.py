"""One VAT update whatever the crop sizes, checked against hand-written references under live BatchNorm."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from tests.helpers import one_torch_thread, tiny_synth  # noqa: F401 (fixture)
from tests.train.test_phases import write_config
from vsda_train import steps
from vsda_train.config import load_config
from vsda_train.discriminator import VideoDiscriminator
from vsda_train.losses import bce_to, supervised_loss, video_context
from vsda_train.phases import clip_stream
from vsda_train.run import build_run, set_train_mode


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_synth(tmp_path_factory.mktemp("synth") / "bench", frames=6)


def _run(synth: Path, tmp_path: Path, passes: str, bn: str = "train", target_size=(64, 96)):
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg_path = write_config(tmp_path / f"{passes}.yaml", synth, tmp_path / "runs",
                            model={"name": "ddrnet23_slim", "kwargs": {"width": 8}, "bn": bn},
                            data={"scale_range": [1.0, 1.0], "target_size": list(target_size)},
                            vat={"adv_weight": 0.5, "disc_width": 8, "passes": passes})
    cfg = load_config(cfg_path, [f"run.name={passes}"])
    torch.manual_seed(0)
    with pytest.warns(UserWarning) if bn != "train" else _nothing():
        run = build_run(cfg, "vat")
    src = next(clip_stream(run, "source", "none", True, True, 0))
    tgt = next(clip_stream(run, "target", "none", False, True, 1))
    return run, src, tgt


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


def _reference_grads(run, src, tgt, passes: str) -> dict[str, torch.Tensor]:
    """The segmenter's gradient of one VAT update, written out by hand (train mode, live BatchNorm)."""
    model = copy.deepcopy(run.model).train()
    disc: VideoDiscriminator = copy.deepcopy(run.discs["video"])
    for p in disc.parameters():
        p.requires_grad_(False)
    n, w, aux_w = src["frame"].shape[0], run.cfg.vat.adv_weight, run.cfg.optim.aux_weight

    def adv(out):
        ctx = video_context(out.logits[:n], out.logits[n:], tgt["flow"])
        return w * bce_to(disc(*ctx), steps.SOURCE)

    if passes == "per_domain":
        out = model.forward_train(torch.cat([src["frame"], src["prev"]]))
        aux = out.aux_logits[:n]
        supervised_loss(type(out)(out.logits[:n], aux, out.features), src["label"], aux_w).backward()
        out = model.forward_train(torch.cat([tgt["frame"], tgt["prev"]]))
        adv(out).backward()
    else:
        out = model.forward_train(torch.cat([src["frame"], src["prev"], tgt["frame"], tgt["prev"]]))
        loss = supervised_loss(type(out)(out.logits[:n], out.aux_logits[:n], out.features), src["label"], aux_w)
        half = type(out)(out.logits[2 * n:], out.aux_logits[2 * n:], out.features[2 * n:])
        (loss + adv(half)).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _step_grads(run, src, tgt) -> dict[str, torch.Tensor]:
    set_train_mode(run)
    (steps._vat_joint if run.cfg.vat.passes == "joint" else steps._vat_per_domain)(run, src, tgt)
    return {k: p.grad.clone() for k, p in run.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("passes", ["per_domain", "joint"])
def test_vat_update_equals_the_hand_written_reference_under_live_bn(synth, tmp_path, passes: str) -> None:
    run, src, tgt = _run(synth, tmp_path, passes)
    want = _reference_grads(run, src, tgt, passes)
    got = _step_grads(run, src, tgt)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-6, rtol=1e-4), k
    assert max(g.abs().max().item() for g in got.values()) > 1e-6  # not vacuous


def test_per_domain_and_joint_passes_are_different_methods_under_live_bn(synth, tmp_path) -> None:
    """Live BatchNorm normalises each domain with its own statistics in per-domain passes and with mixed
    statistics in one joint pass: the gradients differ; with BatchNorm statistics frozen they agree."""
    def grads(passes: str, bn: str) -> dict[str, torch.Tensor]:
        run, src, tgt = _run(synth, tmp_path / f"{passes}-{bn}", passes, bn)
        return _step_grads(run, src, tgt)

    live = [grads(p, "train") for p in ("per_domain", "joint")]
    gap = max((live[0][k] - live[1][k]).abs().max().item() for k in live[0])
    frozen = [grads(p, "frozen_stats") for p in ("per_domain", "joint")]
    same = max((frozen[0][k] - frozen[1][k]).abs().max().item() for k in frozen[0])
    scale = max(g.abs().max().item() for g in frozen[0].values())
    assert gap > 1e-2 * scale and same < 1e-5 * scale, (gap, same, scale)


def test_joint_pass_refuses_crops_of_two_sizes_and_per_domain_runs_them(synth, tmp_path) -> None:
    run, src, tgt = _run(synth, tmp_path / "joint", "joint", target_size=(48, 96))
    with pytest.raises(ValueError, match="vat.passes=joint needs source and target crops of one size"):
        steps.vat_step(run, src, tgt)
    run, src, tgt = _run(synth, tmp_path / "per", "per_domain", target_size=(48, 96))
    set_train_mode(run)
    logs = steps.vat_step(run, src, tgt)
    assert {"loss_seg", "loss_adv_video", "loss_d_video"} <= set(logs)
    assert all(math.isfinite(v) for v in logs.values())
