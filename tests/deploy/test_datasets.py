"""Dataset splits as frame sources with ground truth (vsda_deploy/datasets.py) on trees named as released.

The Cityscapes-VPS and Cityscapes-Seq trees use real names (``tests/deploy/data/fixtures.py`` and
``tests/deploy/data/test_cityscapes_seq.py`` cite the lists they come from). ``vsda-infer`` must see
the same videos, frame numbers and labels as the training readers: there is one reader per dataset.
"""

from pathlib import Path

import numpy as np
import pytest

from tests.deploy.data.fixtures import make_cityscapes_seq, make_vps
from tests.deploy.data.test_cityscapes_seq import REAL_VAL
from vsda_deploy.data import build_dataset
from vsda_deploy.datasets import load_ground_truth, open_dataset
from vsda_deploy.sources import SourceError


def stream(source) -> list:
    return list(source)


def test_cityscapes_vps_streams_img_all_with_image_ids_for_labelled_frames(tmp_path: Path) -> None:
    root = make_vps(tmp_path)
    source, gt = open_dataset(f"cityscapes-vps:{root}", "val", realtime=False)
    frames = stream(source)
    assert len(frames) == 60 and source.read == 60  # 2 videos x 30 frames
    names = [f.name for f in frames]
    assert names[0] == "frankfurt_000000_000275_leftImg8bit"
    assert names[4] == "0001_0001_frankfurt_000000_000279_newImg8bit"  # a labelled frame: its img/ name
    assert names[30 + 19] == "0005_0028_frankfurt_000000_001751_leftImg8bit"
    parsed = [source.frame_name(n) for n in names]
    assert [p.video for p in parsed] == ["0001"] * 30 + ["0005"] * 30
    assert [p.index for p in parsed[30:32]] == [1732, 1733]  # frame numbers, not FFFF
    assert sorted(gt.labelled) == sorted(p.stem for p in parsed if p.count is not None)
    assert len(gt.labelled) == 12 and gt.videos == {"0001", "0005"}
    assert frames[4].image[0, 0, 0] == 279 % 256
    semantic, instance = gt.labelled["0005_0028_frankfurt_000000_001751"].read()
    assert semantic.shape == (16, 32) and len(np.unique(instance[instance > 0])) == 4


def test_cityscapes_vps_faults_are_one_line(tmp_path: Path) -> None:
    root = make_vps(tmp_path)
    (root / "val" / "img_all" / "frankfurt_000000_001761_leftImg8bit.png").unlink()
    with pytest.raises(SourceError, match=r"^cityscapes-vps:.*frankfurt_000000_001761_leftImg8bit\.png: frame of "
                                          r"Cityscapes-VPS video 0005 not found; made by prepare_data/"):
        open_dataset(f"cityscapes-vps:{root}", "val", realtime=False)
    bare = make_vps(tmp_path / "bare", labels=())  # a test split: frames, no labels
    source, gt = open_dataset(f"cityscapes-vps:{bare}", "val", realtime=False)
    assert gt is None and len(stream(source)) == 60


def test_cityscapes_seq_groups_videos_as_the_training_reader(tmp_path: Path) -> None:
    root = make_cityscapes_seq(tmp_path, "val", REAL_VAL, before=19, after=10)
    source, gt = open_dataset(f"cityscapes-seq:{root}", "val", realtime=False)
    frames = stream(source)
    training = build_dataset(f"cityscapes-seq:{root}", split="val", labels=False, pad_start=True)
    assert [source.frame_name(f.name).video for f in frames] == [r.video for r in training.records]
    assert [source.frame_name(f.name).index for f in frames] == [r.index for r in training.records]
    assert sorted(gt.labelled) == ["frankfurt_000000_000294", "munster_000173_000019"]
    assert gt.videos == {"frankfurt_000000_000275", "munster_000173_000000"}
    semantic, instance = gt.labelled["frankfurt_000000_000294"].read()
    assert (semantic == build_dataset(f"cityscapes-seq:{root}", split="val")[0].label).all() and not instance.any()
    assert load_ground_truth(f"cityscapes-seq:{root}", "val", "synthia12").labelled.keys() == gt.labelled.keys()
