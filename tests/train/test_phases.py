"""The training phases on a tiny synthetic benchmark: they run, resume exactly, and DDP matches one process."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.helpers import tiny_synth
from vsda_train.checkpoint import load_checkpoint
from vsda_train.config import for_phase, load_config
from vsda_train.models import create_model

BIN = Path(sys.prefix) / "bin"
RUNNER = Path(__file__).with_name("phase_runner.py")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "bench"
    return tiny_synth(out, frames=10)


def write_config(path: Path, synth: Path, runs: Path, **changes: dict) -> Path:
    cfg = {
        "data": {"source": f"viper:{synth}/source", "target": f"cityscapes-vps:{synth}/target",
                 "val": f"cityscapes-vps:{synth}/target", "oracle": f"cityscapes-seq:{synth}/oracle",
                 "source_size": [64, 96], "target_size": [64, 96], "scale_range": [0.8, 1.2], "batch_size": 2},
        "model": {"name": "ddrnet23_slim", "kwargs": {"width": 8}},
        "optim": {"lr": 0.01, "head_lr_mult": 1.0, "iters": 4},
        "vat": {"adv_weight": 0.003, "disc_width": 8},
        "vst": {"rounds": 2, "neighbours": [-1, 1]},
        "run": {"out_dir": str(runs), "log_every": 1, "ckpt_every": 2, "threads": 1, "deterministic": True},
        "source": {},
    }
    for section, values in changes.items():
        cfg[section].update(values)
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_log(path: Path) -> list[dict[str, float]]:
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "VSDA_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    exe = args[0] if os.path.isabs(args[0]) else str(BIN / args[0])
    return subprocess.run([exe, *args[1:]], capture_output=True, text=True, env=full, timeout=300)


def test_source_vat_vst_run_with_finite_losses(synth: Path, tmp_path: Path, monkeypatch) -> None:
    from vsda_train.evaluate import evaluate_run
    from vsda_train.phases import train_source, train_vat, train_vst

    monkeypatch.setenv("VSDA_NO_PROGRESS", "1")
    cfg_path = write_config(tmp_path / "c.yaml", synth, tmp_path / "runs")
    src = train_source(for_phase(load_config(cfg_path, ["run.name=src"]), "source"))
    vat = train_vat(load_config(cfg_path, ["run.name=vat"]), init=str(src.out / "last.pt"))
    vst = train_vst(load_config(cfg_path, ["run.name=vst"]), init=str(vat.out / "last.pt"))
    logs = {r: read_log(tmp_path / "runs" / r / "log.csv") for r in ("src", "vat", "vst")}
    assert [row["iter"] for row in logs["vat"]] == [1, 2, 3, 4]
    assert {"loss_seg", "loss_adv_video", "loss_d_video"} <= set(logs["vat"][0])
    for rows in logs.values():
        assert all(math.isfinite(v) for row in rows for v in row.values())
    # the discriminator starts near chance: BCE ~ ln 2
    assert abs(logs["vat"][0]["loss_d_video"] - math.log(2)) < 0.1
    stats = json.loads((vst.out / "pseudo" / "round1" / "stats.json").read_text())
    assert 0 < stats["kept_fraction"] < 100 and stats["accuracy_kept"] is not None
    result = evaluate_run(vst)
    saved = json.loads((vst.out / "eval.json").read_text())
    assert saved["miou"] == result["miou"] and set(saved["vpq_k"]) == {"0", "5", "10", "15"}
    assert load_checkpoint(vst.out / "last.pt")["iteration"] == 4
    # `vsda-train eval CKPT --data` scores the checkpoint with the same code: same numbers
    from typer.testing import CliRunner

    from vsda_train.cli import app

    res = CliRunner().invoke(app, ["eval", str(vst.out / "last.pt"), "--data", f"cityscapes-vps:{synth}/target",
                                   "--json", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "e.json").read_text())["miou"] == saved["miou"]


def test_resume_after_sigkill_matches_uninterrupted(synth: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", synth, tmp_path / "runs", optim={"iters": 6}, run={"ckpt_every": 3})
    common = ("vsda-train", "vat", "-c", str(cfg), "--no-eval")
    full = run_cli(*common, "--name", "full")
    assert full.returncode == 0, full.stderr
    killed = run_cli(sys.executable, str(RUNNER), "vat", str(cfg), "cut", "--kill-after", "3")
    assert killed.returncode == -9, killed.stderr  # SIGKILL right after the iteration-3 checkpoint
    assert load_checkpoint(tmp_path / "runs/cut/last.pt")["iteration"] == 3
    again = run_cli(*common, "--name", "cut")
    assert again.returncode == 1 and "--resume" in again.stderr  # never clobbers a run silently
    resumed = run_cli(*common, "--name", "cut", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(tmp_path / "runs/full/last.pt"), load_checkpoint(tmp_path / "runs/cut/last.pt")
    for part in ("model",):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), k
    for k in a["discs"]["video"]:
        assert torch.equal(a["discs"]["video"][k], b["discs"]["video"][k]), k


@pytest.mark.parametrize("target_size", [[64, 96], [48, 96]], ids=["equal-crops", "different-crops"])
def test_ddp_two_ranks_match_one_process(synth: Path, tmp_path: Path, target_size: list[int]) -> None:
    """gloo on CPU: 2 ranks x batch 2 == 1 process x batch 4 (BatchNorm statistics frozen: SyncBN needs CUDA),
    the per-domain VAT passes (DDP no_sync on the source pass) with crops of one size and of two sizes."""
    common = {"model": {"name": "ddrnet23_slim", "kwargs": {"width": 8}, "bn": "frozen_stats"},
              "optim": {"iters": 3}, "run": {"ckpt_every": 3, "deterministic": False}}
    one = write_config(tmp_path / "one.yaml", synth, tmp_path / "runs", **common,
                       data={"batch_size": 4, "scale_range": [1.0, 1.0], "target_size": target_size})
    two = write_config(tmp_path / "two.yaml", synth, tmp_path / "runs", **common,
                       data={"batch_size": 2, "scale_range": [1.0, 1.0], "target_size": target_size})
    single = run_cli("vsda-train", "vat", "-c", str(one), "--no-eval", "--name", "single")
    assert single.returncode == 0, single.stderr
    ddp = run_cli("torchrun", "--standalone", "--nproc_per_node", "2", str(RUNNER), "vat", str(two), "ddp",
                  "--checksums", str(tmp_path / "sums"))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    sums = [json.loads((tmp_path / "sums" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert sums[0] == sums[1]  # the ranks hold the same weights
    a, b = load_checkpoint(tmp_path / "runs/single/last.pt"), load_checkpoint(tmp_path / "runs/ddp/last.pt")
    diffs = [(a["model"][k].float() - b["model"][k].float()).abs().max().item() for k in a["model"]]
    assert max(diffs) < 1e-4, max(diffs)
    torch.manual_seed(0)
    init = create_model("ddrnet23_slim", 15, width=8).state_dict()
    moved = max((a["model"][k].float() - init[k].float()).abs().max().item() for k in init)
    assert moved > 1e-3  # training changed the weights: the comparison is not vacuous


def test_time_first_pseudo_labels_select_among_temporally_consistent_pixels(synth: Path, tmp_path: Path) -> None:
    """vst.time_first: the temporal filter runs first and the class-balanced top-p is taken among the
    consistent pixels, so its labels are a subset of the consistent set (and equal to it at p = 1)."""
    import cv2

    from vsda_train import phases
    from vsda_train.vst import make_pseudo_labels

    cfg_path = write_config(tmp_path / "c.yaml", synth, tmp_path / "runs")

    def labels(time_first: bool, top: float) -> dict[str, np.ndarray]:
        cfg = load_config(cfg_path, [f"run.name=pl_{time_first}_{top}", f"vst.time_first={str(time_first).lower()}",
                                     f"vst.class_top_fraction={top}"])
        folder = tmp_path / f"pl_{time_first}_{top}"
        make_pseudo_labels(phases.build_run(cfg, "vst"), folder)
        return {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))}

    consistent = labels(False, 1.0)  # every confidence passes: the temporally consistent set
    assert labels(True, 1.0).keys() == consistent.keys()
    for a, b in zip(labels(True, 1.0).values(), consistent.values(), strict=True):
        assert np.array_equal(a, b)
    picked = labels(True, 0.5)
    kept = sum(int((v != 255).sum()) for v in picked.values())
    assert 0 < kept < sum(int((v != 255).sum()) for v in consistent.values())
    for name, lab in picked.items():
        on = lab != 255
        assert np.array_equal(lab[on], consistent[name][on])  # a subset, with the same classes


def test_rank_rule_keeps_each_class_as_many_pixels_as_its_image_twin(synth: Path, tmp_path: Path) -> None:
    """vst.time_rule=rank: every class keeps the same top fraction of its pixels as without time (up to
    confidence ties), temporally consistent ones first; at p = 1 it keeps every prediction, as the twin does."""
    import cv2

    from vsda_train import phases
    from vsda_train.vst import make_pseudo_labels

    cfg_path = write_config(tmp_path / "c.yaml", synth, tmp_path / "runs")

    def labels(rule: str, top: float) -> tuple[dict, dict[str, np.ndarray]]:
        sets = [f"run.name=pl_{rule}_{top}", f"vst.class_top_fraction={top}"]
        sets += ["vst.temporal_filter=false"] if rule == "image" else [f"vst.time_rule={rule}"]
        folder = tmp_path / f"pl_{rule}_{top}"
        stats = make_pseudo_labels(phases.build_run(load_config(cfg_path, sets), "vst"), folder)
        return stats, {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))}

    _, every = labels("rank", 1.0)
    assert all(np.array_equal(a, b) for a, b in zip(every.values(), labels("image", 1.0)[1].values(), strict=True))
    (ranked, by_time), (image, _) = labels("rank", 0.5), labels("image", 0.5)
    (vetoed, _) = labels("filter", 0.5)
    for name, fraction in image["kept_fraction_per_class"].items():
        if fraction is not None:
            assert ranked["kept_fraction_per_class"][name] == pytest.approx(fraction, abs=5.0), name
    assert vetoed["kept_fraction"] < ranked["kept_fraction"]  # the veto keeps fewer pixels
    for name, lab in by_time.items():
        on = lab != 255
        assert np.array_equal(lab[on], every[name][on])  # the kept pixels carry the model's own class


def test_fuse_rule_keeps_each_class_its_image_twins_budget(synth: Path, tmp_path: Path) -> None:
    """vst.time_rule=fuse: the class top fraction is taken over the fused confidences, so every class keeps
    at least that share of its (fused) pixels, more only on confidence ties, and the whole set keeps the
    twin's share; with no neighbour in reach the fused labels are the twin's."""
    import cv2

    from vsda_train import phases
    from vsda_train.vst import make_pseudo_labels

    cfg_path = write_config(tmp_path / "c.yaml", synth, tmp_path / "runs")

    def labels(name: str, sets: list[str]) -> tuple[dict, dict[str, np.ndarray]]:
        folder = tmp_path / name
        stats = make_pseudo_labels(phases.build_run(load_config(cfg_path, [f"run.name={name}", *sets]), "vst"), folder)
        return stats, {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))}

    image, image_labels = labels("image", ["vst.temporal_filter=false", "vst.class_top_fraction=0.5"])
    fused, fused_labels = labels("fuse", ["vst.time_rule=fuse", "vst.class_top_fraction=0.5"])
    assert all(f is None or f >= 50.0 for f in fused["kept_fraction_per_class"].values())
    assert fused["kept_fraction"] == pytest.approx(image["kept_fraction"], abs=3.0)
    assert any(not np.array_equal(a, b) for a, b in zip(image_labels.values(), fused_labels.values(), strict=True))
    _, far = labels("far", ["vst.time_rule=fuse", "vst.class_top_fraction=0.5", "vst.neighbours=[1000]"])
    assert all(np.array_equal(a, b) for a, b in zip(far.values(), image_labels.values(), strict=True))


def test_vst_lr_is_one_poly_schedule_over_all_rounds(synth: Path, tmp_path: Path, monkeypatch) -> None:
    """Two rounds of two iterations: the LR keeps decaying into round 2 (no restart at each round's end)."""
    from vsda_train.phases import train_source, train_vst

    monkeypatch.setenv("VSDA_NO_PROGRESS", "1")
    cfg_path = write_config(tmp_path / "c.yaml", synth, tmp_path / "runs", optim={"iters": 4, "lr": 0.01})
    src = train_source(for_phase(load_config(cfg_path, ["run.name=src", "optim.iters=1"]), "source"))
    train_vst(load_config(cfg_path, ["run.name=vst"]), init=str(src.out / "last.pt"))
    lrs = [row["lr"] for row in read_log(tmp_path / "runs" / "vst" / "log.csv")]
    assert lrs == pytest.approx([0.01 * (1 - i / 4) ** 0.9 for i in range(4)], abs=1e-6)  # log.csv: 6 decimals
    assert (tmp_path / "runs" / "vst" / "pseudo" / "round1" / "stats.json").is_file()


def test_source_options_are_recorded_in_the_run_config(synth: Path, tmp_path: Path) -> None:
    """--oracle and --photometric become source.oracle / source.augment in runs/NAME/config.yaml."""
    from typer.testing import CliRunner

    from vsda_train.cli import app

    cfg_path = write_config(tmp_path / "c.yaml", synth, tmp_path / "runs", optim={"iters": 1})
    res = CliRunner().invoke(app, ["source", "-c", str(cfg_path), "--name", "orc", "--oracle", "--photometric",
                                   "weak", "--no-eval"], env={"VSDA_NO_PROGRESS": "1"})
    assert res.exit_code == 0, res.output
    saved = yaml.safe_load((tmp_path / "runs" / "orc" / "config.yaml").read_text())
    assert {k: saved["source"][k] for k in ("oracle", "augment")} == {"oracle": True, "augment": "weak"}
    assert load_checkpoint(tmp_path / "runs" / "orc" / "last.pt")["config"]["source"]["oracle"] is True


def test_image_level_adversarial_vat_runs_without_flow(synth: Path, tmp_path: Path, monkeypatch) -> None:
    """vat.video_disc=false, image_disc=true: no flow is read, frame t-k still goes through the segmenter."""
    from vsda_train.phases import train_vat

    monkeypatch.setenv("VSDA_NO_PROGRESS", "1")
    cfg = write_config(tmp_path / "c.yaml", synth, tmp_path / "runs", optim={"iters": 2},
                       vat={"video_disc": False, "image_disc": True, "disc_width": 8})
    run = train_vat(load_config(cfg, ["run.name=img"]))
    rows = read_log(tmp_path / "runs" / "img" / "log.csv")
    assert "loss_adv_image" in rows[-1] and "loss_adv_video" not in rows[-1]
    assert run.it == 2


def test_rare_class_sampling_source_resumes_exactly(synth: Path, tmp_path: Path) -> None:
    """data.rcs_temperature > 0: the labelled source stream is drawn class first; a killed run resumes
    to the same weights, and the sampled batches differ from the uniform ones."""
    cfg = write_config(tmp_path / "c.yaml", synth, tmp_path / "runs", optim={"iters": 4},
                       data={"rcs_temperature": 0.01, "rcs_min_pixels": 10})
    plain = write_config(tmp_path / "u.yaml", synth, tmp_path / "runs", optim={"iters": 4})
    common = ("vsda-train", "source", "--no-eval")
    full = run_cli(*common, "-c", str(cfg), "--name", "full")
    assert full.returncode == 0, full.stderr
    assert "rare-class sampling (T=0.01" in full.stdout
    killed = run_cli(sys.executable, str(RUNNER), "source", str(cfg), "cut", "--kill-after", "2")
    assert killed.returncode == -9, killed.stderr
    resumed = run_cli(*common, "-c", str(cfg), "--name", "cut", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    uniform = run_cli(*common, "-c", str(plain), "--name", "uniform")
    assert uniform.returncode == 0, uniform.stderr
    a, b, u = (load_checkpoint(tmp_path / f"runs/{n}/last.pt")["model"] for n in ("full", "cut", "uniform"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], u[k]) for k in a)


def test_rare_class_sampling_with_an_unreachable_min_pixels_is_one_line(synth: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", synth, tmp_path / "runs",
                       data={"rcs_temperature": 0.01, "rcs_min_pixels": 10 ** 6})
    res = run_cli("vsda-train", "source", "-c", str(cfg), "--no-eval", "--name", "rcs")
    assert res.returncode == 2 and "data.rcs_min_pixels" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
