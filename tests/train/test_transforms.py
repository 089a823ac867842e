"""Clip transforms keep frame, neighbour, label and flow consistent."""

import numpy as np
import pytest

from vsda_deploy.flow import warp
from vsda_train.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform


def _clip(shift: int = 4) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    prev = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    import cv2

    prev = cv2.GaussianBlur(prev, (0, 0), 2.0)  # smooth texture: bilinear warps stay exact-ish
    frame = np.roll(prev, shift, axis=1)  # content moves right: x in t is x - shift in t-1
    flow = np.zeros((64, 96, 2), np.float32)
    flow[..., 0] = -shift
    label = np.zeros((64, 96), np.uint8)
    return frame, prev, label, flow


def _to_uint8(x) -> np.ndarray:
    img = x.permute(1, 2, 0).numpy() * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return np.clip(img * 255, 0, 255).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_flow_follows_rescale_crop_and_flip(seed: int) -> None:
    frame, prev, label, flow = _clip()
    t = ClipTransform(size=(24, 40), scale_range=(0.5, 1.5), hflip=True)
    out = t(frame, prev, label, flow, np.random.default_rng(seed))
    f, p, fl = _to_uint8(out["frame"]), _to_uint8(out["prev"]), out["flow"].permute(1, 2, 0).numpy()
    warped, valid = warp(p, fl)
    inner = valid.copy()
    inner[:, :4] = inner[:, -4:] = False
    assert np.abs(warped - f)[inner].mean() < 3.0  # grey levels out of 255
    assert out["label"].shape == (24, 40) and out["frame"].shape == (3, 24, 40)


def test_pad_when_crop_is_larger_than_frame() -> None:
    frame, prev, label, _ = _clip()
    out = ClipTransform(size=(80, 100), hflip=False)(frame, prev, label, None, np.random.default_rng(0))
    lab = out["label"].numpy()
    assert lab.shape == (80, 100) and (lab[64:] == 255).all() and (lab[:64, :96] == 0).all()


def test_same_photometric_change_for_both_frames() -> None:
    frame, prev, label, flow = _clip(shift=0)
    out = ClipTransform(size=(64, 96), hflip=False, photometric="strong")(
        frame, prev, label, flow, np.random.default_rng(5))
    assert np.allclose(out["frame"].numpy(), out["prev"].numpy())


def test_unknown_photometric_level() -> None:
    frame, prev, label, flow = _clip()
    with pytest.raises(ValueError, match="photometric augmentation 'wild'"):
        ClipTransform(size=(8, 8), photometric="wild")(frame, prev, label, flow, np.random.default_rng(0))
