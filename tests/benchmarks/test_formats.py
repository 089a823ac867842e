"""The formats suite (benchmarks/suites/formats.py): every row, its status and reason, its numbers, the
timing passes, an ONNX ``--model``, a failing conversion, and the files the CLI writes.

The model is a DDRNet-23-slim of width 8 fitted for a few steps on a tiny synthetic Cityscapes-VPS split
(logits with a trained model's margins, so FP32 / FP16 parity is meaningful); the whole module runs the
suite three times on 64x128 frames with 5 timed runs.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner
from vsda_export.onnx_export import export_fp32, load_for_export, model_meta

from benchmarks import suite as S
from benchmarks.__main__ import app
from benchmarks.suites import formats
from benchmarks.suites.formats_rows import NEEDS_CHECKPOINT, Loaded
from tests.export.test_parity import fit_checkpoint
from tests.helpers import one_torch_thread  # noqa: F401 - autouse: torch on one thread
from vsda_train.synth.config import SynthConfig
from vsda_train.synth.generate import generate

SIZE = (64, 128)
NAMES = [
    "PyTorch eager FP32", "PyTorch eager FP16", "PyTorch compiled", "PyTorch compiled + CUDA graphs",
    "ONNX FP32 · ORT CPU", "ONNX FP16 · ORT CPU", "ONNX INT8 QDQ (TensorRT-ready) · ORT CPU",
    "ONNX INT8 (CPU u8) · ORT CPU",
    "ONNX FP32 · ORT CUDA", "ONNX FP16 · ORT CUDA", "ONNX INT8 QDQ (TensorRT-ready) · ORT CUDA",
    "ONNX FP32 · ORT TensorRT-EP", "ONNX FP16 · ORT TensorRT-EP", "ONNX INT8 QDQ (TensorRT-ready) · ORT TensorRT-EP",
    "TensorRT FP16 engine", "TensorRT INT8 engine",
]
ORT_CPU = NAMES[4:8]
PROVIDERS = {"ORT CUDA": "CUDAExecutionProvider", "ORT TensorRT-EP": "TensorrtExecutionProvider"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic target domain: one train video (calibration) and one labelled val video."""
    out = tmp_path_factory.mktemp("bench") / "synth"
    generate(out, SynthConfig(width=SIZE[1], height=SIZE[0], source_clips=1, source_val_clips=0,
                              target_train_clips=1, target_val_clips=1, frames=8, label_every=1))
    return out / "target"


@pytest.fixture(scope="module")
def checkpoint(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_checkpoint(bench, "ddrnet23_slim", 8, 60, tmp_path_factory.mktemp("ckpt") / "last.pt")


def _opts(model: Path, bench: Path, **kw: object) -> S.SuiteOptions:
    return S.SuiteOptions(model=str(model), data=f"cityscapes-vps:{bench}", sizes=(SIZE,), runs=5, warmup=1,
                          threads=1, **kw)


@pytest.fixture(scope="module")
def result(checkpoint: Path, bench: Path) -> S.SuiteResult:
    return formats.run(_opts(checkpoint, bench), calib_frames=4)


def _rows(result: S.SuiteResult) -> dict[str, S.Row]:
    return {r.name: r for r in result.rows}


def test_rows_in_order_with_the_cpu_reasons(result: S.SuiteResult) -> None:
    rows = _rows(result)
    assert [r.name for r in result.rows] == NAMES
    assert result.extra["name_header"] == "Format" and result.suite == "formats"
    assert rows["PyTorch eager FP16"].status == S.FAILED
    assert rows["PyTorch eager FP16"].reason.startswith("fp16 eager needs a CUDA device")
    assert (rows["PyTorch compiled"].status, rows["PyTorch compiled"].reason) == (
        S.FAILED, "skipped on CPU (pass --compile)")
    assert rows["PyTorch compiled + CUDA graphs"].status == S.FAILED


def test_gpu_rows_fail_with_a_reason_where_the_runtime_is_missing(result: S.SuiteResult) -> None:
    available = ort.get_available_providers()
    for row in result.rows:
        provider = next((p for label, p in PROVIDERS.items() if row.name.endswith(label)), None)
        if provider is not None and provider not in available:
            assert row.status == S.FAILED and "onnxruntime-gpu" in row.reason, row
        if row.name.startswith("TensorRT") and importlib.util.find_spec("tensorrt") is None:
            assert row.status == S.FAILED and row.reason.startswith("tensorrt is not installed"), row
        if row.status == S.FAILED:
            assert row.reason and not row.values


def test_fp32_rows_match_the_reference(result: S.SuiteResult) -> None:
    rows = _rows(result)
    torch_row, onnx_row = rows["PyTorch eager FP32"], rows["ONNX FP32 · ORT CPU"]
    assert torch_row.status == onnx_row.status == S.OK
    assert torch_row.values["miou"] > 10  # fitted: far above chance, so equal mIoUs mean equal predictions
    assert abs(torch_row.values["miou"] - onnx_row.values["miou"]) < 0.01
    assert abs(torch_row.values["vpq"] - onnx_row.values["vpq"]) < 0.01
    assert torch_row.values["max_abs"] == 0.0 and torch_row.values["agreement"] == 100.0  # it is the reference
    assert onnx_row.values["max_abs"] <= 1e-4 and onnx_row.values["agreement"] >= 99.99
    assert abs(torch_row.values["size_mb"] - onnx_row.values["size_mb"]) < 0.1 * torch_row.values["size_mb"]
    assert rows["ONNX FP16 · ORT CPU"].values["size_mb"] < 0.6 * onnx_row.values["size_mb"]


def test_verdicts_follow_the_tolerances(result: S.SuiteResult) -> None:
    ref = _rows(result)["PyTorch eager FP32"].values["miou"]
    for name in ORT_CPU[1:]:
        row = _rows(result)[name]
        assert row.status in (S.OK, S.INACCURATE), row
        v = row.values
        if "FP16" in name:
            within = v["agreement"] >= 99.5 and abs(v["miou"] - ref) <= 0.3
        else:
            within = v["agreement"] >= 98.0 and ref - v["miou"] <= 1.0
        assert (row.status == S.OK) == within, row
        assert row.status == S.OK or "agreement" in row.reason or "mIoU" in row.reason


def test_every_row_that_ran_is_timed(result: S.SuiteResult) -> None:
    key = f"{SIZE[0]}x{SIZE[1]}"
    ran = [r for r in result.rows if r.status != S.FAILED]
    assert {"PyTorch eager FP32", *ORT_CPU} <= {r.name for r in ran}  # and the GPU rows where a GPU runtime is
    for row in ran:
        p50 = row.values[f"{key}_p50"]
        assert p50 > 0 and row.values[f"{key}_iqr"] >= 0
        assert math.isclose(row.values[f"{key}_fps"], 1000 / p50)
    assert [c.key for c in result.columns] == ["size_mb", "miou", "vpq", f"{key}_p50", f"{key}_fps"]


def test_a_failed_conversion_fails_only_its_rows(checkpoint: Path, bench: Path, result: S.SuiteResult,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("fp16 conversion broke\nsecond line")

    monkeypatch.setattr("vsda_export.precision.convert_fp16", broken)
    forced = formats.run(replace(_opts(checkpoint, bench), runs=2, warmup=0), calib_frames=4)
    before, after = _rows(result), _rows(forced)
    assert after["ONNX FP16 · ORT CPU"].status == S.FAILED
    assert after["ONNX FP16 · ORT CPU"].reason == "fp16 conversion broke"
    changed = [name for name in NAMES if before[name].status != after[name].status]
    # only the rows that load the FP16 file (on a GPU machine also its CUDA / TensorRT-EP rows)
    assert changed == [n for n in NAMES if n.startswith("ONNX FP16") and before[n].status != S.FAILED]
    assert "ONNX FP16 · ORT CPU" in changed
    assert after["ONNX INT8 (CPU u8) · ORT CPU"].values["miou"] == before["ONNX INT8 (CPU u8) · ORT CPU"].values["miou"]


def test_onnx_model_through_the_cli(checkpoint: Path, bench: Path, result: S.SuiteResult, tmp_path: Path) -> None:
    model, ckpt = load_for_export(checkpoint)
    onnx_path = export_fp32(model, tmp_path / "model.onnx", model_meta(model, ckpt, checkpoint, SIZE, dynamic=True))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["formats", "--model", str(onnx_path), "--data", f"cityscapes-vps:{bench}",
                                   "--sizes", "64x128", "--runs", "5", "--warmup", "1", "--threads", "1",
                                   "--calib-frames", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(next(out.glob("formats-*.json")).read_text())
    assert data["schema"] == S.SCHEMA and data["suite"] == "formats" and data["settings"]["calib_frames"] == 4
    rows = {r["name"]: r for r in data["rows"]}
    for name in NAMES[:4]:
        assert (rows[name]["status"], rows[name]["reason"]) == (S.FAILED, NEEDS_CHECKPOINT)
    assert all(rows[name]["status"] == S.OK for name in ORT_CPU[:2])  # FP32 is the reference itself
    assert all(rows[name]["status"] != S.FAILED for name in ORT_CPU)
    fp32 = rows["ONNX FP32 · ORT CPU"]["values"]
    assert fp32["agreement"] == 100.0 and fp32["max_abs"] == 0.0
    assert abs(fp32["miou"] - _rows(result)["PyTorch eager FP32"].values["miou"]) < 0.01
    png = next(out.glob("formats-*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "| ONNX FP32 · ORT CPU | ✅ |" in next(out.glob("formats-*.md")).read_text()


def test_missing_model_is_one_clear_error(bench: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"--model .*nope\.pt: not found"):
        formats.run(_opts(tmp_path / "nope.pt", bench))


# ---------------------------------------------------------------- timing passes, without timing


class _Fake:
    """A segmenter whose predict fails on demand; ``closed`` says whether it was released."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.closed = fail, False

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.fail:
            raise ValueError("input is fixed at 32x32\nmore")
        return batch

    def close(self) -> None:
        self.closed = True


def test_two_passes_pooled_and_disagreement_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    passes = iter([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.9, 1.1], [5.0, 5.0]])  # a and b, then a and b again
    calls = []

    def fake_time(fn: Callable[[], object], runs: int, warmup: int, sync: object = None) -> list[float]:
        calls.append(runs)
        fn()
        return next(passes)

    monkeypatch.setattr(formats, "time_calls", fake_time)
    res = S.SuiteResult("formats", [], [S.Row("a"), S.Row("b"), S.Row("c")])
    broken = _Fake(fail=True)
    loaded = {0: Loaded(_Fake(), 1.0, False), 1: Loaded(_Fake(), 1.0, False), 2: Loaded(broken, 1.0, False)}
    formats.time_rows(res, loaded, {(32, 32): np.zeros((1, 3, 32, 32), np.float32)}, runs=5, warmup=0)
    assert calls == [3, 3, 3, 2, 2]  # a, b, c (raised: dropped) in pass one, then a, b: half the runs each
    a, b, c = res.rows
    assert a.values["32x32_p50"] == 1.0 and math.isclose(a.values["32x32_fps"], 1000.0)
    assert b.values["32x32_p50"] == 1.0 and b.values["32x32_iqr"] == 4.0  # pooled [1, 1, 1, 5, 5]
    assert (c.status, c.reason) == (S.FAILED, "input is fixed at 32x32") and broken.closed
    assert len(res.notes) == 1
    assert res.notes[0].startswith("b at 32x32: the two timing passes disagree (p50 1.00 vs 5.00")
