"""Clip datasets (numpy + OpenCV, no torch): pick one with a spec string.

>>> ds = build_dataset("viper:/data/viper", split="train", k=1)        # doctest: +SKIP
>>> frame, prev, label, flow, meta = ds[0]                                # doctest: +SKIP

Specs: ``viper:ROOT``, ``cityscapes-seq:ROOT``, ``cityscapes-vps:ROOT``, ``synthia-seq:ROOT``,
``video:PATH`` (a frame folder or a video file).
"""

from __future__ import annotations

import inspect
from pathlib import Path

from vsda_deploy.data.base import ClipDataset, ClipSample, DatasetError, FlowProvider, FrameRecord
from vsda_deploy.data.cityscapes_seq import CityscapesSeqDataset
from vsda_deploy.data.cityscapes_vps import CityscapesVpsDataset
from vsda_deploy.data.synthia_seq import SynthiaSeqDataset
from vsda_deploy.data.video import VideoDataset
from vsda_deploy.data.viper import ViperDataset

DATASETS: dict[str, type[ClipDataset]] = {
    "viper": ViperDataset,
    "cityscapes-seq": CityscapesSeqDataset,
    "cityscapes-vps": CityscapesVpsDataset,
    "synthia-seq": SynthiaSeqDataset,
    "video": VideoDataset,
}
_COMMON = {"self", "root", "split", "k", "labels", "flow", "label_space"}

__all__ = [
    "DATASETS",
    "CityscapesSeqDataset",
    "CityscapesVpsDataset",
    "ClipDataset",
    "ClipSample",
    "DatasetError",
    "FlowProvider",
    "FrameRecord",
    "SynthiaSeqDataset",
    "VideoDataset",
    "ViperDataset",
    "build_dataset",
    "dataset_options",
    "parse_spec",
]


def parse_spec(spec: str) -> tuple[str, Path]:
    """Return ``(kind, path)`` of a dataset spec ``kind:PATH``; DatasetError names the spec."""
    kind, sep, path = str(spec).partition(":")
    if not sep or kind not in DATASETS or not path:
        why = "missing PATH" if sep and kind in DATASETS else "expected KIND:PATH"
        raise DatasetError(f"{spec}: not a dataset spec ({why}); KIND is one of {', '.join(DATASETS)}")
    return kind, Path(path).expanduser()


def dataset_options(kind: str) -> list[str]:
    """Return the extra keyword options a dataset kind accepts (beyond split, k, labels, ...)."""
    return [p for p in inspect.signature(DATASETS[kind].__init__).parameters if p not in _COMMON]


def build_dataset(spec: str, split: str = "train", k: int = 1, labels: bool = True,
                  flow: FlowProvider | None = None, label_space: str | None = None,
                  **options) -> ClipDataset:
    """Return the clip dataset of ``spec`` (e.g. ``viper:/data/viper``).

    ``label_space`` None means the dataset's own space (synthia12 for synthia-seq, viper15
    otherwise). ``options`` are per kind: ``pad_start`` and ``frames`` (all: ``"all"`` or
    ``"labelled"``, see ``ClipDataset``), ``ignore_ego_vehicle`` (viper), ``vps_labels`` and
    ``sequences`` (cityscapes-vps), ``camera`` (synthia-seq). ``docs/datasets.md`` says which
    folder each spec points at.
    """
    kind, path = parse_spec(spec)
    unknown = sorted(set(options) - set(dataset_options(kind)))
    if unknown:
        raise DatasetError(f"{spec}: unknown option(s) {unknown} for {kind}; valid: {dataset_options(kind)}")
    return DATASETS[kind](path, split=split, k=k, labels=labels, flow=flow, label_space=label_space, **options)
