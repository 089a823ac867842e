"""Which flow pairs training reads, and what filling them costs: passes, shards, the estimate line.

A *pass* is one dataset at its training size with the pairs training asks its flow provider for:
(frame t, frame t-k) of every training sample and, for the target with VST's temporal filter,
(t, t+o·k) and (t+o·k, t) for every offset o of ``vst.neighbours`` (:func:`vsda_train.vst.consistent_label`).
Pairs are listed in sample order (a frame's pairs together, so a worker decodes it once) and cut
into chunks of :data:`CHUNK`; shard ``I/N`` is every N-th chunk from the I-th, the same on every
machine whatever is already cached.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from vsda_deploy.data import build_dataset
from vsda_deploy.options import OptionError
from vsda_train.clips import ScaledClips, dataset_flow, domain_clips
from vsda_train.config import ConfigError, TrainConfig
from vsda_train.flow import DISFlowCache, flow_provider, spec_root

CHUNK = 8  # pairs a worker takes at a time; fixed, so that shards agree across machines
DOMAINS = ("source", "target", "both")

Pair = tuple[str, str, str, str]  # key_t, key_prev (the cache's keys), path_t, path_prev (what to decode)


@dataclass(frozen=True)
class FlowPass:
    """One dataset's pairs at its training size, the cache they go to and how a worker rebuilds the dataset."""

    name: str
    clips: Callable[[], ScaledClips]  # picklable: every worker process calls it once
    cache: DISFlowCache
    size: tuple[int, int]  # H, W of the frames the flow is for (the training size)
    pairs: tuple[Pair, ...]


@dataclass(frozen=True)
class PassPlan:
    """The part of a pass one shard computes: its chunks with the pairs not cached yet."""

    flow_pass: FlowPass
    shard: tuple[int, int]
    total: int  # pairs in this shard
    todo: tuple[tuple[Pair, ...], ...]  # chunks, cached pairs left out

    @property
    def to_compute(self) -> int:
        return sum(len(c) for c in self.todo)

    @property
    def cached(self) -> int:
        return self.total - self.to_compute

    @property
    def stored_size(self) -> tuple[int, int]:
        return self.flow_pass.cache.stored_shape(self.flow_pass.size)


# --- which pairs -----------------------------------------------------------------------------


def sample_pairs(clips: ScaledClips, universe: ScaledClips | None = None, neighbours: Iterable[int] = (),
                 both_ways: bool = True) -> list[Pair]:
    """Return the distinct pairs of ``clips``' samples, each followed by its VST pairs when ``neighbours``.

    VST's pairs of a sample at frame t are (t, t+o·k) and, with ``both_ways`` (the occlusion
    check), (t+o·k, t), for the frames t+o·k that ``universe`` (every frame; default ``clips``) holds.
    """
    key, k, neighbours = clips.clips.frame_key, clips.clips.k, tuple(neighbours)
    frames = _video_frames(universe or clips) if neighbours else {}
    pairs: dict[tuple[str, str], Pair] = {}
    for rec in clips.records:
        found = [(rec.path, rec.prev_path)]
        for offset in neighbours:
            other = frames[rec.video].get(rec.index + offset * k)
            if other is not None:
                found += [(rec.path, other)] + ([(other, rec.path)] if both_ways else [])
        for a, b in found:
            pairs.setdefault((key(a), key(b)), (key(a), key(b), a, b))
    return list(pairs.values())


def _video_frames(clips: ScaledClips) -> dict[str, dict[int, str]]:
    """Return ``{video: {frame index: path}}`` of every frame ``clips`` reads (as ``vst.plan_videos``)."""
    out: dict[str, dict[int, str]] = {}
    for rec in clips.records:
        out.setdefault(rec.video, {}).update({rec.index: rec.path, rec.prev_index: rec.prev_path})
    return out


def frame_size(clips: ScaledClips) -> tuple[int, int]:
    """Return the (H, W) training frames have: the resize, or (decoding one frame) the stored size."""
    if clips.size is not None:
        return tuple(clips.size)
    return clips.clips.read_frame(clips.records[0].path).shape[:2]


def config_passes(cfg: TrainConfig, domain: str = "both", vst: bool = False, split: str = "train") -> list[FlowPass]:
    """Return the passes that fill what training with ``cfg`` reads: its datasets, samples, sizes and cache.

    ``domain``: source (the labelled frames), target (``data.target_frames``) or both (those whose
    spec is set). ``vst`` adds the temporal filter's pairs to the target pass.
    """
    if domain not in DOMAINS:
        raise OptionError(f"--domain {domain!r}: choose from {', '.join(DOMAINS)}")
    if cfg.data.flow_source != "dis":
        raise ConfigError(f"data.flow_source is {cfg.data.flow_source!r}: training reads those files, "
                         "there is no DIS cache to fill")
    if vst and domain == "source":
        raise OptionError("--vst: VST's pairs are target pairs; use --domain target or both")
    cfg = replace(cfg, data=replace(cfg.data, compute_flow=True))
    passes = []
    for d in ("source", "target") if domain == "both" else (domain,):
        spec = cfg.data.source if d == "source" else cfg.data.target
        if not spec and domain == "both":
            continue
        frames = cfg.data.target_frames if d == "target" else "all"
        factory = partial(domain_clips, cfg, d, d == "source", False, split=split, frames=frames)
        clips = factory()
        neighbours = cfg.vst.neighbours if vst and d == "target" and cfg.vst.temporal_filter else ()
        universe = clips if frames == "all" or not neighbours else domain_clips(cfg, d, False, False, split=split)
        pairs = sample_pairs(clips, universe, neighbours, cfg.vst.occlusion_check)
        name = f"{d}{' + vst' if neighbours else ''} {spec} {split}"
        passes.append(FlowPass(name, factory, dataset_flow(cfg, spec), frame_size(clips), tuple(pairs)))
    return passes


def plain_clips(spec: str, split: str, k: int, labelled: bool, resize: tuple[int, int] | None) -> ScaledClips:
    """Return ``spec``'s clips (the labelled frames, or every frame with a t-k neighbour) resized to ``resize``."""
    return ScaledClips(build_dataset(spec, split=split, k=k, labels=labelled, flow=None), resize)


def dataset_pass(spec: str, split: str = "train", k: int = 1, labelled: bool = False,
                 resize: tuple[int, int] | None = None, preset: str = "medium", cache: str | None = None,
                 scale: float = 1.0) -> FlowPass:
    """Return the pass of a dataset named by its spec (``vsda-train flow DATASET``)."""
    factory = partial(plain_clips, spec, split, k, labelled, resize)
    clips = factory()
    provider = flow_provider("dis", root=spec_root(spec), preset=preset, cache=cache, scale=scale)
    return FlowPass(f"{spec} {split}", factory, provider, frame_size(clips), tuple(sample_pairs(clips)))


# --- shards and the plan ------------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """Return ``(I, N)`` of ``I/N`` with 0 <= I < N; OptionError naming the option otherwise."""
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise OptionError(f"--shard {text!r}: expected I/N with 0 <= I < N (e.g. 0/4)")
    return int(index), int(count)


def shard_chunks(pairs: tuple[Pair, ...], shard: tuple[int, int] = (0, 1),
                 chunk: int = CHUNK) -> list[tuple[Pair, ...]]:
    """Return the chunks of ``pairs`` shard ``(I, N)`` computes: every N-th chunk from the I-th."""
    index, count = shard
    return [pairs[i:i + chunk] for i in range(0, len(pairs), chunk)][index::count]


def plan_pass(flow_pass: FlowPass, shard: tuple[int, int] = (0, 1)) -> PassPlan:
    """Return the shard's chunks of ``flow_pass`` without the pairs already cached."""
    chunks = shard_chunks(flow_pass.pairs, shard)
    has = partial(flow_pass.cache.has, shape=flow_pass.size)
    todo = tuple(c for c in (tuple(p for p in chunk if not has(p[0], p[1])) for chunk in chunks) if c)
    return PassPlan(flow_pass, shard, sum(len(c) for c in chunks), todo)


def npy_bytes(shape: tuple[int, ...], dtype: str = "<f2") -> int:
    """Return the size of the ``.npy`` file of an array of ``shape`` and ``dtype`` (header included)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return header.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize


def pair_bytes(plan: PassPlan) -> int:
    """Return the bytes of one cached pair of ``plan``: float16 (h, w, 2) at the stored size, and the header."""
    return npy_bytes((*plan.stored_size, 2))


def estimate_line(plan: PassPlan, seconds_per_pair: float | None = None, workers: int = 1) -> str:
    """Return the line printed before a pass: pairs to compute and cached, frame size, disk, time.

    ``seconds_per_pair`` is a worker's time per computed pair (decode, resize, DIS, write) over the
    first chunks; the pass then takes ``to_compute x seconds_per_pair / workers``.
    """
    (h, w), (sh, sw) = plan.flow_pass.size, plan.stored_size
    at = f"{h}x{w}" + (f" (DIS and files at {sh}x{sw})" if (sh, sw) != (h, w) else "")
    index, count = plan.shard
    where = f" in shard {index}/{count}" if count > 1 else ""
    size = pair_bytes(plan)
    line = (f"flow {plan.flow_pass.name} at {at}: {plan.total:,} pairs{where}, {plan.to_compute:,} to compute, "
            f"{plan.cached:,} cached; {plan.to_compute * size / 2**30:.2f} GiB to write ({size:,} B a pair)")
    if seconds_per_pair and plan.to_compute:
        rate = workers / seconds_per_pair
        line += f"; about {duration(plan.to_compute / rate)} at {rate:.1f} pairs/s on {workers} worker(s)"
    return line


def on_demand_line(clips: ScaledClips, workers: int, sample: int = 256) -> str | None:
    """Return a line on the flow training is about to compute on demand for ``clips``; None if it is cached.

    Cheap: it checks an even sample of at most ``sample`` pairs and times one missing pair, which
    it caches (training would compute it anyway).
    """
    cache = clips.flow
    if not isinstance(cache, DISFlowCache) or not cache.compute or not len(clips):
        return None
    size = frame_size(clips)
    checked = range(0, len(clips), max(1, len(clips) // sample))
    missing = [i for i in checked if not cache.has(*clips.pair_keys(i), size)]
    if not missing:
        return None
    pairs = round(len(clips) * len(missing) / len(checked))
    start = time.perf_counter()
    cache.ensure(*clips.pair_keys(missing[0]), *clips.frames(missing[0]))
    seconds = (time.perf_counter() - start) * pairs / max(workers, 1)
    disk = pairs * npy_bytes((*cache.stored_shape(size), 2)) / 2**30
    return (f"flow: about {pairs:,} of {len(clips):,} pairs at {size[0]}x{size[1]} are not cached in "
            f"{cache.cache_dir}; training computes them on demand ({disk:.2f} GiB, about {duration(seconds)} of "
            f"decoding and DIS over {max(workers, 1)} loader process(es)); `vsda-train flow -c CONFIG` fills them "
            "first, in parallel")


def duration(seconds: float) -> str:
    """Return ``seconds`` as ``42 s``, ``12.5 min`` or ``3.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


__all__ = ["CHUNK", "FlowPass", "PassPlan", "config_passes", "dataset_pass", "estimate_line", "npy_bytes",
           "on_demand_line", "parse_shard", "plan_pass", "sample_pairs", "shard_chunks"]
