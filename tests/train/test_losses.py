"""The supervised loss with its auxiliary term, on hand-computed values."""

import math

import torch

from vsda_train.losses import supervised_loss
from vsda_train.models import SegmentationOutput


def test_aux_weight_adds_the_aux_cross_entropy() -> None:
    # two pixels, two classes; main logits certain of the truth, aux logits uniform (CE = ln 2 per pixel)
    label = torch.tensor([[[0, 1]]])
    main = torch.tensor([[[[20.0, -20.0]], [[-20.0, 20.0]]]])
    aux = torch.zeros(1, 2, 1, 2)
    out = SegmentationOutput(main, aux, torch.zeros(1))
    assert supervised_loss(out, label, 0.0).item() < 1e-6
    assert math.isclose(supervised_loss(out, label, 0.1).item(), 0.1 * math.log(2), rel_tol=1e-5)
    assert math.isclose(supervised_loss(out, label, 0.4).item(), 0.4 * math.log(2), rel_tol=1e-5)
    ignored = torch.tensor([[[0, 255]]])  # the ignored pixel counts in neither term nor the normaliser
    assert math.isclose(supervised_loss(out, ignored, 1.0).item(), math.log(2), rel_tol=1e-5)
