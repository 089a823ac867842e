"""Clip transforms keep frame, neighbour, label and flow consistent."""

import numpy as np
import pytest

from vsda_deploy.flow import warp
from vsda_deploy.preprocess import CAFFE, IMAGENET, denormalise
from vsda_train.clips import ScaledClips
from vsda_train.flow import DISFlowCache
from vsda_train.transforms import ClipTransform, Photometric, _jitter_params, apply_photometric


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


def _to_uint8(x, norm=IMAGENET) -> np.ndarray:
    return denormalise(x.numpy(), norm).astype(np.float32)


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
    valid = out["valid"].numpy()
    assert valid.dtype == bool and valid[:64, :96].all() and not valid[64:].any() and not valid[:, 96:].any()


def test_same_photometric_change_for_both_frames() -> None:
    frame, prev, label, flow = _clip(shift=0)
    out = ClipTransform(size=(64, 96), hflip=False, photometric="strong")(
        frame, prev, label, flow, np.random.default_rng(5))
    assert np.allclose(out["frame"].numpy(), out["prev"].numpy())


def test_unknown_photometric_level() -> None:
    frame, prev, label, flow = _clip()
    with pytest.raises(ValueError, match="photometric augmentation 'wild'"):
        ClipTransform(size=(8, 8), photometric="wild")(frame, prev, label, flow, np.random.default_rng(0))


def test_tps_level_draws_as_tps_augments() -> None:
    """TPS (xing0047/TPS, train_video_UDA.py) strong-augments the target frames with
    ``GaussianBlur(radius=choice([7, 9, 11]))`` p 0.6, ``ColorJitter(0.8, 0.8, 0.8, 0.2)`` p 0.8 and
    ``RandomGrayscale(p=0.2)`` on 1024x512 frames (hue 0.2 of a turn = 72 degrees)."""
    level = Photometric.level("tps")
    rng = np.random.default_rng(0)
    draws = [_jitter_params(level, rng) for _ in range(4000)]
    jittered = np.mean([d["brightness"] != 1.0 for d in draws])
    assert abs(jittered - 0.8) < 0.02
    assert abs(np.mean([d["grey"] for d in draws]) - 0.2) < 0.02
    assert abs(np.mean([d["blur"] > 0 for d in draws]) - 0.6) < 0.025
    on = [d for d in draws if d["brightness"] != 1.0]
    for key, lo, hi in (("brightness", 0.2, 1.8), ("contrast", 0.2, 1.8), ("saturation", 0.2, 1.8), ("hue", -72, 72)):
        values = np.array([d[key] for d in on])
        assert lo <= values.min() < lo + 0.05 * (hi - lo) and hi - 0.05 * (hi - lo) < values.max() <= hi, key
    blurs = np.array([d["blur"] for d in draws if d["blur"] > 0])
    assert 7.0 <= blurs.min() and blurs.max() <= 11.0


def test_greyscale_is_luma_and_blur_scales_with_the_frame_width() -> None:
    import cv2

    image = np.random.default_rng(1).integers(0, 256, (32, 256, 3), dtype=np.uint8)
    still = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0, "blur": 0.0,
             "noise_seed": 0, "noise_std": 0.0}
    grey = apply_photometric(image, {**still, "grey": True})
    colour = apply_photometric(image, {**still, "grey": False})  # the same change before greyscale
    luma = colour.astype(np.float64) @ [0.299, 0.587, 0.114]  # ITU-R 601, as torchvision's Grayscale
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert np.abs(grey[..., 0] - luma).max() <= 1
    # sigma 8 on 1024-pixel frames is sigma 2 on a 256-pixel one
    blurred = apply_photometric(image, {**still, "blur": 8.0, "blur_width": 1024})
    expected = np.clip(cv2.GaussianBlur(colour.astype(np.float32), (0, 0), 2.0), 0, 255).astype(np.uint8)
    assert np.array_equal(blurred, expected)


class _PairDataset:
    """A one-sample clip dataset in memory (the ClipDataset contract ScaledClips reads)."""

    flow = None
    label_space = None

    def __init__(self, frame: np.ndarray, prev: np.ndarray, label: np.ndarray) -> None:
        from vsda_deploy.data import ClipSample

        self.sample = ClipSample(frame, prev, label, None, {"name": "f.png"})
        self.records = []

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int):
        return self.sample

    def frames(self, i: int):
        return self.sample.frame, self.sample.prev

    def pair_keys(self, i: int) -> tuple[str, str]:
        return "t.png", "prev.png"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_load_time_resize_then_scale_crop_flip_keep_dis_flow_consistent(tmp_path, seed: int) -> None:
    """The recipe's path: frames resized at load (here 192x288 -> 96x144), DIS flow computed and cached on
    the resized frames, then rescale / crop / flip: the neighbour warped by the flow matches frame t."""
    import cv2

    rng = np.random.default_rng(seed)
    prev = cv2.GaussianBlur((rng.random((192, 288, 3)) * 255).astype(np.uint8), (0, 0), 3.0)
    frame = np.roll(prev, (4, 6), axis=(0, 1))  # content moves down 4, right 6 at full resolution
    cache = DISFlowCache(tmp_path / "flow", "medium")
    clips = ScaledClips(_PairDataset(frame, prev, np.zeros((192, 288), np.uint8)), (96, 144), cache)
    sample = clips[0]
    assert sample.frame.shape == (96, 144, 3) and sample.label.shape == (96, 144)
    stored = np.load(next((tmp_path / "flow").rglob("*.npy")))
    assert stored.shape == (96, 144, 2)  # the cache holds flow at the training resolution
    assert np.allclose(np.median(sample.flow[20:-20, 20:-20], axis=(0, 1)), [-3.0, -2.0], atol=0.25)
    out = ClipTransform((40, 64), (0.7, 1.3), hflip=True)(*tuple(sample)[:4], np.random.default_rng(seed))
    f, p, fl = _to_uint8(out["frame"]), _to_uint8(out["prev"]), out["flow"].permute(1, 2, 0).numpy()
    warped, valid = warp(p, fl)
    inner = valid.copy()
    inner[:6] = inner[-6:] = False
    inner[:, :6] = inner[:, -6:] = False
    assert np.abs(warped - f)[inner].mean() < 4.0  # grey levels out of 255


def test_caffe_normalisation_is_bgr_minus_mean() -> None:
    """model.preprocess=caffe: BGR, 0-255, the Caffe mean subtracted, no std (DeepLab / ADVENT / DA-VSN input)."""
    frame, prev, label, _ = _clip(shift=0)
    out = ClipTransform(size=(64, 96), hflip=False, norm=CAFFE)(frame, prev, label, None, np.random.default_rng(0))
    x = out["frame"].numpy()
    expected = frame[..., ::-1].astype(np.float64) - np.array([104.00698793, 116.66876762, 122.67891434])
    assert np.abs(x.transpose(1, 2, 0) - expected).max() < 1e-3
    assert np.array_equal(denormalise(x, CAFFE), frame)


def test_hflip_false_never_mirrors() -> None:
    """data.hflip=false (DA-VSN: no flip): over many seeds the crop is always the frame as it is."""
    frame, prev, label, flow = _clip()
    label = np.tile(np.arange(96, dtype=np.uint8), (64, 1))  # the column index: a mirror reverses it
    for seed in range(20):
        for hflip, mirrored in ((False, 0), (True, None)):
            out = ClipTransform(size=(64, 96), hflip=hflip)(frame, prev, label, flow, np.random.default_rng(seed))
            lab = out["label"].numpy()
            if mirrored == 0:
                assert (lab[0] == np.arange(96)).all()
    flips = sum((ClipTransform(size=(64, 96), hflip=True)(frame, prev, label, flow, np.random.default_rng(s))
                 ["label"].numpy()[0, 0] == 95) for s in range(20))
    assert 0 < flips < 20  # with hflip the same seeds do mirror some clips


@pytest.mark.parametrize("seed", range(6))
def test_instance_ids_move_with_the_label(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    frame = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    instance = rng.integers(1, 400, (40, 60)).astype(np.int32)
    label = (instance % 15).astype(np.uint8)
    t = ClipTransform((48, 56), scale_range=(0.7, 1.4), instances=True)
    out = t(frame, None, label, None, np.random.default_rng(seed), instance=instance)
    labelled = out["label"] != 255  # padding: no label and no instance
    assert (out["label"][labelled] == out["instance"][labelled] % 15).all()
    assert (out["instance"][~labelled] == 0).all()
    unknown = t(frame, None, label, None, np.random.default_rng(seed), instance=None)
    assert (unknown["instance"][labelled] == -1).all()
    assert "instance" not in ClipTransform((48, 56))(frame, None, label, None, np.random.default_rng(seed))
