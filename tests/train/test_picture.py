"""The before/after picture (vsda_train/picture.py, `vsda-train picture`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from tests.export.test_onnx_export import random_checkpoint
from tests.helpers import one_torch_thread, tiny_synth  # noqa: F401 (fixture)
from vsda_train.cli import app
from vsda_train.picture import overlay


def test_overlay_blends_class_colours_and_dims_void() -> None:
    rgb = np.full((1, 2, 3), 100, np.uint8)
    colours = np.zeros((256, 3), np.float32)
    colours[3] = (200, 0, 0)
    out = overlay(rgb, np.array([[3, 255]], np.uint8), colours)
    assert out[0, 0].tolist() == [165, 35, 35] and out[0, 1].tolist() == [35, 35, 35]


def test_picture_rows_are_frames_and_columns_the_checkpoints(tmp_path: Path) -> None:
    synth = tiny_synth(tmp_path / "synth", frames=5)
    ckpt = random_checkpoint(tmp_path / "a.pt")
    out = tmp_path / "ba.png"
    res = CliRunner().invoke(app, ["picture", f"one={ckpt}", f"two={ckpt}", "--data",
                                   f"cityscapes-vps:{synth}/target", "-o", str(out), "--frames", "2"])
    assert res.exit_code == 0, res.output
    img = cv2.imread(str(out))
    tile_h = 22 + round(64 * 384 / 128)  # title bar + a 128x64 frame shown 384 px wide
    assert img.shape[:2] == (2 * (tile_h + 4), 4 * (384 + 4))
    assert CliRunner().invoke(app, ["picture", "nonsense", "--data", "x"]).exit_code == 2
    missing = tmp_path / "missing.pt"
    res = CliRunner().invoke(app, ["picture", f"one={missing}", "--data", f"cityscapes-vps:{synth}/target",
                                   "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1 and str(missing) in res.stderr
