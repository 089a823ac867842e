"""Helpers shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from vsda_train.models import SegmentationModel


def trained_like(model: SegmentationModel) -> SegmentationModel:
    """Return ``model`` in eval mode with non-trivial BN statistics and logits spanning +-10, as trained.

    Fresh weights leave BN as the identity and logits in the hundreds, where float32 noise alone
    exceeds an absolute tolerance; a trained model normalises and ends in moderate logits.
    """
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    model.eval()
    with torch.no_grad():
        scale = 10.0 / model(torch.randn(1, 3, 64, 128, generator=g)).abs().max()
        for conv in model.head.modules():  # the classifier convs: logits are linear in them
            if isinstance(conv, nn.Conv2d) and conv.out_channels == model.num_classes:
                conv.weight.mul_(scale)
                conv.bias.mul_(scale)
    return model


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread in the modules that import this fixture.

    Its OpenMP workers spin: on a busy 2-core machine two of them ran a width-8 model 30x slower
    than one (measured), and one thread also makes the tiny fits deterministic.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_synth(out: Path, frames: int, source_clips: int = 2, target_train_clips: int = 2,
               target_val_clips: int = 1) -> Path:
    """Generate a 128x64 synthetic benchmark into ``out`` (no source-val clips); return ``out``."""
    from vsda_train.synth.config import SynthConfig
    from vsda_train.synth.generate import generate

    generate(out, SynthConfig(width=128, height=64, source_clips=source_clips, source_val_clips=0,
                              target_train_clips=target_train_clips, target_val_clips=target_val_clips,
                              frames=frames))
    return out
