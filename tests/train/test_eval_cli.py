"""`vsda-train eval --pred --gt`: table, JSON and one-line errors (vsda_train/cli/evaluate.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.deploy.test_evaluation import LABELLED, image_id, write_label_preds, write_split
from vsda_deploy import cityscapes_vps as vps
from vsda_train.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def gt_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vps")
    write_split(root)
    return root


def test_eval_prints_table_and_writes_json(gt_root: Path, tmp_path: Path) -> None:
    write_label_preds(tmp_path / "pred", LABELLED)
    out = tmp_path / "scores.json"
    res = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", f"cityscapes-vps:{gt_root}",
                              "--split", "val", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "mIoU" in res.output and "VPQ k=15" in res.output and "person (thing)" in res.output
    scores = json.loads(out.read_text())
    assert scores["miou"] == pytest.approx(100) and scores["vpq"] == pytest.approx(100)
    assert set(scores["vpq_k"]) == {"0", "5", "10", "15"} and scores["tc"] is None
    assert {"iou", "vpq_things", "vpq_stuff"} <= set(scores) and scores["iou"]["road"] == pytest.approx(100)


@pytest.mark.parametrize("case, message", [
    ("spec", "error: kitti:"),
    ("missing", "missing: no prediction for 1 labelled frame(s)"),
    ("size", "frankfurt_000000_000284_leftImg8bit.png: prediction is 8x8 but its RGB frame is 64x40"),
    ("segment", "segment id(s) [999] are in the PNG but not in the JSON"),
])
def test_eval_errors_are_one_line_exit_1(gt_root: Path, tmp_path: Path, case: str, message: str) -> None:
    pred = tmp_path / case
    gt = f"cityscapes-vps:{gt_root}"
    if case == "spec":
        gt = "kitti:/data"
        write_label_preds(pred, LABELLED)
    elif case == "missing":
        write_label_preds(pred, LABELLED[:3])
    elif case == "size":
        write_label_preds(pred, LABELLED, edit=lambda t, s: np.zeros((8, 8), np.uint8) if t == 9 else s)
    else:
        seg = np.full((40, 64), 999, np.uint32)
        for t in LABELLED:
            vps.write_rgb_png(pred / "pan_pred" / f"{image_id(t)}.png", vps.id_to_rgb(seg))
        vps.dump_json(pred / "pred.json", {"annotations": [
            {"image_id": image_id(t), "segments_info": [{"id": 5, "category_id": 0}]} for t in LABELLED]})
    res = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", gt])
    assert res.exit_code == 1
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_label_space_option(gt_root: Path, tmp_path: Path) -> None:
    write_label_preds(tmp_path / "pred", LABELLED)  # VIPER15 ids: road 0, building 2, person 9, car 10
    res = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", f"cityscapes-vps:{gt_root}",
                              "--label-space", "cityscapes19", "--json", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    scores = json.loads((tmp_path / "s.json").read_text())
    # read as 19 trainIds the same PNGs say wall (2 is building in both), person 9 is terrain, car 10 is sky
    assert scores["label_space"] == "cityscapes19" and scores["iou"]["building"] == pytest.approx(100)
    assert scores["iou"]["person"] == pytest.approx(0) and scores["miou"] < 60
    bad = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", f"cityscapes-vps:{gt_root}",
                              "--label-space", "kitti"])
    assert bad.exit_code == 2 and "--label-space" in bad.output and len(bad.output.strip().splitlines()) == 1


def test_report_tabulates_finished_runs_and_names_a_missing_one(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from vsda_train.cli import app

    for name, miou in (("source", 12.04), ("vat", 20.36)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval.json").write_text(json.dumps({"miou": miou, "vpq": 5.0, "tc": None}))
    runs = [str(tmp_path / n) for n in ("source", "vat")]
    res = CliRunner().invoke(app, ["report", *runs, "--json", str(tmp_path / "t.json")])
    assert res.exit_code == 0, res.output
    assert "12.0" in res.output and "20.4" in res.output
    table = json.loads((tmp_path / "t.json").read_text())
    assert table[runs[1]]["miou"] == 20.36 and table[runs[0]]["tc"] is None
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "nope/eval.json: not found" in res.output


@pytest.mark.parametrize("value", ["1.0", "-0.1"])
def test_split_ratio_outside_its_range_is_exit_2(gt_root: Path, tmp_path: Path, value: str) -> None:
    write_label_preds(tmp_path / "pred", LABELLED)
    res = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", f"cityscapes-vps:{gt_root}",
                              "--split-ratio", value])
    assert res.exit_code == 2 and f"--split-ratio {float(value)}" in res.output
    assert len(res.output.strip().splitlines()) == 1
