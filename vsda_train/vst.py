"""Making the pseudo labels of video self-training (VST) for a whole target set.

Pass 1 predicts every target frame once, keeping its class map and confidence on disk
and the per-class confidence histogram in memory. Pass 2 walks each video: class-balanced
confidence selection, then the temporal filter with both neighbours warped by optical flow
(occluded or out-of-view pixels do not vote). With ``vst.time_first`` the temporal filter
runs first and the class-balanced thresholds are taken over the temporally consistent pixels
only, so the kept top-p of each class is chosen among labels that time already confirmed.
Labels go to ``<folder>/<frame name>.png`` and the statistics to ``<folder>/stats.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vsda_deploy.flow import occlusion_mask, warp
from vsda_deploy.labels import IGNORE_INDEX, get_label_space
from vsda_train.flow import flow_provider, spec_root
from vsda_train.pseudo_labels import ConfidenceHistogram, PseudoLabelStats, select_confident, temporal_filter
from vsda_train.transforms import normalize


@torch.no_grad()
def predict_probs(model: torch.nn.Module, frame: np.ndarray, device: torch.device,
                  scales: Sequence[float] = (1.0,), flip: bool = False) -> torch.Tensor:
    """Return softmax probabilities (C, H, W) of one RGB uint8 frame.

    With several ``scales`` and/or ``flip`` (test-time augmentation) the probabilities are the mean over
    the rescaled and mirrored copies, each brought back to the frame's size (and orientation) first.
    """
    model.eval()
    x = normalize(frame).unsqueeze(0).to(device)
    size = x.shape[-2:]
    total, n = None, 0
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        for mirrored in (False, True) if flip else (False,):
            logits = model(xs.flip(-1) if mirrored else xs).float()
            logits = logits.flip(-1) if mirrored else logits
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            probs = logits.softmax(1)
            total, n = (probs if total is None else total + probs), n + 1
    return (total / n)[0].cpu()


def _label_name(meta: dict) -> str:
    return Path(meta["name"]).with_suffix(".png").name


def make_pseudo_labels(run: Any, folder: Path) -> dict:
    """Write the pseudo labels of every target frame into ``folder``; return their statistics."""
    from vsda_train.data import build_dataset

    cfg = run.cfg
    space = get_label_space(cfg.data.label_space)
    clips = build_dataset(cfg.data.target, split="train", k=cfg.data.k, labels=False, flow=None,
                          label_space=cfg.data.label_space)
    raw_dir = folder / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    model = run.model
    hist = ConfidenceHistogram(space.num_classes)
    time_first = cfg.vst.temporal_filter and cfg.vst.time_first
    names: dict[int, str] = {}
    for i in range(len(clips)):  # pass 1: predictions and the confidence histogram
        sample = clips[i]
        names[i] = _label_name(sample.meta)
        probs = predict_probs(model, sample.frame, run.device, cfg.vst.tta_scales, cfg.vst.tta_flip)
        conf, label = probs.max(0)
        np.save(raw_dir / f"{i}.npy", np.stack([label.numpy().astype(np.float16), conf.numpy().astype(np.float16)]))
        if not time_first:
            hist.update(conf[None], label[None])
    flow = flow_provider("dis", root=spec_root(cfg.data.target), preset=cfg.data.flow_preset,
                         cache=cfg.data.flow_cache, compute=cfg.data.compute_flow,
                             scale=cfg.data.flow_scale)
    if time_first:  # pass 1b: the temporal filter first; thresholds from the consistent pixels only
        for indices in clips.videos().values():
            frames = _FrameCache(clips)
            for pos, i in enumerate(indices):
                label, conf = _load_raw(raw_dir, i)
                consistent = _filter_with_neighbours(clips, frames, indices, pos, label, flow, raw_dir, cfg)
                hist.update(conf[None], consistent[None])
                np.save(raw_dir / f"{i}_consistent.npy", consistent.numpy().astype(np.uint8))  # 255 stays 255
    thresholds = hist.thresholds(cfg.vst.class_top_fraction, cfg.vst.min_confidence)
    gt = _oracle_labels(cfg)
    stats = PseudoLabelStats(space.num_classes)
    for indices in clips.videos().values():  # pass 2: per video, confidence then time
        frames = _FrameCache(clips)  # each frame is decoded once per video, not once per vote
        for pos, i in enumerate(indices):
            label, conf = _load_raw(raw_dir, i)
            if time_first:
                consistent = torch.from_numpy(np.load(raw_dir / f"{i}_consistent.npy").astype(np.int64))
                kept = select_confident(consistent, conf, thresholds)
            else:
                kept = select_confident(label, conf, thresholds)
                if cfg.vst.temporal_filter:
                    kept = _filter_with_neighbours(clips, frames, indices, pos, kept, flow, raw_dir, cfg)
            cv2.imwrite(str(folder / names[i]), kept.numpy().astype(np.uint8))
            stats.update(label, kept, gt.get(names[i]))
    summary = stats.summary(space.classes)
    summary["thresholds"] = {n: float(t) for n, t in zip(space.classes, thresholds.tolist())}
    (folder / "stats.json").write_text(json.dumps(summary, indent=1))
    for f in raw_dir.glob("*.npy"):
        f.unlink()
    raw_dir.rmdir()
    return summary


def _load_raw(raw_dir: Path, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    a = np.load(raw_dir / f"{i}.npy")
    return torch.from_numpy(a[0].astype(np.int64)), torch.from_numpy(a[1].astype(np.float32))


class _FrameCache:
    """Frame t of each sample of one video, decoded on first use."""

    def __init__(self, clips: Any) -> None:
        self.clips, self.frames = clips, {}

    def __getitem__(self, i: int) -> np.ndarray:
        if i not in self.frames:
            self.frames[i] = self.clips.frames(i)[0]
        return self.frames[i]


def _filter_with_neighbours(clips: Any, frames: _FrameCache, indices: list[int], pos: int,
                            kept: torch.Tensor, flow: Any, raw_dir: Path, cfg: Any) -> torch.Tensor:
    """Return ``kept`` with pixels set to 255 where a visible neighbour's prediction disagrees."""
    key_t = clips.pair_keys(indices[pos])[0]
    warped, votes = [], []
    for offset in cfg.vst.neighbours:
        npos = pos + offset
        if not 0 <= npos < len(indices):
            continue
        j = indices[npos]
        key_n = clips.pair_keys(j)[0]
        frame_t, frame_n = frames[indices[pos]], frames[j]
        flow_tn = flow(key_t, key_n, frame_t, frame_n)  # pixel of t -> where it is in the neighbour
        label_n = _load_raw(raw_dir, j)[0].numpy().astype(np.uint8)
        warped_n, valid = warp(label_n, flow_tn, nearest=True)
        if cfg.vst.occlusion_check:
            flow_nt = flow(key_n, key_t, frame_n, frame_t)
            valid &= ~occlusion_mask(flow_nt, flow_tn)
        warped.append(torch.from_numpy(warped_n.astype(np.int64))[None])
        votes.append(torch.from_numpy(valid)[None])
    if not warped:
        return kept
    return temporal_filter(kept[None], warped, votes)[0]


def _oracle_labels(cfg: Any) -> dict[str, torch.Tensor]:
    """Return target-train labels by frame name, when an oracle spec is configured (measurement only)."""
    if not cfg.data.oracle:
        return {}
    from vsda_train.data import build_dataset

    ds = build_dataset(cfg.data.oracle, split="train", k=cfg.data.k, labels=True, flow=None,
                       label_space=cfg.data.label_space)
    out = {}
    for i in range(len(ds)):
        s = ds[i]
        out[_label_name(s.meta)] = torch.from_numpy(s.label.astype(np.int64))
    return out


__all__ = ["IGNORE_INDEX", "make_pseudo_labels", "predict_probs"]
