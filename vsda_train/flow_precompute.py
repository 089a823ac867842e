"""Filling the DIS flow cache in worker processes: resumable, sharded, with an estimate first.

Each worker process rebuilds the pass's dataset, decodes and resizes the frames of its chunks as
:class:`vsda_train.clips.ScaledClips` does (the last few frames kept: a frame's pairs come
together), and runs DIS with its share of the cores (``cv2.setNumThreads``); the parent only
lists pairs and checks which files exist. Files are written atomically, so a killed run re-run
computes only what is missing. With one worker everything runs in the calling process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Protocol

import cv2
import numpy as np

from vsda_deploy.preprocess import resize_frame
from vsda_train.cores import usable_cores
from vsda_train.flow import DISFlowCache
from vsda_train.flow_pairs import FlowPass, Pair, PassPlan, estimate_line, plan_pass

KEEP_FRAMES = 4  # decoded frames a worker keeps: t-1, t, t+1 and the next


@dataclass(frozen=True)
class ChunkResult:
    """What one chunk took: its pairs, how many were computed (not found cached), worker seconds."""

    pairs: int
    computed: int
    seconds: float


@dataclass(frozen=True)
class FillStats:
    """What a pass did in this shard: pairs computed, pairs found cached, wall seconds."""

    name: str
    computed: int
    cached: int
    seconds: float


class FillReport(Protocol):
    """Where a fill reports to (the CLI's progress bar; tests collect)."""

    def start(self, plan: PassPlan) -> None: ...

    def estimate(self, line: str) -> None: ...

    def advance(self, pairs: int) -> None: ...

    def finish(self, stats: FillStats) -> None: ...


class SilentReport:
    """A report that says nothing."""

    def start(self, plan: PassPlan) -> None:
        pass

    def estimate(self, line: str) -> None:
        pass

    def advance(self, pairs: int) -> None:
        pass

    def finish(self, stats: FillStats) -> None:
        pass


# --- the worker side --------------------------------------------------------------------------


class PairFiller:
    """Computes chunks of pairs of the passes' datasets (one per worker process)."""

    def __init__(self, sources: list[tuple[Callable[[], Any], DISFlowCache]]) -> None:
        self.sources = sources
        self.clips: dict[int, Any] = {}
        self.frames: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()

    def _frame(self, source: int, path: str) -> np.ndarray:
        """Return the frame at ``path`` resized as ScaledClips resizes it (recent frames are kept)."""
        key = (source, path)
        if key not in self.frames:
            clips = self.clips[source]
            self.frames[key] = resize_frame(clips.clips.read_frame(path), clips.size)
            while len(self.frames) > KEEP_FRAMES:
                self.frames.popitem(last=False)
        return self.frames[key]

    def __call__(self, source: int, chunk: tuple[Pair, ...]) -> ChunkResult:
        if source not in self.clips:  # built once per worker, not timed
            self.clips[source] = self.sources[source][0]()
        clips, cache = self.clips[source], self.sources[source][1]
        start, computed = time.perf_counter(), 0
        for key_t, key_prev, path_t, path_prev in chunk:
            if clips.size is not None and cache.has(key_t, key_prev, tuple(clips.size)):
                continue  # filled since the plan (another shard)
            computed += cache.ensure(key_t, key_prev, self._frame(source, path_t), self._frame(source, path_prev))
        return ChunkResult(len(chunk), computed, time.perf_counter() - start)


_FILLER: PairFiller | None = None


def _init_worker(sources: list[tuple[Callable[[], Any], DISFlowCache]], threads: int, parent: int) -> None:
    global _FILLER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops the pool
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    cv2.setNumThreads(threads)
    _FILLER = PairFiller(sources)


def _exit_with_parent(parent: int) -> None:
    """Exit this worker once ``parent`` (the pid that started the pool) is gone (killed: it could not
    stop the pool, and idle workers would wait for chunks forever). A write in progress leaves only a
    temp file. The pid comes from the parent itself: a worker that reads ``getppid()`` after the parent
    died would read its new parent's and never exit."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _run_chunk(source: int, chunk: tuple[Pair, ...]) -> ChunkResult:
    assert _FILLER is not None, "worker not initialised"
    return _FILLER(source, chunk)


# --- the parent side ----------------------------------------------------------------------------


ChunkRunner = Callable[[int, list[tuple[Pair, ...]]], Iterator[ChunkResult]]


@contextmanager
def chunk_runner(passes: list[FlowPass], workers: int) -> Iterator[ChunkRunner]:
    """Yield ``run(source, chunks) -> results`` (in completion order) over ``workers`` processes.

    At most two chunks per worker are in flight; leaving the iteration early cancels the rest.
    """
    sources = [(p.clips, p.cache) for p in passes]
    if workers <= 1:
        filler = PairFiller(sources)
        yield lambda source, chunks: (filler(source, c) for c in chunks)
        return
    threads = max(1, usable_cores() // workers)
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=(sources, threads, os.getpid()))
    try:
        yield lambda source, chunks: _windowed(pool, source, chunks, 2 * workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _windowed(pool: ProcessPoolExecutor, source: int, chunks: list[tuple[Pair, ...]],
              window: int) -> Iterator[ChunkResult]:
    queue, pending = list(reversed(chunks)), set[Future]()
    try:
        while queue or pending:
            while queue and len(pending) < window:
                pending.add(pool.submit(_run_chunk, source, queue.pop()))
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()  # re-raises a worker's error here
    finally:
        for future in pending:
            future.cancel()


def fill_pass(index: int, plan: PassPlan, run: ChunkRunner, workers: int, report: FillReport,
              estimate_only: bool = False) -> FillStats:
    """Compute the plan's chunks; report the estimate line once the first chunk of each worker is back."""
    start, computed, seen, first, timed = time.perf_counter(), 0, 0, [], False
    report.start(plan)
    if not plan.todo:
        report.estimate(estimate_line(plan))
    for result in run(index, list(plan.todo)):
        computed, seen = computed + result.computed, seen + result.pairs
        report.advance(result.pairs)
        if not timed and result.computed:
            first.append(result)
            if len(first) >= min(workers, len(plan.todo)):
                per_pair = sum(r.seconds for r in first) / sum(r.computed for r in first)
                report.estimate(estimate_line(plan, per_pair, workers))
                timed = True
                if estimate_only:
                    break
    if plan.todo and not timed:  # every pair was filled meanwhile (another shard): no rate to give
        report.estimate(estimate_line(plan))
    stats = FillStats(plan.flow_pass.name, computed, plan.cached + seen - computed, time.perf_counter() - start)
    report.finish(stats)
    return stats


def fill_cache(passes: list[FlowPass], workers: int = 1, shard: tuple[int, int] = (0, 1),
               report: FillReport | None = None, estimate_only: bool = False) -> list[FillStats]:
    """Fill the cache of every pass (this shard's chunks, pairs not cached yet); return what each did.

    ``estimate_only`` stops each pass once its estimate line is out (what was computed stays cached).
    """
    report = report or SilentReport()
    plans = [plan_pass(p, shard) for p in passes]
    with chunk_runner(passes, workers) as run:
        return [fill_pass(i, plan, run, workers, report, estimate_only) for i, plan in enumerate(plans)]


__all__ = ["ChunkResult", "FillReport", "FillStats", "PairFiller", "SilentReport", "fill_cache"]
