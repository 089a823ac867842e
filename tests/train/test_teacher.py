"""The mean-teacher phase 2: online labels filtered by time, DACS and ClassMix, EMA, resume (vsda_train/teacher.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import one_torch_thread, tiny_synth  # noqa: F401 (fixture)
from tests.train.test_phases import RUNNER, read_log, run_cli, write_config
from vsda_deploy.labels import IGNORE_INDEX
from vsda_train.checkpoint import load_checkpoint
from vsda_train.teacher import (
    EMATeacher,
    RunningThresholds,
    block_mask,
    class_mix,
    consistent_labels,
    crop_like,
    cross_frame_labels,
    domain_mix,
    select,
)


def test_consistent_labels_warp_the_previous_label_and_let_occluded_pixels_abstain() -> None:
    # frame t-1 labels [0 0 1 1 | ...]; content moves right by 1 px: flow t -> t-1 is -1 in x
    prev = torch.tensor([[0, 0, 1, 1, 2, 2]])
    cur = torch.tensor([[2, 0, 0, 1, 1, 0]])  # pixel 5 disagrees with the warped t-1 (2)
    probs = lambda lab: torch.nn.functional.one_hot(lab, 3).permute(2, 0, 1)[None].float()  # noqa: E731
    bw = torch.zeros(1, 2, 1, 6)
    bw[:, 0] = -1.0
    fw = torch.zeros(1, 2, 1, 6)
    fw[:, 0] = 1.0
    label, consistent, level = consistent_labels(probs(cur), probs(prev), bw, fw)
    assert label.tolist() == [[[2, 0, 0, 1, 1, 0]]]
    # pixel 0's source lies out of view: no vote; pixels 1-4 agree; pixel 5 disagrees -> 255
    assert consistent.tolist() == [[[2, 0, 0, 1, 1, 255]]] and (level == 255).all()
    fw[..., 4] = -5.0  # pixel 5 (seen at 4 in t-1) fails the forward-backward check: it keeps its label
    assert consistent_labels(probs(cur), probs(prev), bw, fw)[1].tolist() == [[[2, 0, 0, 1, 1, 0]]]


def test_cross_frame_labels_carry_the_previous_frame_to_t() -> None:
    """TPS's cross-frame pseudo labels: frame t is labelled by the teacher's view of t-1, moved by the flow."""
    prev = torch.tensor([[0, 0, 1, 1, 2, 2]])
    probs = 0.8 * torch.nn.functional.one_hot(prev, 3).permute(2, 0, 1)[None].float() + 0.2 / 3
    bw = torch.zeros(1, 2, 1, 6)
    bw[:, 0] = -1.0  # content moves right by 1 px: pixel x of t was at x - 1 in t-1
    fw = torch.zeros(1, 2, 1, 6)
    fw[:, 0] = 1.0
    label, level = cross_frame_labels(probs, bw, fw)
    # pixel 0's source is out of view: no label; the others take t-1's label one pixel to the left
    assert label.tolist() == [[[255, 0, 0, 1, 1, 2]]]
    assert level[0, 0, 1:].tolist() == [round((0.8 + 0.2 / 3) * 255)] * 5
    fw[..., 3] = 4.0  # pixel 4 (seen at 3 in t-1) fails the forward-backward check: occluded, no label
    assert cross_frame_labels(probs, bw, fw)[0].tolist() == [[[255, 0, 0, 1, 255, 2]]]
    assert cross_frame_labels(probs, bw, fw, occlusion_check=False)[0].tolist() == [[[255, 0, 0, 1, 1, 2]]]


def test_running_thresholds_and_select() -> None:
    th = RunningThresholds(2, top_fraction=0.5, decay=0.0)
    level = torch.tensor([[10, 20, 30, 40]], dtype=torch.uint8)
    thr = th.update(level, torch.tensor([[0, 0, 0, 0]]))
    assert thr.tolist() == [30, 256]
    assert select(torch.tensor([[0, 0, 0, 1]]), level, thr).tolist() == [[255, 255, 0, 255]]


def test_class_mix_pastes_half_of_the_partners_classes() -> None:
    images = torch.stack([torch.zeros(3, 2, 4), torch.ones(3, 2, 4)])
    labels = torch.tensor([[[0, 0, 0, 0], [0, 0, 0, 0]], [[1, 1, 2, 2], [1, 1, 2, 2]]])
    mixed, mixed_labels = class_mix(images, labels, labels, torch.Generator().manual_seed(0))
    pasted = mixed_labels[0] != 0  # sample 0 receives one of sample 1's two classes
    assert pasted.sum() == 4 and len(torch.unique(mixed_labels[0][pasted])) == 1
    assert (mixed[0][:, pasted] == 1).all() and (mixed[0][:, ~pasted] == 0).all()
    assert (mixed_labels[1] == labels[1]).all() or (mixed_labels[1] == 0).any()  # sample 1 gets class 0 or keeps


@pytest.mark.parametrize("classes", [1, 2, 3, 4, 5])
def test_domain_mix_pastes_half_of_the_source_classes_with_their_true_labels(classes: int) -> None:
    """DACS's cross-domain mix (vikolss/DACS; lhoyer/DAFormer mmseg/models/utils/dacs_transforms.py
    ``get_class_masks`` and ``one_mix``): of the n classes in the source label, (n + n % 2) / 2 are
    cut out by that label; those pixels take the source image and its ground truth, the others keep
    the target image and its pseudo labels. The source's void (255) is never a class to paste."""
    source_labels = torch.arange(8).remainder(classes).repeat(2, 4, 1)  # (2, 4, 8): n classes, 4 columns each...
    source_labels[:, 0, :] = IGNORE_INDEX  # ...and a void row
    source, target = torch.full((2, 3, 4, 8), 7.0), torch.full((2, 3, 4, 8), -1.0)
    pseudo = torch.full((2, 4, 8), 9)
    pseudo[:, :, 0] = IGNORE_INDEX
    mixed, labels = domain_mix(source, source_labels, target, pseudo, torch.Generator().manual_seed(classes))
    for i in range(2):
        pasted = labels[i] != pseudo[i]
        assert len(torch.unique(labels[i][pasted])) == (classes + classes % 2) // 2
        assert (labels[i][pasted] == source_labels[i][pasted]).all() and (labels[i][0] == pseudo[i][0]).all()
        assert (mixed[i][:, pasted] == 7).all() and (mixed[i][:, ~pasted] == -1).all()
        assert (labels[i][~pasted] == pseudo[i][~pasted]).all()  # the target's own void stays void


def test_crop_like_takes_a_window_of_the_targets_size_from_each_source_frame() -> None:
    """The real configs crop VIPER at 720x1280 and Cityscapes at 512x1024: DACS pastes windows of one size."""
    frames = torch.arange(3 * 6 * 8, dtype=torch.float32).reshape(1, 3, 6, 8).repeat(5, 1, 1, 1)
    labels = torch.arange(6 * 8).reshape(1, 6, 8).repeat(5, 1, 1)
    crops, crop_labels = crop_like(frames, labels, (4, 5), torch.Generator().manual_seed(0))
    assert crops.shape == (5, 3, 4, 5) and crop_labels.shape == (5, 4, 5)
    corners = set()
    for crop, lab in zip(crops, crop_labels, strict=True):
        y, x = divmod(int(lab[0, 0]), 8)  # the window's top-left corner, read from the label
        assert 0 <= y <= 2 and 0 <= x <= 3
        assert torch.equal(lab, labels[0, y:y + 4, x:x + 5]) and torch.equal(crop, frames[0, :, y:y + 4, x:x + 5])
        corners.add((y, x))
    assert len(corners) > 1  # drawn per sample
    assert crop_like(frames, labels, (6, 8), torch.Generator())[1] is labels
    with pytest.raises(ValueError, match="6x8"):
        crop_like(frames, labels, (7, 8), torch.Generator())


def test_domain_mix_needs_source_crops_at_least_the_targets(synth: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "mt.yaml", synth, tmp_path / "runs", vst={"teacher": "ema", "mix": "source"},
                       data={"source_size": [64, 64]})
    out = run_cli("vsda-train", "vst", "-c", str(cfg), "--no-eval", "--init", str(tmp_path / "none.pt"))
    assert out.returncode == 2 and "vst.mix=source" in out.stderr and "data.source_size [64, 64]" in out.stderr


def test_block_mask_blanks_whole_squares_on_mics_grid() -> None:
    # MIC's BlockMaskGenerator (lhoyer/MIC, seg/mmseg/models/utils/masking_transforms.py): a
    # round(H / b) x round(W / b) grid of uniform draws, a square kept where its draw exceeds the
    # ratio, stretched to the frame by nearest interpolation; the image is multiplied by it
    frames = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12) + 1
    gen = torch.Generator().manual_seed(0)
    draws = torch.rand((2, 1, 2, 3), generator=torch.Generator().manual_seed(0))  # the same draws, by hand
    masked = block_mask(frames, 0.5, 4, gen)
    keep = (draws >= 0.5).repeat_interleave(4, 2).repeat_interleave(4, 3)
    assert torch.equal(masked, torch.where(keep, frames, torch.zeros(())))
    assert 0 < int(keep.sum()) < keep.numel()  # the case has both kinds of square
    assert torch.equal(block_mask(frames, 0.0, 4, gen), frames)
    # 128 x 256 frames with 16 px squares: an 8 x 16 grid; MIC's ratio 0.7 blanks close to 70 % of them
    big = block_mask(torch.ones(64, 1, 128, 256), 0.7, 16, torch.Generator().manual_seed(1))
    assert abs(float((big == 0).float().mean()) - 0.7) < 0.01
    squares = big[:, 0].reshape(64, 8, 16, 16, 16)
    assert torch.equal(squares.amax((2, 4)), squares.amin((2, 4)))  # each square all kept or all blanked
    assert block_mask(torch.ones(1, 1, 10, 100), 0.0, 16, gen).shape == (1, 1, 10, 100)  # round(10 / 16) = 0 -> 1


def test_mask_ratio_is_a_share() -> None:
    from vsda_train.config import ConfigError, VSTConfig

    with pytest.raises(ConfigError, match="vst.mask_ratio in"):
        VSTConfig(teacher="ema", mask_ratio=1.0)
    assert VSTConfig(teacher="ema", mask_ratio=0.7).mask_block == 16


def test_ema_teacher_follows_the_student() -> None:
    student = torch.nn.Linear(2, 1)
    teacher = EMATeacher(student)
    with torch.no_grad():
        student.weight.add_(1.0)
    before = teacher.model.weight.clone()
    teacher.update(student, 0.9)
    assert torch.allclose(teacher.model.weight, 0.9 * before + 0.1 * student.weight)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_synth(tmp_path_factory.mktemp("synth") / "bench", frames=6)


@pytest.mark.parametrize(("pseudo_from", "mix", "source_size", "source_match", "mask_ratio"),
                         [("current", "class", [64, 96], "none", 0.0), ("previous", "class", [64, 96], "none", 0.0),
                          ("current", "source", [64, 128], "histogram", 0.7)])
def test_mean_teacher_phase_runs_and_resumes_exactly(synth: Path, tmp_path: Path, pseudo_from: str, mix: str,
                                                     source_size: list[int], source_match: str,
                                                     mask_ratio: float) -> None:
    src_cfg = write_config(tmp_path / "src.yaml", synth, tmp_path / "runs", optim={"iters": 1})
    assert run_cli("vsda-train", "source", "-c", str(src_cfg), "--no-eval", "--name", "src").returncode == 0
    init = str(tmp_path / "runs" / "src" / "last.pt")
    cfg = write_config(tmp_path / "mt.yaml", synth, tmp_path / "runs", optim={"iters": 4},
                       vst={"teacher": "ema", "class_top_fraction": 0.8, "pseudo_from": pseudo_from, "mix": mix,
                            "source_match": source_match, "mask_ratio": mask_ratio},
                       data={"source_size": source_size},
                       run={"ckpt_every": 2})
    full = run_cli("vsda-train", "vst", "-c", str(cfg), "--no-eval", "--name", "full", "--init", init)
    assert full.returncode == 0, full.stderr
    rows = read_log(tmp_path / "runs" / "full" / "log.csv")
    assert all(math.isfinite(v) for r in rows for v in r.values()) and 0 < rows[-1]["kept"] <= 1
    assert ("loss_mask" in rows[-1]) == (mask_ratio > 0)
    killed = run_cli(sys.executable, str(RUNNER), "vst", str(cfg), "cut", "--init", init, "--kill-after", "2")
    assert killed.returncode == -9
    resumed = run_cli(sys.executable, str(RUNNER), "vst", str(cfg), "cut", "--init", init, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = (load_checkpoint(tmp_path / "runs" / n / "last.pt") for n in ("full", "cut"))
    for part in ("model", "teacher"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert np.array_equal(a["thresholds"].numpy(), b["thresholds"].numpy())
