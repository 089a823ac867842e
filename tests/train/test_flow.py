"""Tests of vsda_train.flow: torch warping against cv2, occlusion, the DIS cache, FlowNet2 files."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import vsda_train.flow as vflow
from vsda_deploy import flow as dflow
from vsda_train.flow import (
    DISFlowCache,
    FlowNet2Files,
    default_cache_dir,
    flow_provider,
    flow_to_tensor,
    flownet2_name,
    occlusion_mask_torch,
    spec_root,
    warp,
)


def _quantised_flow(rng: np.random.Generator, h: int, w: int, amp: float = 3.0) -> np.ndarray:
    # cv2.remap rounds sampling positions to 1/32 px; on that grid it is exact, so the two can agree to 1e-5
    return np.round(rng.uniform(-amp, amp, (h, w, 2)) * 32).astype(np.float32) / 32


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    noise = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 0)


# ----------------------------------------------------------------------------------------- warp


def test_warp_matches_cv2_remap_bilinear():
    rng = np.random.default_rng(0)
    h, w, c = 24, 32, 6  # 6 channels: the numpy warp remaps them in chunks of 4
    data = rng.random((h, w, c)).astype(np.float32)
    flow = _quantised_flow(rng, h, w)
    ref, ref_valid = dflow.warp(data, flow)
    out, valid = warp(torch.from_numpy(data).permute(2, 0, 1)[None], flow_to_tensor(flow))
    out = out[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(valid[0, 0].numpy(), ref_valid)
    assert ref_valid.mean() > 0.7
    np.testing.assert_allclose(out[ref_valid], ref[ref_valid], atol=1e-5)
    np.testing.assert_allclose(out, ref, atol=1e-5)  # out of view: both repeat the border


def test_warp_nearest_labels_match_cv2_and_keep_dtype():
    rng = np.random.default_rng(1)
    h, w = 20, 28
    labels = rng.integers(0, 15, (h, w)).astype(np.uint8)
    # fractions away from .5 so both roundings pick the same pixel
    frac = rng.choice([0.125, 0.25, 0.75, 0.875], (h, w, 2))
    flow = (rng.integers(-3, 4, (h, w, 2)) + frac).astype(np.float32)
    ref, ref_valid = dflow.warp(labels, flow, nearest=True)
    out, valid = warp(torch.from_numpy(labels.astype(np.int64))[None, None], flow_to_tensor(flow), mode="nearest")
    assert out.dtype == torch.int64
    np.testing.assert_array_equal(out[0, 0].numpy()[ref_valid], ref[ref_valid])
    np.testing.assert_array_equal(valid[0, 0].numpy(), ref_valid)


def test_translation_is_undone_and_border_marked_invalid():
    rng = np.random.default_rng(2)
    h, w, dx, dy = 16, 20, 3, 2
    prev = torch.from_numpy(rng.random((1, 3, h, w)).astype(np.float32))
    current = torch.zeros_like(prev)
    current[..., dy:, dx:] = prev[..., : h - dy, : w - dx]  # the scene moved right 3, down 2
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0], flow[:, 1] = -dx, -dy  # pixel (x, y) of t is at (x-3, y-2) in t-1
    out, valid = warp(prev, flow)
    expected_valid = torch.zeros(1, 1, h, w, dtype=torch.bool)
    expected_valid[..., dy:, dx:] = True
    assert torch.equal(valid, expected_valid)
    torch.testing.assert_close(out[..., dy:, dx:], current[..., dy:, dx:], rtol=0, atol=1e-6)


def test_subpixel_shift_interpolates_linearly():
    ramp = torch.arange(8, dtype=torch.float32).view(1, 1, 1, 8).expand(1, 1, 4, 8).contiguous()
    flow = torch.zeros(1, 2, 4, 8)
    flow[:, 0] = -0.5
    out, valid = warp(ramp, flow)
    # value at x is x; sampled at x - 0.5 -> x - 0.5, and x = 0 reaches outside the image
    torch.testing.assert_close(out[0, 0, :, 1:], ramp[0, 0, :, 1:] - 0.5)
    assert not valid[0, 0, :, 0].any() and valid[0, 0, :, 1:].all()


def test_gradient_reaches_the_warped_tensor():
    x = torch.rand(1, 4, 10, 12, requires_grad=True)
    flow = torch.zeros(1, 2, 10, 12)
    flow[:, 0] = -2
    out, valid = warp(torch.softmax(x, 1), flow)
    (out * valid).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # output x in [2, 12) reads input x - 2 in [0, 10); input columns 10 and 11 are never read
    probs = torch.rand(1, 4, 10, 12, requires_grad=True)
    out, valid = warp(probs, flow)
    (out * valid).sum().backward()
    torch.testing.assert_close(probs.grad[..., :10], torch.ones(1, 4, 10, 10))  # bilinear weights sum to 1
    assert probs.grad[..., 10:].abs().max() < 1e-5


def test_warp_rejects_mismatched_flow():
    with pytest.raises(ValueError, match="does not match"):
        warp(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 9))
    with pytest.raises(ValueError, match="nearest"):
        warp(torch.zeros(1, 1, 8, 8, dtype=torch.long), torch.zeros(1, 2, 8, 8))


# ------------------------------------------------------------------------------------ occlusion


def _moving_square() -> tuple[np.ndarray, np.ndarray]:
    """Return (flow_bw, flow_fw) of a 10 px square moving 4 px right over a static background."""
    h, w = 16, 32
    flow_bw = np.zeros((h, w, 2), np.float32)
    flow_fw = np.zeros((h, w, 2), np.float32)
    flow_bw[4:12, 14:24, 0] = -4  # square at x in [14, 24) at t came from [10, 20)
    flow_fw[4:12, 10:20, 0] = 4  # square at x in [10, 20) at t-1 goes to [14, 24)
    return flow_bw, flow_fw


def test_occlusion_flags_uncovered_background():
    flow_bw, flow_fw = _moving_square()
    expected = np.zeros(flow_bw.shape[:2], bool)
    expected[4:12, 10:14] = True  # background at t that the square hid at t-1
    np.testing.assert_array_equal(dflow.occlusion_mask(flow_fw, flow_bw), expected)
    mask = occlusion_mask_torch(flow_fw=flow_to_tensor(flow_fw), flow_bw=flow_to_tensor(flow_bw))
    assert mask.shape == (1, 1, 16, 32) and mask.dtype == torch.bool
    np.testing.assert_array_equal(mask[0, 0].numpy(), expected)


def test_occlusion_torch_agrees_with_numpy_and_flags_out_of_view():
    rng = np.random.default_rng(3)
    flow_bw, flow_fw = _quantised_flow(rng, 20, 24, 2.0), _quantised_flow(rng, 20, 24, 2.0)
    flow_bw[:, :2, 0] = -5  # the two left columns look outside frame t-1
    ref = dflow.occlusion_mask(flow_fw, flow_bw)
    mask = occlusion_mask_torch(flow_fw=flow_to_tensor(flow_fw), flow_bw=flow_to_tensor(flow_bw))[0, 0].numpy()
    np.testing.assert_array_equal(mask, ref)
    assert mask[:, :2].all() and 0.05 < mask.mean() < 0.95
    with pytest.raises(TypeError):
        occlusion_mask_torch(flow_to_tensor(flow_bw), flow_to_tensor(flow_fw))  # keyword-only on purpose


# ------------------------------------------------------------------------------------ DIS cache


@pytest.fixture
def dis_calls(monkeypatch):
    calls = []

    def counting(frame_t, frame_prev, preset="medium", dis=None):
        calls.append(preset)
        return dflow.dis_flow(frame_t, frame_prev, preset, dis)

    monkeypatch.setattr(vflow, "dis_flow", counting)
    return calls


def _shifted_pair(h: int = 64, w: int = 80, dx: int = 2) -> tuple[np.ndarray, np.ndarray]:
    prev = _texture(np.random.default_rng(4), h, w)
    return np.roll(prev, dx, axis=1), prev  # frame t = t-1 moved dx px right


def test_dis_cache_round_trip_computes_once(tmp_path, dis_calls):
    frame_t, frame_prev = _shifted_pair()
    cache = DISFlowCache(tmp_path / "cache", "fast")
    first = cache("seq/a_00002", "seq/a_00001", frame_t, frame_prev)
    assert dis_calls == ["fast"]
    assert first.dtype == np.float32 and first.shape == (64, 80, 2)
    # backward flow of a scene moved 2 px right points 2 px left (sign of the vsda convention)
    assert abs(np.median(first[8:-8, 8:-8, 0]) + 2) < 0.25 and abs(np.median(first[8:-8, 8:-8, 1])) < 0.25
    again = DISFlowCache(tmp_path / "cache", "fast")("seq/a_00002", "seq/a_00001", frame_t, frame_prev)
    assert dis_calls == ["fast"]  # a second provider on the same folder reads the file
    np.testing.assert_array_equal(again, first)
    direct = dflow.dis_flow(frame_t, frame_prev, "fast")
    assert np.abs(first - direct).max() <= np.abs(direct).max() * 2 ** -11 + 1e-6  # float16 storage
    files = sorted(p.relative_to(tmp_path / "cache") for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert len(files) == 1 and files[0].suffix == ".npy" and files[0].parent.name == files[0].name[:2]
    assert np.load(tmp_path / "cache" / files[0]).dtype == np.float16
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "cache" / files[0]).stat().st_mode & 0o777 == 0o666 & ~umask  # shareable, unlike mkstemp


def test_dis_cache_key_includes_pair_preset_and_shape(tmp_path, dis_calls):
    frame_t, frame_prev = _shifted_pair()
    cache = DISFlowCache(tmp_path, "fast")
    cache("a_00002", "a_00001", frame_t, frame_prev)
    cache("a_00002", "a_00000", frame_t, frame_prev)
    cache("a_00002", "a_00001", frame_t[:32], frame_prev[:32])
    DISFlowCache(tmp_path, "ultrafast")("a_00002", "a_00001", frame_t, frame_prev)
    assert dis_calls == ["fast", "fast", "fast", "ultrafast"]
    assert len(list(tmp_path.rglob("*.npy"))) == 4
    assert cache.has("a_00002", "a_00001", (64, 80)) and not cache.has("a_00002", "a_00001", (64, 81))


def test_dis_cache_write_is_atomic(tmp_path, monkeypatch, dis_calls):
    frame_t, frame_prev = _shifted_pair()
    cache = DISFlowCache(tmp_path, "fast")

    def crash(f, array):  # a worker killed half-way through the write
        f.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(vflow.np, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        cache("a_00002", "a_00001", frame_t, frame_prev)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no half file, no temp file
    monkeypatch.undo()
    cache("a_00002", "a_00001", frame_t, frame_prev)
    assert [p.suffix for p in tmp_path.rglob("*") if p.is_file()] == [".npy"]


def test_dis_cache_without_compute_names_the_missing_pair(tmp_path, dis_calls):
    frame_t, frame_prev = _shifted_pair()
    cache = DISFlowCache(tmp_path, "medium", compute=False)
    with pytest.raises(FileNotFoundError) as err:
        cache("city/b_000012_leftImg8bit.png", "city/b_000011_leftImg8bit.png", frame_t, frame_prev)
    message = str(err.value)
    assert message.startswith(str(tmp_path)) and "b_000012" in message and "b_000011" in message
    assert "vsda-train flow" in message and dis_calls == []


def test_dis_cache_survives_pickling(tmp_path, dis_calls):
    import pickle

    frame_t, frame_prev = _shifted_pair()
    cache = DISFlowCache(tmp_path, "fast")
    cache("a_00002", "a_00001", frame_t, frame_prev)  # creates the per-thread DIS object
    clone = pickle.loads(pickle.dumps(cache))  # what a DataLoader worker receives
    clone("a_00003", "a_00002", frame_t, frame_prev)
    assert dis_calls == ["fast", "fast"]


def test_dis_cache_at_half_scale_stores_small_and_returns_full_size(tmp_path, dis_calls):
    frame_t, frame_prev = _shifted_pair(dx=4)
    cache = DISFlowCache(tmp_path, "fast", scale=0.5)
    flow = cache("a_00002", "a_00001", frame_t, frame_prev)
    (stored,) = tmp_path.rglob("*.npy")
    assert np.load(stored).shape == (32, 40, 2) and flow.shape == (64, 80, 2)
    assert abs(np.median(flow[8:-8, 8:-8, 0]) + 4) < 0.5  # 2 px at half size, rescaled to 4
    assert not DISFlowCache(tmp_path, "fast").has("a_00002", "a_00001", (64, 80))  # scale is in the key
    with pytest.raises(ValueError, match="scale"):
        DISFlowCache(tmp_path, scale=0)


def test_dis_cache_rejects_frames_of_different_size(tmp_path):
    frame_t, frame_prev = _shifted_pair()
    with pytest.raises(ValueError, match="a_00002"):
        DISFlowCache(tmp_path)("a_00002", "a_00001", frame_t, frame_prev[:32])


# -------------------------------------------------------------------------------- cache location


def test_default_cache_dir_in_dataset_root(tmp_path):
    assert default_cache_dir(tmp_path, "fast") == tmp_path.resolve() / ".vsda_flow" / "fast"
    assert (tmp_path / ".vsda_flow" / "fast").is_dir()
    video = tmp_path / "drive.mp4"
    video.write_bytes(b"")
    assert default_cache_dir(video) == tmp_path.resolve() / ".vsda_flow" / "medium"


def test_default_cache_dir_falls_back_when_root_is_read_only(tmp_path, monkeypatch):
    root = tmp_path / "ro_dataset"
    root.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(vflow, "_writable", lambda folder: not str(folder).startswith(str(root)))
    with pytest.warns(UserWarning, match="not writable"):
        folder = default_cache_dir(root, "medium")
    assert folder.parent.parent == tmp_path / "xdg" / "vsda" / "flow" and folder.name == "medium"
    assert folder.parent.name.startswith("ro_dataset-")
    with pytest.raises(FileNotFoundError, match="missing"):
        default_cache_dir(tmp_path / "missing")


def test_spec_root_and_flow_provider(tmp_path):
    assert spec_root("viper:/data/viper") == Path("/data/viper")
    assert spec_root("cityscapes-vps:/d/vps") == Path("/d/vps")
    assert spec_root("/plain/folder") == Path("/plain/folder")
    provider = flow_provider("dis", root=tmp_path, preset="fast", compute=False)
    assert isinstance(provider, DISFlowCache) and provider.cache_dir == tmp_path.resolve() / ".vsda_flow" / "fast"
    assert isinstance(flow_provider(f"flownet2:{tmp_path}"), FlowNet2Files)
    with pytest.raises(ValueError, match="raft"):
        flow_provider("raft")


# ------------------------------------------------------------------------------------- FlowNet2


def test_flownet2_names_follow_the_published_archives():
    assert flownet2_name("aachen/aachen_000000_000019_leftImg8bit.png",
                         "aachen/aachen_000000_000018_leftImg8bit.png") == \
        "aachen_000000_000019_000018_int16_x10.npy"
    assert flownet2_name("aachen_000000_000019_leftImg8bit", "aachen_000000_000016_leftImg8bit") == \
        "aachen_000000_000019_000016_int16_x10.npy"  # TPS interval k = 3
    assert flownet2_name("001/001_00010.jpg", "001/001_00009.jpg") == "001_0001000009_int16_x10.npy"
    assert flownet2_name("000002.png", "000001.png") == "000002_int16_x10.npy"
    with pytest.raises(ValueError, match="t-1"):
        flownet2_name("000003.png", "000001.png")
    with pytest.raises(ValueError, match="frame.jpeg"):
        flownet2_name("frame.jpeg", "other.jpeg")


def test_flownet2_reader_scales_int16_by_ten(tmp_path):
    raw = np.zeros((4, 6, 2), np.int16)
    raw[..., 0], raw[..., 1] = -25, 13
    raw[0, 0] = (32767, -32768)
    np.save(tmp_path / "001_0001000009_int16_x10.npy", raw)
    frames = np.zeros((4, 6, 3), np.uint8)
    flow = FlowNet2Files(tmp_path)("001/001_00010.jpg", "001/001_00009.jpg", frames, frames)
    assert flow.dtype == np.float32 and flow.shape == (4, 6, 2)
    np.testing.assert_allclose(flow[1:, 1:, 0], -2.5)
    np.testing.assert_allclose(flow[1:, 1:, 1], 1.3, rtol=1e-6)
    np.testing.assert_allclose(flow[0, 0], [3276.7, -3276.8], rtol=1e-6)


def test_flownet2_reader_resizes_to_frames_and_finds_vps_names(tmp_path):
    raw = np.zeros((4, 8, 2), np.int16)
    raw[..., 0], raw[..., 1] = 15, -10  # 1.5 px, -1 px at half resolution
    (tmp_path / "frankfurt").mkdir()
    np.save(tmp_path / "frankfurt" / "frankfurt_000000_001736_001735_int16_x10.npy", raw)
    frames = np.zeros((8, 16, 3), np.uint8)
    reader = FlowNet2Files(tmp_path)
    flow = reader("img_all/0001_0026_frankfurt_000000_001736_leftImg8bit.png",
                  "img_all/0001_0025_frankfurt_000000_001735_leftImg8bit.png", frames, frames)
    assert flow.shape == (8, 16, 2)
    np.testing.assert_allclose(flow[..., 0], 3.0, rtol=1e-6)
    np.testing.assert_allclose(flow[..., 1], -2.0, rtol=1e-6)
    flow = reader("frankfurt/frankfurt_000000_001736_leftImg8bit.png",
                  "frankfurt/frankfurt_000000_001735_leftImg8bit.png", frames, frames)
    np.testing.assert_allclose(flow[..., 0], 3.0, rtol=1e-6)


def test_flownet2_reader_errors_name_the_file(tmp_path):
    frames = np.zeros((4, 6, 3), np.uint8)
    reader = FlowNet2Files(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        reader("001_00010.jpg", "001_00009.jpg", frames, frames)
    assert str(err.value).startswith(str(tmp_path / "001_0001000009_int16_x10.npy"))
    np.save(tmp_path / "001_0001000009_int16_x10.npy", np.zeros((4, 6, 2), np.float32))
    with pytest.raises(ValueError, match="int16"):
        reader("001_00010.jpg", "001_00009.jpg", frames, frames)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FlowNet2Files(tmp_path / "nowhere")
