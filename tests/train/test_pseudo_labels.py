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
