"""The data suite on tiny frames: rows and columns, the workers-needed arithmetic, measured vs derived step rates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.suite import OK, write_result
from benchmarks.suites import data

TINY = ("data.source_resize=[36,64]", "data.target_resize=[32,64]", "data.source_size=[36,64]",
        "data.target_size=[32,64]")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    empty = tmp_path_factory.mktemp("results")
    return data.run(workers=(0, 1), clips=2, results=empty, sizes=data.Sizes((54, 96), (64, 128)), sets=TINY,
                    flow_workers=1)


def test_one_row_per_stream_and_worker_count(result):
    streams = ["source · vat (flow) · aug none", "source · source (no flow) · aug none",
               "target · vat (flow) · aug none", "target · vst (no flow) · aug strong"]  # the recipe's augmentation
    assert [r.name for r in result.rows] == [f"{s} · {w}" for s in streams for w in ("0 workers", "1 worker")]
    assert [c.key for c in result.columns] == ["workers", "clips_s", "ms_clip", "per_worker", "step_s", "rate_from",
                                               "need_s", "workers_needed", "load1"]
    for row in result.rows:
        v = row.values
        assert row.status == OK, row.reason
        assert v["clips_s"] > 0 and math.isclose(v["ms_clip"], 1e3 / v["clips_s"])
        assert math.isclose(v["per_worker"], v["clips_s"] / max(v["workers"], 1))
        assert v["rate_from"] == "derived" and math.isclose(v["need_s"], v["step_s"])  # batch 1
        assert v["workers_needed"] == math.ceil(v["need_s"] / v["per_worker"])


def test_stage_times_cover_every_stream(result):
    stages = result.extra["stages_ms"]
    assert sorted(stages) == sorted(r.name.rsplit(" · ", 1)[0] for r in result.rows[::2])
    assert all(set(s) == {"read", "resize_flow", "transform"} and s["read"] > 0 for s in stages.values())


def test_derived_rates_follow_the_flops_of_each_step(result):
    rates = result.extra["rates"]
    # batch 1: VAT segments frames t, t-k of both domains; source-only and VST frame t of one
    cfg = data.suite_config(Path("/tree"), Path("/flow"), sets=TINY)
    flops = data.step_flops(cfg)
    assert math.isclose(flops["vat"], 2 * (flops["source"] + flops["vst"]))
    assert math.isclose(flops["source"], 3 * data.forward_flops(cfg, (36, 64)))
    for phase, f in flops.items():
        assert math.isclose(rates[phase]["steps_s"], data.H100_BF16_TFLOPS * 1e12 * 0.4 / f)


def test_workers_needed_by_hand():
    rate = data.derived_rates({"vat": 12e12}, peak_tflops=1000, utilisation=0.4)["vat"]
    assert math.isclose(rate.steps_s, 400 / 12) and rate.source == "derived"
    values = data.row_values(clips_s=6.0, workers=2, rate=data.StepRate(10.0, "measured", ""), per_step=1, load1=0.5)
    assert values["per_worker"] == 3.0 and values["need_s"] == 10.0 and values["workers_needed"] == 4
    assert data.row_values(6.0, 0, data.StepRate(12.0, "derived", ""), 1, 0.0)["workers_needed"] == 2  # exact: 12 / 6
    assert data.workers_needed(33.4, 5.0) == 7 and data.workers_needed(35.0, 5.0) == 7


def test_measured_step_rates_come_from_cuda_train_rows(tmp_path):
    cfg = data.suite_config(Path("/tree"), Path("/flow"))
    name = data.train_row_name(cfg, "vat")
    assert name == "deeplabv2_r101 · vat · bf16 · 720x1280+512x1024"  # the train suite's row name
    row = {"name": name, "status": "ok", "reason": "", "values": {"it_s": 2.5}}
    cuda = {"created": "2026-12-01", "machine": {"gpu": {"name": "NVIDIA H100"}}, "settings": {"device": "cuda:0"},
            "rows": [row]}
    cpu = {**cuda, "created": "2026-12-02", "machine": {"gpu": None}, "settings": {"device": "cpu"},
           "rows": [{**row, "values": {"it_s": 0.1}}]}
    (tmp_path / "train-gpu-2026-12-01.json").write_text(json.dumps(cuda))
    (tmp_path / "train-vm-2026-12-02.json").write_text(json.dumps(cpu))
    rates = data.measured_rates(cfg, tmp_path)
    assert list(rates) == ["vat"] and rates["vat"].steps_s == 2.5 and rates["vat"].source == "measured"
    assert "NVIDIA H100" in rates["vat"].detail


def test_result_files_with_plot(result, tmp_path):
    paths = write_result(result, tmp_path, data.plot)
    assert sorted(paths) == ["json", "md", "png"] and paths["png"].stat().st_size > 0
    md = paths["md"].read_text()
    assert "workers / GPU" in md and "GPU step rate, vat" in md
