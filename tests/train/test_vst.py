"""VST pseudo labels at scale: shared out over DDP ranks, identical to one process, at the training scale."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import one_torch_thread, tiny_synth  # noqa: F401 (fixture)
from tests.train.test_phases import RUNNER, run_cli, write_config
from vsda_train.vst import shard


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_synth(tmp_path_factory.mktemp("synth") / "bench", frames=8, target_train_clips=3)


def test_shard_deals_every_video_to_exactly_one_rank() -> None:
    videos = [f"v{i}" for i in range(7)]
    parts = [shard(videos, r, 3) for r in range(3)]
    assert parts == [["v0", "v3", "v6"], ["v1", "v4"], ["v2", "v5"]]
    assert sorted(v for p in parts for v in p) == videos


def _vat_checkpoint(synth: Path, tmp_path: Path) -> Path:
    cfg = write_config(tmp_path / "vat.yaml", synth, tmp_path / "runs", optim={"iters": 2})
    res = run_cli("vsda-train", "vat", "-c", str(cfg), "--no-eval", "--name", "vat")
    assert res.returncode == 0, res.stderr
    return tmp_path / "runs" / "vat" / "last.pt"


def test_two_gloo_ranks_write_pseudo_labels_byte_identical_to_one_process(synth: Path, tmp_path: Path) -> None:
    """Videos are dealt out over the ranks, the confidence histograms summed so both ranks take the same
    thresholds, each file is written once: the labels and their statistics equal one process's, byte for byte."""
    init = _vat_checkpoint(synth, tmp_path)
    cfg = write_config(tmp_path / "vst.yaml", synth, tmp_path / "runs", optim={"iters": 2},
                       vst={"rounds": 1, "time_first": True, "class_top_fraction": 0.5},
                       data={"target_resize": [48, 96], "target_size": [48, 96], "batch_size": 2})
    one = run_cli("vsda-train", "vst", "-c", str(cfg), "--no-eval", "--name", "one", "--init", str(init))
    assert one.returncode == 0, one.stderr
    two = run_cli("torchrun", "--standalone", "--nproc_per_node", "2", str(RUNNER), "vst", str(cfg), "two",
                  "--init", str(init))
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = (tmp_path / "runs" / n / "pseudo" / "round0" for n in ("one", "two"))
    names = sorted(p.name for p in a.glob("*.png"))
    assert len(names) == 3 * 4  # 3 VPS train videos of 8 frames, labelled at 5: frames 1-5, the first without t-1
    assert names == sorted(p.name for p in b.glob("*.png"))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert json.loads((a / "stats.json").read_text()) == json.loads((b / "stats.json").read_text())
    assert not (a / "raw").exists() and not (b / "raw").exists()  # intermediates removed
    label = cv2.imread(str(a / names[0]), cv2.IMREAD_UNCHANGED)
    assert label.shape == (48, 96) and label.dtype == np.uint8  # at the training scale, not the frames' 64x128
    stats = json.loads((a / "stats.json").read_text())
    assert 0 < stats["kept_fraction"] < 100 and stats["accuracy_kept"] is not None
    assert set(stats["time_agreement"]) == {"right", "wrong", "right_confident", "wrong_confident"}  # summed over ranks
    # `vsda-train pseudo` writes the same labels and statistics without training
    only = run_cli("vsda-train", "pseudo", "-c", str(cfg), "--name", "labels", "--init", str(init))
    assert only.returncode == 0, only.stderr
    c = tmp_path / "runs" / "labels" / "pseudo" / "round0"
    assert sorted(p.name for p in c.glob("*.png")) == names
    for name in names:
        assert (a / name).read_bytes() == (c / name).read_bytes(), name
    assert json.loads((c / "stats.json").read_text()) == stats
    assert f"kept {stats['kept_fraction']:.1f} % of the pixels" in only.stdout
    assert not (tmp_path / "runs" / "labels" / "last.pt").exists()


def test_labelled_target_frames_are_labelled_with_their_neighbours_predicted(synth: Path, tmp_path: Path) -> None:
    """data.target_frames=labelled (the peers' target set): pseudo labels for the labelled positions only, whose
    voting neighbours t-1 and t+1 come from the every-frame index of the same videos."""
    from vsda_train.clips import domain_clips
    from vsda_train.config import load_config
    from vsda_train.vst import plan_videos

    cfg = load_config(None, [f"data.target=cityscapes-vps:{synth}/target", "data.target_frames=labelled"])
    train = domain_clips(cfg, "target", labels=False, with_flow=False, frames="labelled")
    universe = domain_clips(cfg, "target", labels=False, with_flow=False)
    assert len(train) == 3  # 3 train videos of 8 frames, frame 5 labelled in each (VPS labels every 5th)
    plans = plan_videos(train, universe)
    assert len(plans) == 3
    for plan in plans.values():
        (t,) = plan.labelled
        assert {t - 1, t} <= set(plan.frames)  # t-1 voting (t+1 lies past the video's last labelled frame here)


def test_pseudo_refuses_the_mean_teacher_in_one_line(synth: Path, tmp_path: Path) -> None:
    """The mean teacher makes its labels online: `pseudo` has nothing to write for it (exit 2, one line),
    and a missing --init checkpoint is a runtime failure (exit 1, one line naming it)."""
    cfg = write_config(tmp_path / "c.yaml", synth, tmp_path / "runs")
    ema = run_cli("vsda-train", "pseudo", "-c", str(cfg), "--name", "p", "--init", str(tmp_path / "x.pt"),
                  "--set", "vst.teacher=ema")
    assert ema.returncode == 2 and "vst.teacher=ema" in ema.stderr
    assert len(ema.stderr.strip().splitlines()) == 1
    missing = run_cli("vsda-train", "pseudo", "-c", str(cfg), "--name", "p", "--init", str(tmp_path / "x.pt"))
    assert missing.returncode == 1 and "x.pt" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
