"""Pseudo-label rules of VST on hand-made cases."""

import torch

from vsda_train.pseudo_labels import (
    ConfidenceHistogram,
    PseudoLabelStats,
    select_confident,
    temporal_filter,
)


def test_class_balanced_thresholds_keep_top_fraction() -> None:
    conf = torch.tensor([[[0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95]]])
    label = torch.tensor([[[0] * 10]])
    label2 = torch.full_like(label, 1)
    hist = ConfidenceHistogram(num_classes=3, bins=100)
    hist.update(conf, label)
    hist.update(conf * 0.5, label2)  # class 1 is less confident: its threshold is lower
    thr = hist.thresholds(0.6)
    assert abs(thr[0].item() - 0.45) < 1e-6 and abs(thr[1].item() - 0.22) < 1e-6
    assert thr[2].item() == 1.0  # never predicted: keeps nothing
    kept = select_confident(label, conf, thr)
    assert (kept != 255).sum().item() == 6


def test_temporal_filter_disagreeing_neighbour_and_occlusion() -> None:
    label = torch.tensor([[[1, 1, 2, 2]]])
    prev_warped = torch.tensor([[[1, 3, 2, 0]]])  # disagrees at pixels 1 and 3
    prev_votes = torch.tensor([[[True, True, True, False]]])  # pixel 3 occluded in t-1: no vote
    next_warped = torch.tensor([[[1, 1, 2, 2]]])
    next_votes = torch.ones_like(prev_votes)
    out = temporal_filter(label, [prev_warped, next_warped], [prev_votes, next_votes])
    assert out.tolist() == [[[1, 255, 2, 2]]]


def test_stats_kept_fraction_and_accuracy() -> None:
    raw = torch.tensor([[[0, 0, 1, 1]]])
    kept = torch.tensor([[[0, 255, 1, 255]]])
    gt = torch.tensor([[[0, 1, 0, 255]]])
    stats = PseudoLabelStats(2)
    stats.update(raw, kept, gt)
    s = stats.summary(("a", "b"))
    assert s["kept_fraction"] == 50.0
    assert s["accuracy_kept"] == 50.0  # kept labelled: pixel 0 (right) and pixel 2 (wrong)
    assert abs(s["accuracy_raw"] - 100 / 3) < 1e-9
