"""YAML configs with --set overrides, and atomic checkpoints."""

from pathlib import Path

import numpy as np
import pytest
import torch

from vsda_train.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from vsda_train.config import ConfigError, load_config, save_config


def test_yaml_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  source: viper:/x\n  source_size: [64, 128]\noptim:\n  lr: 0.01\n")
    overrides = ["optim.iters=7", "vat.image_disc=true", "data.flow_cache=none", "vst.neighbours=[-1]"]
    cfg = load_config(p, overrides)
    assert cfg.data.source == "viper:/x" and cfg.data.source_size == (64, 128)
    assert cfg.optim.lr == 0.01 and cfg.optim.iters == 7
    assert cfg.vat.image_disc is True and cfg.data.flow_cache is None and cfg.vst.neighbours == (-1,)
    save_config(cfg, tmp_path / "back.yaml")
    assert load_config(tmp_path / "back.yaml") == cfg


def test_overrides_reach_into_mapping_fields() -> None:
    # model.kwargs is free-form (a YAML value per key, new keys allowed); phase_iters holds ints
    cfg = load_config("configs/synth_edge.yaml", ["model.kwargs.width=32", "model.kwargs.extra=[1, 2]",
                                                  "optim.phase_iters.vst=250", "optim.phase_iters={vat: '40'}"])
    assert cfg.model.kwargs == {"width": 32, "extra": [1, 2]}
    assert cfg.optim.phase_iters == {"vat": 40}
    cfg = load_config("configs/synth_edge.yaml", ["optim.phase_iters.vst=250"])
    assert cfg.optim.phase_iters == {"source": 1500, "vat": 1000, "vst": 250}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(["optim.lrr=1"], "unknown key 'lrr'"), (["optimx.lr=1"], "unknown section"),
     (["optim.iters=abc"], "expected int"), (["optim"], "section.key=value"),
     (["vst.tta_scales=[]"], "vst.tta_scales: expected one or more positive scales"),
     (["vst.tta_scales=[1.0,0]"], "vst.tta_scales: expected one or more positive scales"),
     (["vst.time_rule=rank", "vst.teacher=ema"], "vst.time_rule=rank: the offline teacher only"),
     (["vst.time_rule=fuse", "vst.teacher=ema"], "vst.time_rule=fuse: the offline teacher only"),
     (["vst.time_rule=vote"], "vst.time_rule"),
     (["data.rcs_temperature=-1"], "data.rcs_temperature"),
     (["optim.phase_iters.vst=many"], r"optim.phase_iters.vst: expected int"),
     (["model.kwargs.width=[1"], "--set model.kwargs.width: not a YAML value")],
)
def test_bad_overrides_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_checkpoint_atomic_round_trip_with_rng(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    torch.manual_seed(5)
    state = {"model": {"w": torch.arange(3.0)}, "iteration": 4, "rng": rng_state(rng)}
    path = save_checkpoint(tmp_path / "last.pt", state)
    expected = (torch.rand(2), rng.random())
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind
    ckpt = load_checkpoint(path)
    set_rng_state(ckpt["rng"], rng)
    assert torch.equal(torch.rand(2), expected[0]) and rng.random() == expected[1]
    assert ckpt["iteration"] == 4 and torch.equal(ckpt["model"]["w"], torch.arange(3.0))


def test_corrupt_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt: not a readable vsda checkpoint"):
        load_checkpoint(bad)


CONFIGS = sorted(Path(__file__).resolve().parents[2].glob("configs/*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.data.source and cfg.data.target and cfg.optim.iters > 0


@pytest.mark.parametrize("setting", ["data.rcs_temperature=-1", "optim.iters=abc", "vst.time_rule=vote"])
def test_a_bad_set_value_is_one_line_and_exit_2(setting: str, tmp_path: Path) -> None:
    """A bad option value is the user's input, not a failure of the run: one line naming it, exit code 2."""
    from typer.testing import CliRunner

    from vsda_train.cli import app

    res = CliRunner().invoke(app, ["source", "-c", "configs/synth_edge.yaml", "--set", setting,
                                   "--set", f"run.out_dir={tmp_path}"])
    assert res.exit_code == 2, res.output
    key = setting.partition("=")[0]
    assert key in res.output and len(res.output.strip().splitlines()) == 1
