"""Tests of `vsda-train flow`: the config form, the plain form with --resize, shards, --estimate, errors."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tests.train.flow_fixtures import TARGET_RESIZE, cache_files, make_trees, texture, tiny_config
from vsda_deploy.data import build_dataset
from vsda_train.cli import app
from vsda_train.clips import ScaledClips
from vsda_train.flow import DISFlowCache

VST_PAIRS, SOURCE_PAIRS = 3 * 8, 2 * 3


@pytest.fixture
def config(tmp_path) -> Path:
    cfg = tiny_config(*make_trees(tmp_path), flow_cache=str(tmp_path / "cache"))
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def _flow(*args: str):
    result = CliRunner().invoke(app, ["flow", *args])
    return result.exit_code, result.output


def test_config_form_fills_both_domains_with_vst_then_everything_is_cached(config, tmp_path):
    code, out = _flow("-c", str(config), "--vst", "--workers", "1")
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("flow ")]
    assert re.match(rf"flow source viper:\S+ train at 24x40: {SOURCE_PAIRS} pairs, {SOURCE_PAIRS} to compute, 0 cached",
                    lines[0])
    assert f"at 28x44: {VST_PAIRS} pairs, {VST_PAIRS} to compute, 0 cached;" in lines[2]
    assert f"{VST_PAIRS} pairs computed, 0 already cached" in out
    assert len(cache_files(tmp_path / "cache")) == SOURCE_PAIRS + VST_PAIRS
    code, out = _flow("-c", str(config), "--vst", "--domain", "target", "--workers", "1")
    assert code == 0 and f"0 pairs computed, {VST_PAIRS} already cached" in out
    assert f"{VST_PAIRS} pairs, 0 to compute, {VST_PAIRS} cached" in out


def test_config_form_shards_over_two_worker_processes(config, tmp_path):
    for shard in ("1/2", "0/2"):
        code, out = _flow("-c", str(config), "--domain", "target", "--vst", "--shard", shard, "--workers", "2")
        assert code == 0, out
        assert "in shard " + shard in out
    assert len(cache_files(tmp_path / "cache")) == VST_PAIRS


def test_estimate_stops_after_the_first_chunk(config, tmp_path):
    code, out = _flow("-c", str(config), "--domain", "target", "--vst", "--estimate", "--workers", "1")
    assert code == 0, out
    assert re.search(rf"{VST_PAIRS} to compute, 0 cached; .* B a pair\); about \d+ s at [\d.]+ pairs/s", out)
    assert len(cache_files(tmp_path / "cache")) == 8


def test_plain_form_resizes_like_training(tmp_path):
    folder = tmp_path / "drive"
    folder.mkdir()
    base = texture(6, 48, 80)
    for i in range(4):
        cv2.imwrite(str(folder / f"frame{i}.png"), np.ascontiguousarray(base[:, i:i + 64]))
    args = [f"video:{folder}", "--preset", "ultrafast", "--resize", "24x32", "--workers", "2"]
    code, out = _flow(*args)
    assert code == 0, out
    assert "at 24x32: 3 pairs, 3 to compute, 0 cached" in out and "3 pairs computed, 0 already cached" in out
    code, out = _flow(*args)
    assert "0 pairs computed, 3 already cached" in out
    # training reads the same files without computing: keys and frame size agree
    cache = DISFlowCache(folder / ".vsda_flow" / "ultrafast", "ultrafast", compute=False)
    data = ScaledClips(build_dataset(f"video:{folder}", labels=False), (24, 32), cache)
    flow = data[1].flow
    assert flow.shape == (24, 32, 2) and abs(np.median(flow[4:-4, 4:-4, 0]) - 0.5) < 0.25  # 1 px at 64 wide


@pytest.mark.parametrize(("args", "message"), [
    (["video:NOWHERE"], "NOWHERE"),
    (["video:HERE", "--preset", "slow"], "--preset 'slow'"),
    (["video:HERE", "--scale", "2"], "--scale 2.0"),
    (["video:HERE", "--resize", "512"], "--resize '512'"),
    (["video:HERE", "--shard", "2/2"], "--shard '2/2'"),
    (["video:HERE", "--vst"], "--vst: only with --config"),
    (["video:HERE", "-c", "CONFIG"], "either DATASET or --config"),
    ([], "either DATASET or --config"),
    (["-c", "CONFIG", "--preset", "fast"], "--preset: with --config"),
    (["-c", "CONFIG", "--domain", "sky"], "--domain 'sky'"),
    (["-c", "NOWHERE.yaml"], "NOWHERE.yaml: config file not found"),
    (["-c", "CONFIG", "--set", "data.flow_source=flownet2:/x"], "data.flow_source"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, config, args, message):
    here = tmp_path / "drive"
    here.mkdir()
    subs = {"NOWHERE": str(tmp_path / "nowhere"), "HERE": str(here), "CONFIG": str(config)}
    args = [re.sub("|".join(subs), lambda m: subs[m[0]], a) for a in args]
    code, out = _flow(*args)
    assert code == 2, out
    assert len(out.strip().splitlines()) == 1 and out.startswith("error: ")
    assert re.sub("|".join(subs), lambda m: subs[m[0]], message) in out


def test_a_corrupt_frame_exits_1_naming_the_file(config, tmp_path):
    bad = next((tmp_path / "viper" / "train" / "img" / "002").glob("*00002.jpg"))
    bad.write_bytes(b"not a jpeg")
    code, out = _flow("-c", str(config), "--domain", "source", "--workers", "1")
    assert code == 1 and f"error: {bad}: unreadable or corrupt image" in out
    assert len(cache_files(tmp_path / "cache")) == 4  # the pairs before it are cached: a re-run does the rest


def test_target_resize_is_the_size_flow_is_computed_at(config, tmp_path):
    code, out = _flow("-c", str(config), "--domain", "target", "--set", "data.flow_scale=0.5", "--workers", "1")
    assert code == 0, out
    h, w = TARGET_RESIZE
    assert f"at {h}x{w} (DIS and files at {h // 2}x{w // 2})" in out
    assert {np.load(tmp_path / "cache" / name).shape for name in cache_files(tmp_path / "cache")} == {(14, 22, 2)}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_killed_run_leaves_no_workers_and_the_rerun_computes_the_rest(config, tmp_path):
    """SIGKILL mid-pass (frames enlarged to 768x1536 so that a pass takes seconds), then run again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["flow", "-c", str(config), "--domain", "target", "--vst", "--workers", "2",
            "--set", "data.target_resize=[768,1536]", "--set", "data.flow_preset=medium"]
    code = "from vsda_train.cli import app; app()"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "VSDA_NO_PROGRESS": "1"})
    cache, deadline = tmp_path / "cache", time.monotonic() + 120
    while not list(cache.rglob("*.npy")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                              text=True).stdout.split()]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(cache_files(cache))
    assert 0 < done < VST_PAIRS and workers
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    for pid in left:  # this test's own processes: none should be left, but never leak them
        os.kill(pid, signal.SIGKILL)
    assert not left  # the workers noticed and exited
    finished = len(cache_files(cache))  # chunks in flight at the kill may have completed since
    code, out = _flow(*args[1:], "--workers", "1")
    assert code == 0, out
    assert f"{VST_PAIRS - finished} pairs computed, {finished} already cached" in out
    assert len(cache_files(cache)) == VST_PAIRS
