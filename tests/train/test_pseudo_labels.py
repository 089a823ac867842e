"""Pseudo-label rules of VST on hand-made cases."""

import numpy as np
import torch

from vsda_deploy.metrics import ConfusionMatrix
from vsda_train.pseudo_labels import (
    LEVELS,
    ConfidenceHistogram,
    PseudoLabelStats,
    fuse_probs,
    quantise,
    select_confident,
    temporal_filter,
    time_ranks,
)


def test_quantise_rounds_to_256_levels() -> None:
    assert quantise(np.array([0.0, 0.5, 1.0, 1.2, 0.2 / 255])).tolist() == [0, 128, 255, 255, 0]


def test_class_balanced_thresholds_keep_top_fraction() -> None:
    # class 0: levels 10, 30, ..., 190 (one pixel each); class 1: the same levels halved
    levels = np.arange(10, 200, 20, dtype=np.uint8)[None]
    label = np.zeros_like(levels)
    hist = ConfidenceHistogram(num_classes=3)
    hist.update(levels, label)
    hist.update(levels // 2, np.ones_like(label))  # class 1 is less confident: its threshold is lower
    thr = hist.thresholds(0.6)
    # top 60 % of 10 pixels = 6 pixels: class 0 keeps levels >= 90, class 1 levels >= 45
    assert thr.tolist() == [90, 45, LEVELS]  # class 2 never predicted: keeps nothing
    kept = select_confident(label, levels, thr)
    assert (kept != 255).sum() == 6 and set(kept[kept != 255].tolist()) == {0}
    assert hist.thresholds(0.6, min_confidence=0.5).tolist() == [128, 128, LEVELS]  # round(0.5 * 255) = 128
    assert (select_confident(np.array([255], np.uint8), np.array([255], np.uint8), thr) == 255).all()


def test_time_ranks_put_consistent_pixels_above_every_other() -> None:
    label = np.array([0, 1, 2, 255], np.uint8)
    consistent = np.array([0, 255, 2, 255], np.uint8)  # the neighbours contradicted pixel 1
    levels = np.array([10, 200, 5, 7], np.uint8)
    assert time_ranks(label, consistent, levels).tolist() == [266, 200, 261, 7]


def test_rank_rule_keeps_the_class_budget_consistent_pixels_first() -> None:
    """One class, four pixels at levels 250, 240, 10, 5; the neighbours agree with pixels 1 and 2.
    Top half: by confidence alone pixels 0, 1; the seed's veto then top half of the consistent
    (time_first) pixel 1 only; ranked by time, pixels 1 and 2: the same budget, consistent first."""
    label = np.zeros((1, 4), np.uint8)
    levels = np.array([[250, 240, 10, 5]], np.uint8)
    consistent = np.array([[255, 0, 0, 255]], np.uint8)
    ranks = time_ranks(label, consistent, levels)
    hist = ConfidenceHistogram(1, levels=2 * LEVELS)
    hist.update(ranks, label)
    thr = hist.thresholds(0.5)
    assert thr.tolist() == [LEVELS + 10]
    assert select_confident(label, ranks, thr).tolist() == [[255, 0, 0, 255]]
    plain = ConfidenceHistogram(1)
    plain.update(levels, label)
    assert select_confident(label, levels, plain.thresholds(0.5)).tolist() == [[0, 0, 255, 255]]
    veto = ConfidenceHistogram(1)
    veto.update(levels, consistent)
    assert select_confident(consistent, levels, veto.thresholds(0.5)).tolist() == [[255, 0, 255, 255]]


def test_temporal_filter_disagreeing_neighbour_and_occlusion() -> None:
    label = np.array([[1, 1, 2, 2]], np.uint8)
    prev_warped = np.array([[1, 3, 2, 0]], np.uint8)  # disagrees at pixels 1 and 3
    prev_votes = np.array([[True, True, True, False]])  # pixel 3 occluded in t-1: no vote
    next_warped = np.array([[1, 1, 2, 2]], np.uint8)
    next_votes = np.ones_like(prev_votes)
    out = temporal_filter(label, [prev_warped, next_warped], [prev_votes, next_votes])
    assert out.tolist() == [[1, 255, 2, 2]]


def test_fused_class_is_the_mean_over_the_frames_that_see_the_pixel() -> None:
    """Two classes, three pixels, neighbours t-1 and t+1 (softmaxes already warped to t)."""
    own = np.array([[[0.6, 0.4], [0.8, 0.2], [0.9, 0.1]]], np.float32)
    prev = np.array([[[0.2, 0.8], [0.0, 1.0], [0.1, 0.9]]], np.float32)
    nxt = np.array([[[0.1, 0.9], [0.0, 1.0], [0.3, 0.7]]], np.float32)
    prev_seen = np.array([[True, False, True]])  # pixel 1: occluded in t-1
    next_seen = np.array([[True, False, False]])  # pixel 2: out of view in t+1
    label, level = fuse_probs(own, [prev, nxt], [prev_seen, next_seen])
    # pixel 0: (0.6 + 0.2 + 0.1) / 3 = 0.3 -> class 1 at 0.7; pixel 1: its own 0.8 for class 0;
    # pixel 2: (0.9 + 0.1) / 2 = 0.5 for each class -> the first, class 0, at 0.5
    assert label.tolist() == [[1, 0, 0]]
    assert level.tolist() == [[round(0.7 * 255), round(0.8 * 255), round(0.5 * 255)]]
    alone, alone_level = fuse_probs(own, [], [])
    assert alone.tolist() == [[0, 0, 0]] and alone_level.tolist() == quantise(own.max(2)).tolist()


def test_selection_and_temporal_filter_commute() -> None:
    """Both rules only drop pixels, so time_first changes only what the histogram counts."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, (16, 16)).astype(np.uint8)
    levels = rng.integers(0, 256, (16, 16)).astype(np.uint8)
    warped, votes = [rng.integers(0, 4, (16, 16)).astype(np.uint8)], [rng.random((16, 16)) < 0.7]
    thr = np.array([100, 150, 50, 200])
    a = temporal_filter(select_confident(label, levels, thr), warped, votes)
    b = select_confident(temporal_filter(label, warped, votes), levels, thr)
    assert np.array_equal(a, b) and 0 < (a != 255).sum() < a.size


def test_stats_kept_fraction_and_accuracy() -> None:
    raw = np.array([[0, 0, 1, 1]], np.uint8)
    kept = np.array([[0, 255, 1, 255]], np.uint8)
    gt = np.array([[0, 1, 0, 255]], np.uint8)
    stats = PseudoLabelStats(2)
    stats.update(raw, kept, gt)
    s = stats.summary(("a", "b"))
    assert s["kept_fraction"] == 50.0
    assert s["accuracy_kept"] == 50.0  # kept labelled: pixel 0 (right) and pixel 2 (wrong)
    assert abs(s["accuracy_raw"] - 100 / 3) < 1e-9
    assert "time_agreement" not in s  # no temporal filter counted
    # labelled pixels 0-2, raw 0 0 1 against gt 0 1 0: class 0 IoU 1 / (2 + 2 - 1), class 1 IoU 0 / 2
    assert s["iou_raw_per_class"] == {"a": 100 / 3, "b": 0.0} and abs(s["miou_raw"] - 50 / 3) < 1e-9
    cm = ConfusionMatrix(2)
    cm.update(raw, gt)
    assert abs(s["miou_raw"] - cm.miou()) < 1e-9  # the evaluator's mIoU of the same pair


def test_stats_time_agreement_of_right_and_wrong_pixels() -> None:
    """Six labelled raw pixels, 2 right and 4 wrong; the neighbours veto one right and one wrong pixel
    (255 in ``consistent``); the last pixel is void in the ground truth and not counted. The confident
    ones: pixels 0, 1, 2, 3."""
    raw = np.array([[0, 1, 0, 1, 1, 0, 1]], np.uint8)
    gt = np.array([[0, 1, 1, 0, 0, 1, 255]], np.uint8)
    consistent = np.array([[0, 255, 0, 255, 1, 0, 255]], np.uint8)
    confident = np.array([[1, 1, 1, 1, 0, 0, 1]], bool)
    stats = PseudoLabelStats(2)
    stats.update(raw, raw, gt)
    stats.update_time(raw, consistent, confident, gt)
    agreement = stats.summary(("a", "b"))["time_agreement"]
    assert agreement["right"] == 50.0  # pixel 0 agreed, pixel 1 vetoed
    assert agreement["wrong"] == 75.0  # pixels 2, 4, 5 agreed, pixel 3 vetoed
    assert agreement["right_confident"] == 50.0  # pixels 0 and 1
    assert agreement["wrong_confident"] == 50.0  # pixels 2 (agreed) and 3 (vetoed)


class _Shift(torch.nn.Module):
    """Logits of class 1 = the pixel's left neighbour's red value (not mirror-symmetric); class 0 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = torch.nn.functional.pad(x[:, :1], (1, 0))[..., :-1]
        return torch.cat([torch.zeros_like(left), left], 1)


def test_predict_probs_mirror_and_scale_averaging() -> None:
    import numpy as np

    from vsda_train.transforms import normalize
    from vsda_train.vst import predict_probs

    frame = np.random.default_rng(0).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    model, cpu = _Shift(), torch.device("cpu")
    x = normalize(frame).unsqueeze(0)
    plain = model(x).softmax(1)[0]
    mirrored = model(x.flip(-1)).flip(-1).softmax(1)[0]  # the right neighbour's value instead
    assert torch.allclose(predict_probs(model, frame, cpu), plain)
    assert torch.allclose(predict_probs(model, frame, cpu, flip=True), (plain + mirrored) / 2, atol=1e-6)
    half = torch.nn.functional.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    back = torch.nn.functional.interpolate(model(half), size=(8, 16), mode="bilinear", align_corners=False)
    expected = (plain + back.softmax(1)[0]) / 2
    assert torch.allclose(predict_probs(model, frame, cpu, scales=(1.0, 0.5)), expected, atol=1e-6)


def test_confident_and_agreed_pixels_are_what_the_veto_rule_keeps() -> None:
    """With ``vst.time_first: false`` the seed's veto keeps the confident pixels the neighbours agree with:
    the time counts over confident pixels must give the kept pixels' accuracy counts exactly."""
    from vsda_train.config import load_config
    from vsda_train.vst import select

    cfg = load_config(None, ["vst.time_first=false"])
    rng = np.random.default_rng(3)
    label = rng.integers(0, 4, (32, 32)).astype(np.uint8)
    consistent = np.where(rng.random((32, 32)) < 0.8, label, 255).astype(np.uint8)
    level = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    gt = np.where(rng.random((32, 32)) < 0.9, np.where(rng.random((32, 32)) < 0.6, label, 3 - label), 255)
    thresholds = np.array([100, 150, 50, 200])
    kept = select(label, consistent, level, thresholds, cfg)
    stats = PseudoLabelStats(4)
    stats.update(label, kept, gt)
    stats.update_time(label, consistent, select_confident(label, level, thresholds) != 255, gt)
    counts, time = dict(zip(stats.FIELDS, stats.counts.sum(1))), dict(zip(stats.TIME, stats.time[1]))
    assert counts["kept_correct"] == time["right_agreed"] > 0
    assert counts["kept_labelled"] - counts["kept_correct"] == time["wrong_agreed"] > 0


def test_pseudo_summary_line_names_each_figure() -> None:
    from vsda_train.cli.phases import pseudo_summary

    stats = {"kept_fraction": 58.54, "accuracy_kept": 73.81, "accuracy_raw": 62.14, "miou_raw": 20.36}
    assert pseudo_summary(stats) == "kept 58.5 % of the pixels; accuracy 73.8 % kept, 62.1 % raw; raw labels' mIoU 20.4"
    assert pseudo_summary({"kept_fraction": 58.54}) == "kept 58.5 % of the pixels"  # no oracle: no accuracy
