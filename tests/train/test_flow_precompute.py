"""Tests of vsda_train.flow_pairs and flow_precompute: the pairs training reads, workers, shards, resume, estimate."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch

import vsda_train.flow as vflow
from tests.train.flow_fixtures import SOURCE_RESIZE, TARGET_RESIZE, cache_files, make_trees, tiny_config
from vsda_deploy import flow as dflow
from vsda_train.clips import dataset_flow, domain_clips
from vsda_train.flow_pairs import (
    CHUNK,
    config_passes,
    estimate_line,
    npy_bytes,
    on_demand_line,
    parse_shard,
    plan_pass,
    shard_chunks,
)
from vsda_train.flow_precompute import fill_cache
from vsda_train.vst import FrameWindow, consistent_label, plan_videos

SOURCE_PAIRS, TARGET_PAIRS, VST_PAIRS = 2 * 3, 3 * 4, 3 * 8  # by hand: see flow_fixtures


@pytest.fixture
def dis_calls(monkeypatch):
    calls = []

    def counting(frame_t, frame_prev, preset="medium", dis=None):
        calls.append(frame_t.shape[:2])
        return dflow.dis_flow(frame_t, frame_prev, preset, dis)

    monkeypatch.setattr(vflow, "dis_flow", counting)
    return calls


@pytest.fixture
def trees(tmp_path):
    return make_trees(tmp_path)


class Collect:
    """A fill report that keeps what it is told."""

    def __init__(self) -> None:
        self.lines, self.advanced = [], 0

    def start(self, plan):
        pass

    def estimate(self, line):
        self.lines.append(line)

    def advance(self, pairs):
        self.advanced += pairs

    def finish(self, stats):
        pass


def _training_reads(cfg) -> None:
    """Read every pair training reads: VAT's source and target clips, then VST's temporal filter."""
    cfg = replace(cfg, data=replace(cfg.data, compute_flow=False))  # a missing pair is an error
    for domain, labels in (("source", True), ("target", False)):
        clips = domain_clips(cfg, domain, labels, with_flow=True)
        for i in range(len(clips)):
            size = SOURCE_RESIZE if domain == "source" else TARGET_RESIZE
            assert clips[i].flow.shape == (*size, 2)
    train = domain_clips(cfg, "target", False, False)
    flow = dataset_flow(cfg, cfg.data.target)
    for plan in plan_videos(train, train).values():
        window = FrameWindow(train, plan, lambda frame: torch.full((2, *frame.shape[:2]), 0.5))
        for t in plan.labelled:
            consistent_label(window, t, cfg, flow)


def test_config_pairs_are_those_training_reads_at_the_resized_size(trees, dis_calls):
    cfg = tiny_config(*trees)
    passes = config_passes(cfg, "both", vst=True)
    assert [len(p.pairs) for p in passes] == [SOURCE_PAIRS, VST_PAIRS]
    assert [p.size for p in passes] == [SOURCE_RESIZE, TARGET_RESIZE]
    stats = fill_cache(passes, workers=1)
    assert [(s.computed, s.cached) for s in stats] == [(SOURCE_PAIRS, 0), (VST_PAIRS, 0)]
    assert sorted(set(dis_calls)) == sorted({SOURCE_RESIZE, TARGET_RESIZE})
    dis_calls.clear()
    _training_reads(cfg)
    assert dis_calls == []  # every pair training asked for was in the cache


def test_without_vst_the_target_pass_has_the_training_pairs_only(trees):
    cfg = tiny_config(*trees)
    assert [len(p.pairs) for p in config_passes(cfg, "target")] == [TARGET_PAIRS]
    # no occlusion check: t -> t-1 (the training pair) and t -> t+1 only: 4 + 3 per snippet
    no_check = replace(cfg, vst=replace(cfg.vst, occlusion_check=False))
    assert [len(p.pairs) for p in config_passes(no_check, "target", vst=True)] == [3 * 7]
    off = replace(cfg, vst=replace(cfg.vst, temporal_filter=False))
    assert [len(p.pairs) for p in config_passes(off, "target", vst=True)] == [TARGET_PAIRS]


def test_config_pass_errors_name_the_option(trees):
    cfg = tiny_config(*trees)
    with pytest.raises(ValueError, match="--vst"):
        config_passes(cfg, "source", vst=True)
    with pytest.raises(ValueError, match="--domain"):
        config_passes(cfg, "sources")
    with pytest.raises(ValueError, match="data.flow_source"):
        config_passes(replace(cfg, data=replace(cfg.data, flow_source="flownet2:/x")))
    with pytest.raises(ValueError, match="data.source is empty"):
        config_passes(replace(cfg, data=replace(cfg.data, source="")), "source")


def test_two_worker_processes_write_the_same_files_as_one(trees, tmp_path):
    files = []
    for workers in (1, 2):
        cfg = tiny_config(*trees, flow_cache=str(tmp_path / f"cache{workers}"))
        stats = fill_cache(config_passes(cfg, "target", vst=True), workers=workers)
        assert stats[0].computed == VST_PAIRS
        files.append(cache_files(tmp_path / f"cache{workers}"))
    assert len(files[0]) == VST_PAIRS and files[0].keys() == files[1].keys()
    for name in files[0]:
        a, b = (np.load(io.BytesIO(f[name])).astype(np.float32) for f in files)
        # OpenCV's DIS is not bit-reproducible across processes (seen: up to 0.02 px apart on 1 in ~3 runs)
        np.testing.assert_allclose(a, b, atol=0.05)


def test_shards_split_the_chunks_and_together_fill_everything(trees, tmp_path, dis_calls):
    cfg = tiny_config(*trees, flow_cache=str(tmp_path / "cache"))
    (vst_pass,) = config_passes(cfg, "target", vst=True)
    chunks = [shard_chunks(vst_pass.pairs, (i, 2)) for i in (0, 1)]
    assert [len(c) for c in chunks] == [2, 1] and len(chunks[0][0]) == CHUNK  # 24 pairs: chunks 0, 2 | 1
    assert sorted(p for c in chunks for chunk in c for p in chunk) == sorted(vst_pass.pairs)
    first = fill_cache([vst_pass], workers=1, shard=(0, 2))[0]
    assert (first.computed, first.cached) == (2 * CHUNK, 0) and len(dis_calls) == 2 * CHUNK
    assert len(cache_files(tmp_path / "cache")) == 2 * CHUNK
    second = fill_cache([vst_pass], workers=1, shard=(1, 2))[0]
    assert (second.computed, second.cached) == (CHUNK, 0)
    again = fill_cache([vst_pass], workers=1)[0]
    assert (again.computed, again.cached) == (0, VST_PAIRS) and len(dis_calls) == VST_PAIRS


def test_an_interrupted_fill_resumes_with_the_missing_pairs_only(trees, tmp_path, monkeypatch):
    cfg = tiny_config(*trees, flow_cache=str(tmp_path / "cache"))
    calls, first_run = [], [True]

    def dies_at_the_tenth(frame_t, frame_prev, preset="medium", dis=None):
        calls.append(1)
        if len(calls) == 10 and first_run:
            first_run.clear()
            raise KeyboardInterrupt  # as a Ctrl-C or a kill would stop it, mid-pass
        return dflow.dis_flow(frame_t, frame_prev, preset, dis)

    monkeypatch.setattr(vflow, "dis_flow", dies_at_the_tenth)
    passes = config_passes(cfg, "target", vst=True)
    with pytest.raises(KeyboardInterrupt):
        fill_cache(passes, workers=1)
    assert len(cache_files(tmp_path / "cache")) == 9
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # no half-written file left behind
    calls.clear()
    report = Collect()
    stats = fill_cache(passes, workers=1, report=report)[0]
    assert (stats.computed, stats.cached) == (VST_PAIRS - 9, 9) and len(calls) == VST_PAIRS - 9
    assert f"{VST_PAIRS:,} pairs, {VST_PAIRS - 9} to compute, 9 cached" in report.lines[0]


def test_estimate_line_counts_pairs_and_bytes_by_hand(trees, tmp_path):
    cfg = tiny_config(*trees, flow_cache=str(tmp_path / "cache"))
    (source,) = config_passes(cfg, "source")
    fill_cache([source], workers=1, shard=(0, 2))  # the first chunk: 6 pairs < CHUNK, all in shard 0
    plan = plan_pass(source)
    h, w = SOURCE_RESIZE
    per_pair = 128 + h * w * 2 * 2  # the .npy header, then float16 (h, w, 2)
    assert per_pair == npy_bytes((h, w, 2)) == 3968
    written = next((tmp_path / "cache").rglob("*.npy")).stat().st_size
    assert written == per_pair
    line = estimate_line(plan)
    assert line.startswith(f"flow source viper:{trees[0]} train at 24x40: 6 pairs, 0 to compute, 6 cached;")
    assert "0.00 GiB to write (3,968 B a pair)" in line and "about" not in line

    half = tiny_config(*trees, flow_cache=str(tmp_path / "half"), flow_scale=0.5)
    (source,) = config_passes(half, "source")
    plan = plan_pass(source, (1, 2))  # chunk 0 is the whole pass: shard 1/2 has nothing
    assert (plan.total, plan.to_compute) == (0, 0)
    plan = plan_pass(source)
    line = estimate_line(plan, seconds_per_pair=0.5, workers=2)
    per_pair = 128 + 12 * 20 * 2 * 2
    assert "at 24x40 (DIS and files at 12x20): 6 pairs, 6 to compute, 0 cached;" in line
    assert f"{6 * per_pair / 2**30:.2f} GiB to write ({per_pair:,} B a pair)" in line
    assert line.endswith("about 2 s at 4.0 pairs/s on 2 worker(s)")  # 6 pairs at 2 / 0.5 pairs/s: 1.5 s
    fill_cache([source], workers=1)
    assert next((tmp_path / "half").rglob("*.npy")).stat().st_size == per_pair


def test_the_estimate_comes_from_the_first_chunks_and_can_stop_the_pass(trees, tmp_path):
    cfg = tiny_config(*trees, flow_cache=str(tmp_path / "cache"))
    report = Collect()
    stats = fill_cache(config_passes(cfg, "target", vst=True), workers=1, report=report, estimate_only=True)[0]
    assert stats.computed == CHUNK and report.advanced == CHUNK  # one worker: its first chunk times it
    (line,) = report.lines
    assert f"{VST_PAIRS} to compute" in line and "pairs/s on 1 worker(s)" in line
    assert len(cache_files(tmp_path / "cache")) == CHUNK


@pytest.mark.parametrize("text", ["2/2", "1", "-1/2", "a/b", "0/0"])
def test_parse_shard_rejects_bad_values(text):
    with pytest.raises(ValueError, match=f"--shard '{text}'"):
        parse_shard(text)
    assert parse_shard("3/8") == (3, 8)


def test_training_says_up_front_how_much_flow_it_will_compute(trees, tmp_path, dis_calls):
    cfg = tiny_config(*trees, flow_cache=str(tmp_path / "cache"))
    target = domain_clips(cfg, "target", False, with_flow=True)
    line = on_demand_line(target, workers=2)
    per_pair = 128 + TARGET_RESIZE[0] * TARGET_RESIZE[1] * 4
    assert line.startswith(f"flow: about {TARGET_PAIRS} of {TARGET_PAIRS} pairs at 28x44 are not cached in ")
    assert f"({TARGET_PAIRS * per_pair / 2**30:.2f} GiB, about " in line and "over 2 loader process(es)" in line
    assert len(dis_calls) == 1  # the one pair it timed, now cached
    fill_cache(config_passes(cfg, "target"), workers=1, shard=(0, 2))  # chunk 0: 8 of the 12 pairs
    assert on_demand_line(target, workers=2).startswith(f"flow: about {TARGET_PAIRS - CHUNK} of {TARGET_PAIRS} pairs")
    fill_cache(config_passes(cfg, "target"), workers=1)
    assert on_demand_line(target, workers=2) is None
    fixed = replace(cfg, data=replace(cfg.data, compute_flow=False))
    assert on_demand_line(domain_clips(fixed, "target", False, with_flow=True), workers=2) is None
