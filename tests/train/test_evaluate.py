"""Checkpoint scoring predicts at the training scale and scores at the labels' resolution (vsda_train/evaluate.py)."""

from __future__ import annotations

import numpy as np
import torch

from vsda_deploy.preprocess import CAFFE
from vsda_train.evaluate import checkpoint_inputs, predictor


class _Recorder(torch.nn.Module):
    """Logits: class 1 where the first input channel is positive, at the input's size; records input sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        return torch.cat([torch.zeros_like(x[:, :1]), x[:, :1]], 1)


def test_predictor_runs_at_the_eval_size_and_answers_at_the_frame_size() -> None:
    frame = np.zeros((64, 128, 3), np.uint8)
    frame[:, 64:] = 255  # right half bright: class 1 there
    model = _Recorder()
    label = predictor(model, size=(32, 64))(frame)
    assert model.sizes == [(32, 64)] and label.shape == (64, 128)
    assert (label[:, :60] == 0).all() and (label[:, 68:] == 1).all()
    predictor(model)(frame)
    assert model.sizes[-1] == (64, 128)  # no eval size: the frame's own


def test_checkpoint_inputs_read_eval_size_and_preprocess() -> None:
    size, norm = checkpoint_inputs({"eval_size": [512, 1024], "config": {"model": {"preprocess": "caffe"}}})
    assert size == (512, 1024) and norm == CAFFE
    size, norm = checkpoint_inputs({})  # checkpoints written before either was recorded
    assert size is None and norm.channel_order == "rgb"
