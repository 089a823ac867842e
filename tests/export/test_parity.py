"""Parity: the numbers it computes (known answers), its verdicts, and the real thing: FP32 / FP16 / INT8
exports of the edge model (DDRNet-23-slim) and a tiny DeepLabV2 pass their tolerances at two sizes
(dynamic) and one (static), through `vsda-export` and `run_export`.

The models are fitted (a few hundred steps) on the labelled frames of a synthetic Cityscapes-VPS split
and checked on that split, so their logits have the margins of a trained model on its own domain: what
is under test is the fidelity of the exported files, not generalisation. A random network's top-2 logits
are so close that any rounding flips its argmax, which says nothing about an export.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner
from vsda_export import ExportOptions, run_export
from vsda_export import parity as P
from vsda_export.cli import app

from tests.export.test_onnx_export import random_checkpoint
from tests.helpers import one_torch_thread  # noqa: F401 - autouse: torch on one thread
from vsda_deploy import cityscapes_vps as vps
from vsda_deploy.backends import OrtSegmenter, Segmenter, TorchSegmenter
from vsda_deploy.evaluation import list_gt
from vsda_deploy.model_meta import ModelMeta, read_onnx_meta
from vsda_deploy.pipeline import label_predictor, model_input
from vsda_deploy.preprocess import IMAGENET
from vsda_train.checkpoint import save_checkpoint
from vsda_train.models import create_model
from vsda_train.synth.config import SynthConfig
from vsda_train.synth.generate import generate

SIZE = (64, 128)  # the synthetic frames' own size
MODELS = {"ddrnet23_slim": (16, 300), "deeplabv2_r18": (8, 150)}  # width, fitting steps


# ---------------------------------------------------------------- known answers


def test_compare_logits_known_answer() -> None:
    ref = np.zeros((1, 3, 2, 2), np.float32)
    ref[0, 0] = 1.0  # class 0 everywhere
    out = ref.copy()
    out[0, 2, 1, 1] = 2.5  # one pixel of four now says class 2; largest change 2.5
    out[0, 1, 0, 0] = 0.25
    max_abs, agree = P.compare_logits(lambda x: ref, lambda x: out, [np.zeros(1)])
    assert max_abs == 2.5 and agree == 75.0
    with pytest.raises(ValueError, match=r"output shape \(1, 3, 2, 1\) differs from PyTorch's \(1, 3, 2, 2\)"):
        P.compare_logits(lambda x: ref, lambda x: out[..., :1], [np.zeros(1)])


def _row(precision: str, max_abs: float, agreement: float, miou: float | None = None) -> P.ParityRow:
    return P.ParityRow(f"/x/model_{precision}.onnx", precision, (64, 128), 8, max_abs, agreement, miou, 50.0)


def test_verdicts_carry_the_numbers() -> None:
    assert P.check_row(_row("fp32", 9e-5, 99.995, 50.0), P.TOLERANCES["fp32"]) == []
    assert P.check_row(_row("fp32", 2e-4, 99.9), P.TOLERANCES["fp32"]) == [
        "model_fp32.onnx at 64x128: max |Δlogits| 0.0002 > 0.0001",
        "model_fp32.onnx at 64x128: argmax agreement 99.900% < 99.99%"]
    assert P.check_row(_row("fp16", 0.3, 99.6, 50.25), P.TOLERANCES["fp16"]) == []
    assert P.check_row(_row("fp16", 0.3, 99.6, 50.4), P.TOLERANCES["fp16"]) == [
        "model_fp16.onnx at 64x128: mIoU change +0.40 points (limit ±0.3)"]  # a change either way counts
    assert P.check_row(_row("int8", 3.0, 98.5, 52.0), P.TOLERANCES["int8"]) == []  # a gain is no failure
    assert P.check_row(_row("int8", 3.0, 97.0, 48.5), P.TOLERANCES["int8"]) == [
        "model_int8.onnx at 64x128: argmax agreement 97.000% < 98.0%",
        "model_int8.onnx at 64x128: mIoU drop 1.50 points (limit 1.0)"]
    assert P.check_row(_row("int8", float("nan"), 99.0), P.TOLERANCES["int8"]) == []  # no max |Δ| bound
    assert P.parity_sizes((64, 128), True) == [(64, 128), (49, 97)]
    assert P.parity_sizes((512, 1024), False) == [(512, 1024)]


class HalfSegmenter(Segmenter):
    """A stand-in model: class 2 on the right half of whatever size it is run at."""

    def __init__(self, meta: ModelMeta, fixed: tuple[int, int] | None) -> None:
        super().__init__(Path("half.onnx"), meta, "cpu", "numpy")
        self.fixed_size, self.seen = fixed, []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.seen.append(batch.shape)
        out = np.zeros((1, 3, *batch.shape[2:]), np.float32)
        out[0, 2, :, batch.shape[3] // 2:] = 1.0
        return out


def test_files_are_labelled_as_vsda_infer_labels_frames() -> None:
    """Parity scores what label_predictor gives: the model's trained scale, logits resized back to the frame."""
    meta = ModelMeta(classes=("a", "b", "c"), palette=((0, 0, 0),) * 3, input_size=(8, 16))
    for fixed in ((8, 16), None):  # a static graph, and a dynamic one trained at 8x16
        seg = HalfSegmenter(meta, fixed)
        label = label_predictor(seg)(np.zeros((20, 40, 3), np.uint8))
        assert seg.seen == [(1, 3, 8, 16)] and label.shape == (20, 40) and label.dtype == np.uint8
        assert (label[:, :19] == 0).all() and (label[:, 21:] == 2).all()
    seg = HalfSegmenter(meta, None)
    label_predictor(seg, "native")(np.zeros((20, 40, 3), np.uint8))
    assert seg.seen == [(1, 3, 20, 40)]


def test_parity_runs_the_deployment_backends(tmp_path: Path) -> None:
    model = create_model("ddrnet23_slim", 15, width=8).eval()
    from vsda_export.onnx_export import export_fp32

    meta = ModelMeta(classes=tuple(f"c{i}" for i in range(15)), palette=((0, 0, 0),) * 15, input_size=(32, 48))
    path = export_fp32(model, tmp_path / "m.onnx", meta)
    assert isinstance(P.file_segmenter(path), OrtSegmenter)
    assert isinstance(P.reference_segmenter(model, meta), TorchSegmenter)
    frames = [np.random.default_rng(i).integers(0, 256, (40, 60, 3), dtype=np.uint8) for i in range(2)]
    rows = P.measure_parity(P.reference_segmenter(model, meta), [("fp32", path)], frames, [(32, 48), (25, 37)])
    assert [(r.size, r.frames) for r in rows] == [((32, 48), 2), ((25, 37), 2)]
    assert all(r.max_abs < 1e-3 and r.agreement > 99 for r in rows)


# ---------------------------------------------------------------- real exports


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic benchmark whose val split is labelled on every frame; INT8 calibrates on the
    train split, one frame per clip."""
    out = tmp_path_factory.mktemp("bench") / "synth"
    generate(out, SynthConfig(width=SIZE[1], height=SIZE[0], source_clips=1, source_val_clips=0,
                              target_train_clips=4, target_val_clips=2, frames=10, label_every=1))
    return out


def _labelled_val(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for g in (g for frames in list_gt(root, "val").values() for g in frames):
        xs.append(model_input(vps.read_rgb_png(g.image), None, IMAGENET)[0])
        ys.append(g.read()[0].astype(np.int64))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def fit_checkpoint(root: Path, name: str, width: int, steps: int, path: Path) -> Path:
    """Fit ``name`` on the labelled val frames (every other step at 3/4 size) and save it as the phases do."""
    x_all, y_all = _labelled_val(root)
    torch.manual_seed(0)
    model = create_model(name, 15, width=width)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-2, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        idx = torch.randint(0, len(x_all), (4,), generator=g)
        x, y = x_all[idx], y_all[idx]
        if step % 2:
            x = nn.functional.interpolate(x, scale_factor=0.75, mode="bilinear")
            y = nn.functional.interpolate(y[:, None].float(), size=x.shape[-2:], mode="nearest")[:, 0].long()
        loss = nn.functional.cross_entropy(model(x), y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    model.eval()
    return save_checkpoint(path, {"model": model.state_dict(), "model_config": model.config, "label_space": "viper15"})


@pytest.fixture(scope="module", params=sorted(MODELS))
def trained(request: pytest.FixtureRequest, bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    width, steps = MODELS[request.param]
    return fit_checkpoint(bench / "target", request.param, width, steps,
                          tmp_path_factory.mktemp(request.param) / "last.pt")


def test_dynamic_exports_pass_at_two_sizes_via_the_cli(trained: Path, bench: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # parity data must come from --calib's tree, not a data/ folder here
    spec = f"cityscapes-vps:{bench / 'target'}"
    res = CliRunner().invoke(app, [str(trained), "-o", "export/model.onnx", "--fp16", "--int8", "--calib", spec,
                                   "--input-size", "64x128", "--calib-frames", "16"])
    report = json.loads(Path("export/parity.json").read_text())
    assert res.exit_code == 0, res.output + res.stderr
    assert report["passed"] and report["failures"] == [] and report["data"] == spec
    rows = {(r["precision"], r["size"]): r for r in report["rows"]}
    assert sorted(rows) == [(p, s) for p in ("fp16", "fp32", "int8") for s in ("49x97", "64x128")]
    for (precision, size), row in rows.items():
        assert row["frames"] == 8 and row["passed"]
        assert row["agreement"] >= P.TOLERANCES[precision].agreement
        if size == "64x128":  # mIoU on the labelled split, through vsda_deploy's evaluation
            assert 20.0 < row["miou_reference"] <= 100.0 and row["miou"] is not None
        else:
            assert row["miou"] is None
    assert rows["fp32", "64x128"]["max_abs"] <= 1e-4 and rows["fp32", "49x97"]["max_abs"] <= 1e-4
    assert abs(rows["fp16", "64x128"]["miou_change"]) <= 0.3 and rows["int8", "64x128"]["miou_change"] >= -1.0
    assert 0 < rows["fp16", "64x128"]["max_abs"] < rows["int8", "64x128"]["max_abs"]  # each format rounds more
    precisions = [read_onnx_meta(f"export/{f}").precision for f in ("model.onnx", "model_fp16.onnx",
                                                                     "model_int8.onnx")]
    assert precisions == ["fp32", "fp16", "int8"]
    assert "parity vs PyTorch" in res.output and "model_int8.onnx" in res.output


def test_static_exports_pass_at_their_size(trained: Path, bench: Path, tmp_path: Path) -> None:
    spec = f"cityscapes-vps:{bench / 'target'}"
    report = run_export(ExportOptions(str(trained), str(tmp_path / "m.onnx"), input_size=SIZE, dynamic=False,
                                      fp16=True, int8=True, calib=spec, calib_frames=16, data=spec, parity_frames=4))
    assert report.failures == []
    assert [(r.precision, r.size, r.frames) for r in report.rows] == [
        ("fp32", SIZE, 4), ("fp16", SIZE, 4), ("int8", SIZE, 4)]
    assert all(r.miou is not None for r in report.rows)
    assert {read_onnx_meta(str(p)).dynamic for p in report.files.values()} == {False}


def test_missed_tolerance_exits_3_with_the_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = random_checkpoint(tmp_path / "c.pt")
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    (frames / "readme.txt").write_text("not an image: ignored")
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    monkeypatch.setitem(P.TOLERANCES, "fp32", P.Tolerance(max_abs=0.0, agreement=100.0))  # impossible
    res = CliRunner().invoke(app, [str(ckpt), "-o", str(tmp_path / "m.onnx"), "--input-size", "32x48",
                                   "--data", str(frames)])
    assert res.exit_code == 3
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("vsda-export: tolerance missed: m.onnx at 32x48: max |Δlogits| ")
    assert lines[0].endswith(" > 0")
    report = json.loads((tmp_path / "parity.json").read_text())
    assert not report["passed"] and report["failures"][0] == lines[0].removeprefix("vsda-export: tolerance missed: ")
    assert report["notes"] == [f"{frames}: no labelled Cityscapes-VPS val split; mIoU change not measured"]
    assert CliRunner().invoke(app, [str(ckpt), "-o", str(tmp_path / "m.onnx"), "--input-size", "32x48",
                                    "--data", str(frames), "--no-check"]).exit_code == 0
