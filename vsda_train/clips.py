"""Clip datasets as training reads them: frames resized at load, flow computed on the resized frames.

The peers resize every frame when they load it (VIPER 1920x1080 -> 1280x720, Cityscapes
2048x1024 -> 1024x512) rather than cropping at native resolution. :class:`ScaledClips` does that
for any clip dataset of :mod:`vsda_deploy.data`: frames with :func:`vsda_deploy.preprocess.resize_frame`,
labels with nearest-neighbour sampling, and the flow provider is called on the *resized* frames,
so a DIS cache is filled (and keyed) at the training resolution and published flows are resized
to it with their vectors rescaled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vsda_deploy.data import ClipSample, FlowProvider, build_dataset
from vsda_deploy.data.base import DatasetError
from vsda_deploy.preprocess import resize_frame, resize_label
from vsda_train.config import ConfigError, TrainConfig
from vsda_train.flow import flow_provider, spec_root

INSTANCE_IDS = ("instance", "instance_raw")  # the instance-id maps of Cityscapes-VPS and VIPER labels
LABEL_MAPS = (*INSTANCE_IDS, "instance_class")  # full-resolution per-pixel maps that stay behind


class ScaledClips:
    """A clip dataset whose frames and labels are resized to ``size`` (H, W) when read."""

    def __init__(self, clips: Any, size: tuple[int, int] | None, flow: FlowProvider | None = None,
                 forward_flow: bool = False, with_prev: bool = True) -> None:
        if getattr(clips, "flow", None) is not None:
            raise ValueError("ScaledClips computes flow itself: build the inner dataset with flow=None")
        if flow is not None and not with_prev:
            raise ValueError("ScaledClips: flow needs frame t-k (with_prev=True)")
        self.clips, self.size, self.flow = clips, (tuple(size) if size else None), flow
        self.forward_flow = forward_flow and flow is not None  # also t-k -> t, in meta["flow_fw"]
        self.with_prev = with_prev  # False: frame t alone (prev is None), for steps that never look at t-k

    @property
    def records(self) -> list:
        return self.clips.records

    @property
    def label_space(self) -> Any:
        return self.clips.label_space

    def __len__(self) -> int:
        return len(self.clips)

    def videos(self) -> dict[str, list[int]]:
        """Return ``{video id: sample indices in temporal order}``."""
        return self.clips.videos()

    def pair_keys(self, i: int) -> tuple[str, str]:
        """Return the keys of frame t and t-k (the inner dataset's: paths relative to its root)."""
        return self.clips.pair_keys(i)

    def frames(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(frame_t, frame_prev)`` RGB uint8 at the training size."""
        frame, prev = self.clips.frames(i)
        return resize_frame(frame, self.size), resize_frame(prev, self.size)

    def __getitem__(self, i: int) -> ClipSample:
        if not self.with_prev:
            return self._frame_only(i)
        sample = self.clips[i]
        frame, prev = resize_frame(sample.frame, self.size), resize_frame(sample.prev, self.size)
        label = None if sample.label is None else resize_label(sample.label, self.size)
        flow = None
        meta = {k: v for k, v in sample.meta.items() if k not in LABEL_MAPS}
        self._add_instance(meta, sample.meta)
        if self.flow is not None:
            key_t, key_prev = self.pair_keys(i)
            flow = self._flow(key_t, key_prev, frame, prev)
            if self.forward_flow:
                meta["flow_fw"] = self._flow(key_prev, key_t, prev, frame)
        return ClipSample(frame, prev, label, flow, meta)

    def _frame_only(self, i: int) -> ClipSample:
        rec = self.records[i]
        frame = resize_frame(self.clips.read_frame(rec.path), self.size)
        label, extra = None, {}
        if self.clips.labels and rec.label_path is not None:
            label, extra = self.clips.load_label(rec)
            label = resize_label(label, self.size)
        meta = {"video": rec.video, "index": rec.index, "path": rec.path, "label_path": rec.label_path,
                "name": rec.name}
        self._add_instance(meta, extra)
        return ClipSample(frame, None, label, None, meta)

    def _add_instance(self, meta: dict, extra: dict) -> None:
        """Put the frame's instance ids (Cityscapes-VPS ``instance``, VIPER ``instance_raw``), resized
        like its label, in ``meta["instance"]`` when the dataset read them."""
        for key in INSTANCE_IDS:
            if key in extra:
                meta["instance"] = resize_label(np.asarray(extra[key], np.int32), self.size)
                return

    def _flow(self, key_a: str, key_b: str, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
        flow = np.asarray(self.flow(key_a, key_b, frame_a, frame_b), np.float32)
        if flow.shape != (*frame_a.shape[:2], 2):
            raise DatasetError(f"{key_a}: flow has shape {flow.shape}, expected {(*frame_a.shape[:2], 2)}")
        return flow

    def __repr__(self) -> str:
        return f"ScaledClips({self.clips!r}, size={self.size})"


def dataset_flow(cfg: TrainConfig, spec: str) -> FlowProvider:
    """Return the flow provider training uses for ``spec``: ``data.flow_source`` with the cache settings."""
    return flow_provider(cfg.data.flow_source, root=spec_root(spec), preset=cfg.data.flow_preset,
                         cache=cfg.data.flow_cache, compute=cfg.data.compute_flow, scale=cfg.data.flow_scale)


def domain_clips(cfg: TrainConfig, domain: str, labels: bool, with_flow: bool, split: str = "train",
                 frames: str = "all", spec: str | None = None, forward_flow: bool = False,
                 with_prev: bool = True) -> ScaledClips:
    """Return the training clips of ``domain`` (source | target | oracle), resized to its recipe size.

    ``frames`` is ``all`` (every frame with a t-k neighbour) or ``labelled`` (the labelled-frame
    positions, read without their labels unless ``labels``).
    """
    spec = spec or {"source": cfg.data.source, "target": cfg.data.target, "oracle": cfg.data.oracle}[domain]
    if not spec:
        raise ConfigError(f"data.{domain} is empty: give a dataset spec")
    size = cfg.data.source_resize if domain == "source" else cfg.data.target_resize
    options = {"frames": frames} if frames != "all" else {}
    clips = build_dataset(spec, split=split, k=cfg.data.k, labels=labels, flow=None,
                          label_space=cfg.data.label_space, **options)
    return ScaledClips(clips, size, dataset_flow(cfg, spec) if with_flow else None, forward_flow, with_prev)


__all__ = ["ScaledClips", "dataset_flow", "domain_clips"]
