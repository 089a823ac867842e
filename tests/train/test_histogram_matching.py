"""Histogram matching as TPS runs it on its source frames.

TPS (xing0047/TPS, ``tps/domain_adaptation/train_video_UDA.py``: ``hist_match``) calls
scikit-image's ``exposure.match_histograms(src, trg, multichannel=True)``; its rule
(``skimage/exposure/histogram_matching.py: _match_cumulative_cdf``) maps each distinct source
value at cumulative quantile q to ``numpy.interp(q, reference quantiles, reference values)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vsda_train.config import ConfigError, VSTConfig
from vsda_train.histogram_matching import interp, match_channel, match_histograms


def skimage_rule(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """scikit-image's ``_match_cumulative_cdf``, step by step in numpy (the second path)."""
    _, inverse, counts = np.unique(source.ravel(), return_inverse=True, return_counts=True)
    ref_values, ref_counts = np.unique(reference.ravel(), return_counts=True)
    quantiles = np.cumsum(counts) / source.size
    ref_quantiles = np.cumsum(ref_counts) / reference.size
    return np.interp(quantiles, ref_quantiles, ref_values)[inverse].reshape(source.shape)


def test_hand_computed_quantiles() -> None:
    # source quantiles 0.5, 0.75, 1.0 land on the reference's 2nd, 3rd and 4th values
    out = match_channel(torch.tensor([0.0, 0.0, 1.0, 2.0]), torch.tensor([10.0, 20.0, 30.0, 40.0]))
    assert out.tolist() == [20.0, 20.0, 30.0, 40.0]


def test_hand_computed_interpolation() -> None:
    # quantiles 1/3, 2/3, 1 against reference knots (0.5 -> 0, 1.0 -> 10): clamped, 1/3 of the way, last
    out = match_channel(torch.tensor([5.0, 6.0, 7.0]), torch.tensor([0.0, 10.0]))
    assert out.tolist() == pytest.approx([0.0, 10 / 3, 10.0])


def test_interp_is_numpy_interp() -> None:
    rng = np.random.default_rng(0)
    xp = np.sort(rng.uniform(0, 1, 20))
    fp = rng.normal(size=20)
    x = rng.uniform(-0.2, 1.2, 200)
    got = interp(torch.from_numpy(x), torch.from_numpy(xp), torch.from_numpy(fp)).numpy()
    np.testing.assert_allclose(got, np.interp(x, xp, fp), rtol=0, atol=1e-12)
    one = interp(torch.tensor([0.1, 0.9]), torch.tensor([0.5]), torch.tensor([3.0]))
    assert one.tolist() == [3.0, 3.0]


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_skimage_rule_on_images(seed: int) -> None:
    rng = np.random.default_rng(seed)
    source = rng.integers(0, 256, (37, 53)).astype(np.float64)  # ties, as in uint8 frames
    reference = np.clip(rng.normal(90, 30, (41, 29)), 0, 255).round()
    got = match_channel(torch.from_numpy(source), torch.from_numpy(reference)).numpy()
    np.testing.assert_allclose(got, skimage_rule(source, reference), rtol=0, atol=1e-9)


def test_distinct_values_of_equal_count_take_the_reference_values_in_order() -> None:
    source = torch.randperm(64).double().reshape(8, 8)
    reference = torch.linspace(-2.0, 3.0, 64).double()[torch.randperm(64)].reshape(4, 16)
    out = match_channel(source, reference)
    assert torch.equal(out.flatten().sort().values, reference.flatten().sort().values)
    assert torch.equal(out.flatten().argsort(), source.flatten().argsort())  # order kept


def test_batch_pairs_frame_i_with_reference_i_mod_m_per_channel() -> None:
    gen = torch.Generator().manual_seed(0)
    source = torch.rand(3, 2, 6, 5, generator=gen)
    reference = torch.rand(2, 2, 4, 4, generator=gen) * 10
    out = match_histograms(source, reference)
    for i in range(3):
        for c in range(2):
            expected = skimage_rule(source[i, c].double().numpy(), reference[i % 2, c].double().numpy())
            np.testing.assert_allclose(out[i, c].numpy(), expected, rtol=1e-6, atol=1e-5)
    assert out.dtype == source.dtype and out.shape == source.shape
    with pytest.raises(ValueError, match="3-channel"):
        match_histograms(torch.rand(1, 3, 4, 4), torch.rand(1, 1, 4, 4))


def test_padding_is_left_out_of_both_histograms() -> None:
    gen = torch.Generator().manual_seed(1)
    source, reference = torch.rand(6, 8, generator=gen), torch.rand(6, 8, generator=gen) + 2
    source_valid = torch.ones(6, 8, dtype=torch.bool)
    source_valid[4:] = False
    reference_valid = torch.ones(6, 8, dtype=torch.bool)
    reference_valid[:, 5:] = False
    padded = reference.clone()
    padded[~reference_valid] = 0.0  # a black border, as a crop pads a frame rescaled below its size
    out = match_channel(source, padded, source_valid, reference_valid)
    expected = skimage_rule(source[:4].double().numpy(), reference[:, :5].double().numpy())
    np.testing.assert_allclose(out[:4].numpy(), expected, rtol=1e-6)
    assert out.min() >= reference[:, :5].min()  # nothing was pulled towards the border
    # an invalid source pixel takes the mapping of the nearest valid value at or above it
    source[5, 0] = source[:4].min() - 1
    assert match_channel(source, padded, source_valid, reference_valid)[5, 0] == out[:4].min()


def test_config_names_the_option() -> None:
    with pytest.raises(ConfigError, match="vst.source_match"):
        VSTConfig(source_match="cdf")
