"""The benchmark machinery: rows and statuses, tables, JSON schema, files, compare; and the small suites
(stream, accuracy, metrics) on a tiny generated benchmark. No timing is asserted."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks.__main__ import app
from benchmarks.suite import (
    SCHEMA,
    Column,
    Row,
    SuiteOptions,
    SuiteResult,
    agree,
    classify,
    compare,
    failed_row,
    latency_stats,
    load_result,
    machine_facts,
    markdown_table,
    parse_sizes,
    result_stem,
    time_calls,
    write_result,
)
from tests.helpers import tiny_synth

COLS = [Column("ms_p50", "ms p50", "{:.2f}"), Column("miou", "mIoU")]


def result(rows: list[Row], suite: str = "formats", host: str = "box") -> SuiteResult:
    return SuiteResult(suite, COLS, rows, machine={"host": host, "summary": "test"}, created="2026-11-24T10:00:00")


def test_latency_stats_matches_hand_computed_percentiles() -> None:
    s = latency_stats([4.0, 1.0, 3.0, 2.0])
    assert s["p50"] == 2.5 and s["fps"] == 400.0 and s["n"] == 4
    assert s["iqr"] == pytest.approx(3.25 - 1.75)
    assert s["p95"] == pytest.approx(3.85) and s["p99"] == pytest.approx(3.97)
    with pytest.raises(ValueError):
        latency_stats([])


def test_time_calls_runs_warmup_untimed_and_syncs_around_each_timed_call() -> None:
    calls, syncs = [], []
    times = time_calls(lambda: calls.append(1), runs=7, warmup=3, sync=lambda: syncs.append(1))
    assert len(times) == 7 and len(calls) == 10 and len(syncs) == 14
    assert all(t >= 0 for t in times)


def test_agree_uses_the_larger_spread() -> None:
    a, b = {"p50": 10.0, "iqr": 1.0}, {"p50": 10.8, "iqr": 0.2}
    assert agree(a, b) and not agree(a, {"p50": 11.5, "iqr": 0.2})


def test_statuses_and_failed_rows_name_the_reason() -> None:
    with pytest.raises(ValueError, match="bogus"):
        Row("x", status="bogus")
    assert classify([]) == ("ok", "")
    assert classify(["agreement 97.0% < 98%", "mIoU -1.5"]) == ("inaccurate", "agreement 97.0% < 98%; mIoU -1.5")
    err = ImportError("No module named 'tensorrt'", name="tensorrt")
    row = failed_row("TensorRT FP16 engine", err)
    assert row.status == "failed" and "tensorrt" in row.reason
    assert failed_row("x", RuntimeError("first line\nsecond line")).reason == "first line"
    assert failed_row("x", RuntimeError()).reason == "RuntimeError"


def test_markdown_table_marks_status_and_formats_cells() -> None:
    res = result([Row("ONNX FP32", values={"ms_p50": 3.14159, "miou": 20.0}),
                  Row("ONNX INT8", "inaccurate", "agreement 90.0% < 98%", {"ms_p50": 1.0, "miou": float("nan")}),
                  Row("TensorRT | FP16", "failed", "tensorrt is not installed")])
    lines = markdown_table(res).splitlines()
    assert lines[0] == "| Row | Status | ms p50 | mIoU |"
    assert lines[2] == "| ONNX FP32 | ✅ | 3.14 | 20.0 |"
    assert lines[3] == "| ONNX INT8 | ❎ agreement 90.0% < 98% | 1.00 | - |"
    assert lines[4] == "| TensorRT \\| FP16 | ❌ tensorrt is not installed | - | - |"


def test_json_round_trip_is_strict_json_with_the_schema() -> None:
    res = result([Row("a", values={"ms_p50": float("inf"), "miou": 1.5, "sizes": [1, 2]})])
    data = json.loads(json.dumps(res.to_json(), allow_nan=False))
    assert data["schema"] == SCHEMA and data["rows"][0]["values"]["ms_p50"] is None
    back = SuiteResult.from_json(data)
    assert back.rows[0].values["miou"] == 1.5 and back.columns == COLS and back.suite == "formats"
    with pytest.raises(ValueError, match="schema"):
        SuiteResult.from_json({**data, "schema": "other/1"})


def test_write_result_writes_json_markdown_and_plot(tmp_path: Path) -> None:
    res = result([Row("a", values={"ms_p50": 2.0, "miou": 10.0})], host="jetson orin/nx")

    def plot(r: SuiteResult, path: Path) -> Path:
        path.write_bytes(b"png")
        return path

    paths = write_result(res, tmp_path / "out", plot)
    assert paths["json"].name == "formats-jetson_orin_nx-2026-11-24.json"
    assert {p.suffix for p in paths.values()} == {".json", ".md", ".png"}
    assert load_result(paths["json"]).rows[0].values == {"ms_p50": 2.0, "miou": 10.0}
    assert "| a | ✅ | 2.00 | 10.0 |" in paths["md"].read_text()
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_load_result_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="bad.json"):
        load_result(bad)
    with pytest.raises(SystemExit, match="missing.json: not found"):
        load_result(tmp_path / "missing.json")


def test_compare_claims_a_difference_only_beyond_the_spread() -> None:
    a = result([Row("fp32", values={"ms_p50": 10.0, "ms_iqr": 1.0, "miou": 20.0}), Row("only-a")])
    b = result([Row("fp32", values={"ms_p50": 10.5, "ms_iqr": 0.5, "miou": 21.0}),
                Row("int8", values={"ms_p50": 5.0})])
    ratios = {(r.row, r.column): r for r in compare(a, b)}
    assert set(ratios) == {("fp32", "ms_p50"), ("fp32", "miou")}
    assert ratios["fp32", "ms_p50"].ratio == pytest.approx(1.05) and ratios["fp32", "ms_p50"].significant is False
    assert ratios["fp32", "miou"].significant is None  # no spread recorded: no claim
    b.rows[0].values["ms_p50"] = 20.0
    r = next(r for r in compare(a, b) if r.column == "ms_p50")
    assert r.ratio == pytest.approx(2.0) and r.significant is True
    with pytest.raises(ValueError, match="stream"):
        compare(a, result([], suite="stream"))


def test_result_stem_and_sizes() -> None:
    assert result_stem("stream", "my host!", "2026-01-02T03:04:05") == "stream-my_host-2026-01-02"
    assert parse_sizes("256x512, 512x1024") == ((256, 512), (512, 1024))
    for bad in ("256x500", "256", ""):
        with pytest.raises(ValueError, match="--sizes"):
            parse_sizes(bad)


def test_machine_facts_record_versions_and_no_gpu_here() -> None:
    facts = machine_facts()
    assert facts["cores"] >= 1 and facts["host"]
    assert facts["versions"]["onnxruntime"] and facts["versions"]["numpy"]
    assert facts["versions"]["tensorrt"] is None or isinstance(facts["versions"]["tensorrt"], str)
    assert "CPUExecutionProvider" in facts["ort_providers"]
    assert facts["summary"].startswith(facts["cpu"])


def test_cli_compare_and_bad_options(tmp_path: Path) -> None:
    a = result([Row("fp32", values={"ms_p50": 10.0, "ms_iqr": 0.1})])
    b = result([Row("fp32", values={"ms_p50": 5.0, "ms_iqr": 0.1})], host="other")
    pa, pb = write_result(a, tmp_path)["json"], write_result(b, tmp_path)["json"]
    out = CliRunner().invoke(app, ["compare", str(pa), str(pb)], terminal_width=200)
    assert out.exit_code == 0 and "0.50×" in out.output and "differs" in out.output
    out = CliRunner().invoke(app, ["formats", "--sizes", "100x7", "--out", str(tmp_path)])
    assert out.exit_code == 2 and "100x7" in out.output
    out = CliRunner().invoke(app, ["metrics", "--data", f"cityscapes-vps:{tmp_path / 'none'}", "--out",
                                   str(tmp_path)])
    assert out.exit_code != 0 and "none" in str(out.exception or out.output)


# --- the small suites on a tiny benchmark ---------------------------------------------------------

@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tiny_synth(tmp_path_factory.mktemp("synth"), frames=8, source_clips=1, target_train_clips=1,
                     target_val_clips=2)
    return out / "target"


def test_metrics_suite_scores_a_perfect_prediction_100(target: Path) -> None:
    from benchmarks.suites import metrics

    res = metrics.run(SuiteOptions(data=f"cityscapes-vps:{target}", runs=1))
    rows = {r.name: r for r in res.rows}
    assert rows["mIoU, GT vs GT"].values["value"] == pytest.approx(100.0)
    assert rows["VPQ, GT vs GT"].values["value"] == pytest.approx(100.0)
    assert rows["mIoU, GT vs perturbed"].values["value"] < 100.0
    assert all(r.status == "ok" and r.values["s_p50"] >= 0 for r in res.rows)


def test_stream_suite_rows_and_checks(target: Path, tmp_path: Path) -> None:
    from benchmarks.suites import stream
    from tests.deploy.test_backends import export_tiny_model

    onnx_path, _ = export_tiny_model(tmp_path / "model")
    res = stream.run(SuiteOptions(model=str(onnx_path), data=f"cityscapes-vps:{target}", sizes=((64, 128),),
                                  warmup=1))
    assert [r.name for r in res.rows] == [f"{m} · ort cpu fp32" for m in stream.MODES]
    for r in res.rows:
        # a Cityscapes-VPS video ends at its last labelled frame (5 of 8): 2 x 5 frames
        assert r.status == "ok" and r.values["frames"] == 10
        assert r.values["fps"] > 0 and 0 <= r.values["smoothing_share"] < 100
        assert r.values["total_p50"] <= r.values["total_p95"] <= r.values["total_p99"]
        assert 0 <= r.values["miou"] <= 100 and r.values["tc"] is not None
    assert res.rows[0].values["smoothing_p50"] < 0.5  # none: a pass-through
    assert any(n.startswith("flow smoothing costs") for n in res.notes)
    png = stream.plot(res, tmp_path / "s.png")
    assert png.stat().st_size > 1000


def test_accuracy_suite_gap_closed_and_missing_checkpoints(target: Path, tmp_path: Path) -> None:
    from benchmarks.suites import accuracy
    from tests.deploy.test_backends import export_tiny_model

    rows = [Row("source-only", values={"miou": 10.0}), Row("VAT + VST", values={"miou": 20.0}),
            Row("target oracle", values={"miou": 30.0}), Row("VAT", "failed", "x")]
    accuracy.add_gap_closed(rows)
    assert [r.values.get("gap_closed") for r in rows] == [0.0, 50.0, 100.0, None]

    _, ckpt = export_tiny_model(tmp_path / "model")
    res = accuracy.run(SuiteOptions(data=f"cityscapes-vps:{target}"), checkpoints=f"source={ckpt},vst={ckpt}",
                       config="configs/synth_edge.yaml", train_missing=False, runs_dir=tmp_path / "runs")
    by = {r.name: r for r in res.rows}
    assert by["source-only"].status == by["VAT + VST"].status == "ok"
    assert by["source-only"].values["miou"] == by["VAT + VST"].values["miou"]  # the same checkpoint twice
    assert by["VAT"].status == "failed" and "not found (pass --train" in by["VAT"].reason
    assert by["target oracle"].status == "failed"
    assert "runs/mt/last.pt: not found" in by["VAT + mean teacher"].reason  # the demo's mean-teacher run
    with pytest.raises(SystemExit, match="NAME=PATH"):
        accuracy.run(SuiteOptions(data=f"cityscapes-vps:{target}"), checkpoints="best=x.pt")
    assert math.isfinite(by["source-only"].values["vpq"])


def test_stream_suite_at_native_size_scores_like_the_evaluator(target: Path, tmp_path: Path) -> None:
    from benchmarks.suites import stream
    from tests.deploy.test_backends import export_tiny_model
    from vsda_deploy.backends import load_segmenter
    from vsda_deploy.evaluation import evaluate_predictor

    onnx_path, _ = export_tiny_model(tmp_path / "model")
    res = stream.run(SuiteOptions(model=str(onnx_path), data=f"cityscapes-vps:{target}", sizes=(), warmup=1))
    none = res.rows[0]
    assert none.status == "ok" and any("at their own size" in n for n in res.notes)
    seg = load_segmenter(onnx_path)
    mean, std = np.asarray(seg.meta.mean, np.float32), np.asarray(seg.meta.std, np.float32)

    def predict(rgb: np.ndarray) -> np.ndarray:  # the plain model at the frame's size, as vsda-train eval scores
        x = ((rgb.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)[None]
        return seg.predict(np.ascontiguousarray(x))[0].argmax(0).astype(np.uint8)

    expected = evaluate_predictor(predict, target, "val").to_json()["miou"]
    assert none.values["miou"] == pytest.approx(expected, abs=1e-3)


def test_smoothing_is_chosen_within_the_miou_budget_of_none() -> None:
    from benchmarks.suites.smoothing import choose

    rows = {"none": {"miou": 20.0, "tc": 70.0}, "ema 0.30": {"miou": 19.8, "tc": 75.0},
            "ema 0.85": {"miou": 19.4, "tc": 90.0}, "flow 0.60": {"miou": 19.5, "tc": 80.0}}
    assert choose(rows) == "flow 0.60"  # ema 0.85 has the best TC but costs 0.6 mIoU, over the 0.5 budget
    assert choose({"none": rows["none"], "ema 0.85": rows["ema 0.85"]}) == "none"


def test_smoothing_suite_chooses_on_train_and_checks_on_val(target: Path, tmp_path: Path) -> None:
    from benchmarks.suites import smoothing
    from tests.deploy.test_backends import export_tiny_model

    onnx_path, _ = export_tiny_model(tmp_path / "model")
    res = smoothing.run(SuiteOptions(model=str(onnx_path), data=f"cityscapes-vps:{target}"),
                        f"cityscapes-seq:{target.parent / 'oracle'}", alphas=(0.5,))
    names = [r.name for r in res.rows]
    assert names[:3] == ["train · none", "train · ema 0.50", "train · flow 0.50"]
    chosen = [r.name.removeprefix("train · ") for r in res.rows if r.reason == "chosen"]
    # val repeats the chosen setting beside no smoothing (once, when no smoothing is the choice)
    assert len(chosen) <= 1 and names[3] == "val · none"
    assert names[4:] == [f"val · {c}" for c in chosen if c != "none"]
    assert smoothing.choose({r.name.removeprefix("train · "): r.values for r in res.rows[:3]}) == (
        chosen[0] if chosen else "none")
    for r in res.rows:
        assert 0 <= r.values["miou"] <= 100 and r.values["tc"] is not None
