"""Histogram matching of source frames to target frames (TPS's ``hist_match``), on tensors.

Each channel of a source frame is mapped so that its cumulative histogram follows the reference
frame's channel: a value at quantile q takes the reference's value at quantile q, linearly
interpolated between the reference's distinct values. This is scikit-image's
``exposure.match_histograms`` (``_match_cumulative_cdf``), which TPS applies to every source frame
against the target frame of the same step. It runs on the normalised tensors of the batch, on
their device: the per-channel normalisation is the same affine map for both domains, and matching
commutes with it. The padding of a crop (a frame rescaled below the crop size) is left out of both
histograms, so a black border does not pull the source towards black.
"""

from __future__ import annotations

import torch
from torch import Tensor


def interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Return ``numpy.interp(x, xp, fp)``: piecewise-linear, clamped to ``fp[0]``/``fp[-1]`` outside ``xp``."""
    if xp.numel() == 1:
        return fp.expand_as(x).clone()
    right = torch.searchsorted(xp, x).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[right - 1], xp[right], fp[right - 1], fp[right]
    weight = ((x - x0) / (x1 - x0)).clamp(0, 1)
    return f0 + weight * (f1 - f0)


def match_channel(source: Tensor, reference: Tensor, source_valid: Tensor | None = None,
                  reference_valid: Tensor | None = None) -> Tensor:
    """Return ``source`` (any shape) with the value distribution of ``reference`` (any shape).

    Only the valid pixels (masks of the tensors' shapes; None: all) make the two histograms; every
    source pixel is then mapped, an invalid one by the nearest valid value at or above its own.
    """
    counted = source[source_valid] if source_valid is not None else source.flatten()
    ref = reference[reference_valid] if reference_valid is not None else reference.flatten()
    if counted.numel() == 0 or ref.numel() == 0:
        return source.clone()
    values, counts = torch.unique(counted, return_counts=True)
    ref_values, ref_counts = torch.unique(ref, return_counts=True)
    quantiles = counts.cumsum(0).double() / counted.numel()
    ref_quantiles = ref_counts.cumsum(0).double() / ref.numel()
    mapped = interp(quantiles, ref_quantiles, ref_values.double())
    index = torch.searchsorted(values, source.flatten().contiguous()).clamp(max=values.numel() - 1)
    return mapped[index].reshape(source.shape).to(source.dtype)


def match_histograms(source: Tensor, reference: Tensor, source_valid: Tensor | None = None,
                     reference_valid: Tensor | None = None) -> Tensor:
    """Return source frames (N, C, H, W) matched channel by channel to reference frames (M, C, H', W').

    Frame i is matched to reference ``i % M``, so a source batch pairs with the target batch of its
    step. ``source_valid`` (N, H, W) and ``reference_valid`` (M, H', W') leave the crops' padding out.
    """
    if source.shape[1] != reference.shape[1]:
        raise ValueError(f"cannot match {source.shape[1]}-channel frames to {reference.shape[1]}-channel ones")

    def mask(valid: Tensor | None, i: int) -> Tensor | None:
        return None if valid is None else valid[i % len(valid)]

    return torch.stack([
        torch.stack([match_channel(frame[c], reference[i % len(reference), c], mask(source_valid, i),
                                   mask(reference_valid, i)) for c in range(frame.shape[0])])
        for i, frame in enumerate(source)
    ])


__all__ = ["interp", "match_channel", "match_histograms"]
