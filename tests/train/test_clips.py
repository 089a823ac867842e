"""Clips as training reads them (vsda_train/clips.py): load-time resize and the configured flow source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import tiny_synth
from vsda_train.clips import domain_clips
from vsda_train.config import load_config
from vsda_train.flow import FlowNet2Files, flownet2_name


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_synth(tmp_path_factory.mktemp("synth") / "bench", frames=5, source_clips=1)


def test_source_resize_gives_frames_and_labels_at_the_recipe_size(synth: Path, tmp_path: Path) -> None:
    cfg = load_config(None, [f"data.source=viper:{synth}/source", "data.source_resize=[32,80]",
                             f"data.flow_cache={tmp_path / 'flow'}"])
    clips = domain_clips(cfg, "source", labels=True, with_flow=True)
    s = clips[0]
    assert s.frame.shape == (32, 80, 3) and s.prev.shape == (32, 80, 3)
    assert s.label.shape == (32, 80) and s.flow.shape == (32, 80, 2)
    native = domain_clips(load_config(None, [f"data.source=viper:{synth}/source"]), "source", True, False)[0]
    assert native.frame.shape == (64, 128, 3)  # no resize: the frames as stored
    assert set(np.unique(s.label)) <= set(np.unique(native.label))  # nearest-neighbour: no new ids


def test_flownet2_flow_source_reaches_training_clips(synth: Path, tmp_path: Path) -> None:
    """data.flow_source=flownet2:DIR: the published int16 x10 files are read and resized to the training size."""
    folder = tmp_path / "flownet2"
    folder.mkdir()
    cfg = load_config(None, [f"data.source=viper:{synth}/source", "data.source_resize=[32,64]",
                             f"data.flow_source=flownet2:{folder}"])
    clips = domain_clips(cfg, "source", labels=True, with_flow=False)
    for i in range(len(clips)):  # FlowNet2 archives hold flow at their own size: here 16x32, vectors (2.5, -1.0)
        raw = np.zeros((16, 32, 2), np.int16)
        raw[..., 0], raw[..., 1] = 25, -10
        np.save(folder / flownet2_name(*clips.pair_keys(i)), raw)
    clips = domain_clips(cfg, "source", labels=True, with_flow=True)
    assert isinstance(clips.flow, FlowNet2Files)
    flow = clips[0].flow
    assert flow.shape == (32, 64, 2)
    np.testing.assert_allclose(flow[..., 0], 5.0, rtol=1e-6)  # x2 for the larger training size
    np.testing.assert_allclose(flow[..., 1], -2.0, rtol=1e-6)
