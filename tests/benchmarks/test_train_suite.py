"""The train suite on a tiny synthetic benchmark: rows, statuses, per-device defaults, JSON round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks.suite import FAILED, INACCURATE, OK, SuiteOptions, SuiteResult
from benchmarks.suites import train
from tests.helpers import tiny_synth

MODEL = "ddrnet23_slim:8"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "bench"
    return tiny_synth(out, frames=6)


def options(synth: Path) -> SuiteOptions:
    return SuiteOptions(data=f"cityscapes-vps:{synth}/target", device="cpu", threads=1)


@pytest.fixture(scope="module")
def result(synth: Path) -> SuiteResult:
    return train.run(options(synth), models=MODEL, amp="none,fp16", sizes="64x128", iters=2, warmup=1,
                     source=f"viper:{synth}/source")


def test_three_phases_run_with_consistent_numbers(result: SuiteResult) -> None:
    ok = {r.name: r for r in result.rows if r.values.get("crop") == "64x128" and " · none · " in r.name}
    assert sorted(ok) == [f"ddrnet23_slim w8 · {p} · none · 64x128" for p in ("source", "vat", "vst")]
    for name, row in ok.items():
        v = row.values
        assert row.status == OK, (name, row.reason)
        assert v["it_s"] > 0 and v["ms_p50"] > 0 and v["ms_iqr"] >= 0 and v["iters"] == 2
        assert math.isclose(v["it_s"], 1000 / v["ms_p50"], rel_tol=1e-6)
        # a whole Python + torch process: tens of MiB at least, far below the machine's memory
        assert 50 < v["peak_mem_mb"] < 8000
    # synth_edge.yaml: batch 4, vat.batch_size 2; VAT segments 2 frames x 2 domains x batch
    assert [ok[f"ddrnet23_slim w8 · {p} · none · 64x128"].values["batch"] for p in train.PHASES] == [4, 2, 4]
    vat = ok["ddrnet23_slim w8 · vat · none · 64x128"].values
    assert math.isclose(vat["frames_s"], 8 * vat["it_s"], rel_tol=1e-9)
    src = ok["ddrnet23_slim w8 · source · none · 64x128"].values
    assert math.isclose(src["frames_s"], 4 * src["it_s"], rel_tol=1e-9)


def test_fp16_on_cpu_is_a_failed_row_with_its_reason(result: SuiteResult) -> None:
    fp16 = [r for r in result.rows if " · fp16 · " in r.name]
    assert len(fp16) == 3
    assert all(r.status == FAILED and r.reason == train.FP16_CPU for r in fp16)
    assert all("it_s" not in r.values for r in fp16)


def test_rows_survive_a_json_round_trip(result: SuiteResult, tmp_path: Path) -> None:
    back = SuiteResult.from_json(json.loads(json.dumps(result.to_json())))
    assert back.rows == result.rows and back.columns == result.columns
    assert any("peak RSS" in n for n in back.notes)
    png = train.plot(result, tmp_path / "train.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_plan_per_device() -> None:
    combos, crops = train.default_plan("cpu")
    edge16, edge32, r101 = (train.ModelChoice(train.EDGE, 16), train.ModelChoice(train.EDGE, 32),
                            train.ModelChoice(train.R101))
    assert [(c.model, c.amp) for c in combos] == [(edge16, "none"), (edge16, "bf16"), (edge32, "none"),
                                                  (edge32, "bf16"), (r101, "none")]
    assert crops == [((128, 256), (128, 256))]
    assert [(c.iters, c.warmup) for c in combos] == [(10, 2)] * 4 + [(3, 1)]
    combos, crops = train.default_plan("cuda:0")
    assert [(c.model, c.amp) for c in combos] == [(m, a) for m in (r101, edge32) for a in ("none", "bf16", "fp16")]
    assert crops == [((720, 1280), (512, 1024))]
    assert {(c.iters, c.warmup) for c in combos} == {(20, 5)}
    combos, crops = train.default_plan("cuda:0", models="ddrnet23_slim:8", amp="bf16", sizes="64x128,96x192",
                                       iters=3, warmup=1)
    assert [(c.model, c.amp, c.iters, c.warmup) for c in combos] == [(train.ModelChoice(train.EDGE, 8), "bf16", 3, 1)]
    assert crops == [((64, 128), (64, 128)), ((96, 192), (96, 192))]


@pytest.mark.parametrize("kwargs, message", [({"models": "ddrnet23_slim:0"}, "positive integer"),
                                             ({"amp": "fp8"}, "choose from none, bf16, fp16"),
                                             ({"sizes": "100x200"}, "multiples of 32")])
def test_bad_options_are_one_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train.default_plan("cpu", **kwargs)


def test_missing_data_says_make_demo(tmp_path: Path) -> None:
    opts = SuiteOptions(data=f"cityscapes-vps:{tmp_path}/target", device="cpu")
    with pytest.raises(SystemExit, match="make demo"):
        train.run(opts, models=MODEL, source=f"viper:{tmp_path}/source")


def job(synth: Path, phase: str = "source") -> train.RowJob:
    combo = train.Combo(train.ModelChoice(train.EDGE, 8), "none", 1, 0)
    return train.RowJob(combo, phase, (64, 128), (64, 128), "cpu", f"viper:{synth}/source",
                        f"cityscapes-vps:{synth}/target", threads=1)


def test_out_of_memory_is_a_failed_row_naming_batch_and_crop(synth: Path, monkeypatch) -> None:
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train, "collect_batches", oom)
    row = train.to_row(job(synth), train.measure(job(synth)))
    assert (row.status, row.reason) == (FAILED, "out of memory at batch 4, crop 64x128")


def test_non_finite_loss_is_inaccurate(synth: Path) -> None:
    row = train.to_row(job(synth, "vat"), {"status": OK, "times": [10.0, 30.0], "finite": False, "batch": 2,
                                           "peak_mem_mb": 100.0})
    assert (row.status, row.reason) == (INACCURATE, "loss is not finite")
    assert row.values["ms_p50"] == 20.0 and row.values["frames_s"] == 8 * 50.0
