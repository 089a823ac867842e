"""Temporal smoothing of class probabilities (vsda_deploy/smoothing.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vsda_deploy.smoothing import (
    StreamingSmoother,
    confidence_weight,
)

H, W, C, MARGIN = 128, 256, 5, 16


def _soft(labels: np.ndarray, peak: float = 0.5) -> np.ndarray:
    """Return (C, H, W) probabilities with ``peak`` on ``labels`` and the rest shared."""
    probs = np.full((C, *labels.shape), (1 - peak) / (C - 1), np.float32)
    np.put_along_axis(probs, labels[None], peak, axis=0)
    return probs


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return a smooth random RGB texture and a blobby label map, both with a MARGIN border."""
    rng = np.random.default_rng(seed)
    big = (H + 2 * MARGIN, W + 2 * MARGIN)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (*big, 3), dtype=np.uint8), (0, 0), 4)
    noise = rng.standard_normal((C, big[0] // 16, big[1] // 16)).astype(np.float32)
    labels = np.stack([cv2.resize(n, big[::-1], interpolation=cv2.INTER_CUBIC) for n in noise]).argmax(0)
    return texture, labels


def _view(array: np.ndarray, dx: int = 0, dy: int = 0) -> np.ndarray:
    """Return the (H, W) window of a MARGIN-padded array whose content moved by (dx, dy)."""
    return np.ascontiguousarray(array[MARGIN - dy:MARGIN - dy + H, MARGIN - dx:MARGIN - dx + W])


def _textures_with_mean(means: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [np.clip(rng.normal(m, 20, (H, W, 3)), 0, 255).astype(np.uint8) for m in means]


def test_none_passes_through() -> None:
    smoother = StreamingSmoother("none")
    texture, labels = _scene()
    for dx in (0, 3, 6):
        probs = _soft(_view(labels, dx))
        out = smoother.update(_view(texture, dx), probs)
        assert np.array_equal(out, probs)
    assert smoother.timing.total_ms == 0.0


def test_ema_is_the_hand_computed_blend() -> None:
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    p1, p2, p3 = (rng.dirichlet(np.ones(C), (H, W)).transpose(2, 0, 1).astype(np.float32) * 0.8 + 0.2 / C
                  for _ in range(3))  # every max prob below 0.84: under the 0.9 gate
    p3[:, 0, 0] = [0.95, 0.05, 0, 0, 0]  # confident: a = 0.6 * (1 - 0.95) / (1 - 0.9) = 0.3
    smoother = StreamingSmoother("ema", alpha=0.6, confidence_gate=0.9)
    assert np.array_equal(smoother.update(frame, p1), p1)  # the first frame restarts
    out2 = smoother.update(frame, p2).copy()
    np.testing.assert_allclose(out2, 0.4 * p2 + 0.6 * p1, atol=1e-6)
    out3 = smoother.update(frame, p3)
    expected = 0.4 * p3 + 0.6 * out2
    expected[:, 0, 0] = 0.7 * p3[:, 0, 0] + 0.3 * out2[:, 0, 0]
    np.testing.assert_allclose(out3, expected, atol=1e-6)
    assert smoother.weight[0, 0] == pytest.approx(0.3) and smoother.weight[5, 5] == pytest.approx(0.6)
    assert smoother.scene_cuts == 0 and smoother.restarts == 1


def test_confidence_weight_values() -> None:
    probs = np.zeros((2, 1, 4), np.float32)
    probs[0, 0] = [0.5, 0.9, 0.95, 1.0]
    probs[1, 0] = 1 - probs[0, 0]
    np.testing.assert_allclose(confidence_weight(probs, 0.9)[0], [1.0, 1.0, 0.5, 0.0], atol=1e-6)
    np.testing.assert_array_equal(confidence_weight(probs, 1.0)[0], [1, 1, 1, 1])


@pytest.mark.parametrize("current", ["shifted", "uninformative"])
def test_flow_follows_a_translation_and_ema_does_not(current: str) -> None:
    texture, labels = _scene()
    dx, dy = 6, 4  # the content moves right and down
    shifted = _view(labels, dx, dy)
    agreement = {}
    for mode in ("flow", "ema"):
        smoother = StreamingSmoother(mode)
        smoother.update(_view(texture), _soft(_view(labels)))
        probs = _soft(shifted) if current == "shifted" else np.full((C, H, W), 1 / C, np.float32)
        out = smoother.update(_view(texture, dx, dy), probs)
        agreement[mode] = (out.argmax(0) == shifted)[MARGIN:-MARGIN, MARGIN:-MARGIN].mean()
        assert smoother.scene_cuts == 0
    # with an uninformative current prediction the output is the warped past: flow moved it, ema did not
    assert agreement["flow"] > (0.99 if current == "shifted" else 0.95)
    assert agreement["ema"] < 0.7


def test_out_of_view_pixels_take_the_current_prediction() -> None:
    texture, _ = _scene()
    dx, dy = 6, 4  # columns < dx and rows < dy of frame 2 were not in frame 1
    past = np.zeros((C, H, W), np.float32)
    past[0] = 1.0
    current = np.full((C, H, W), 1 / C, np.float32)
    smoother = StreamingSmoother("flow", alpha=0.6)
    smoother.update(_view(texture), past)
    out = smoother.update(_view(texture, dx, dy), current)
    # one pixel of margin: the weight map is upsampled from half resolution
    assert np.array_equal(out[:, :, :dx - 1], current[:, :, :dx - 1])
    assert np.array_equal(out[:, :dy - 1], current[:, :dy - 1])
    assert (smoother.weight[:, :dx - 1] == 0).all()
    inner = smoother.weight[MARGIN:-MARGIN, MARGIN:-MARGIN]
    assert inner.min() == pytest.approx(0.6)  # visible, unconfident pixels keep the full alpha


@pytest.mark.parametrize("mode", ["flow", "ema"])
def test_scene_cut_gap_and_reset_restart(mode: str) -> None:
    dark, bright = _textures_with_mean((70, 170))
    p1, p2 = _soft(np.zeros((H, W), np.int64)), _soft(np.ones((H, W), np.int64))
    smoother = StreamingSmoother(mode, scene_cut_threshold=30.0)
    smoother.update(dark, p1)
    assert not np.array_equal(smoother.update(dark, p2), p2)  # same scene: smoothed
    assert np.array_equal(smoother.update(bright, p2), p2)  # a cut: the current probabilities
    assert smoother.scene_cuts == 1
    assert np.array_equal(smoother.update(bright, p1, gap=True), p1)
    smoother.reset()
    assert np.array_equal(smoother.update(bright, p2), p2)
    assert smoother.restarts == 4 and smoother.scene_cuts == 1


def test_resolution_change_restarts() -> None:
    frame = np.full((H, W, 3), 100, np.uint8)
    smoother = StreamingSmoother("flow")
    smoother.update(frame, _soft(np.zeros((H, W), np.int64)))
    small = _soft(np.ones((H // 2, W // 2), np.int64))
    assert np.array_equal(smoother.update(frame, small), small)


def test_bad_options_and_inputs_name_themselves() -> None:
    with pytest.raises(ValueError, match="smoothing mode must be one of flow, ema, none, got 'median'"):
        StreamingSmoother("median")
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\), got 1.0"):
        StreamingSmoother(alpha=1.0)
    with pytest.raises(ValueError, match="unknown DIS preset"):
        StreamingSmoother(preset="slowest")
    smoother = StreamingSmoother("ema")
    with pytest.raises(ValueError, match=r"probs must be float \(C, H, W\)"):
        smoother.update(np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.float32))
    with pytest.raises(ValueError, match=r"frame_rgb must be \(H, W, 3\) uint8"):
        smoother.update(np.zeros((H, W, 3), np.float32), np.zeros((C, H, W), np.float32))


