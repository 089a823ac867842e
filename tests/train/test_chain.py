"""The adaptation chain: source -> VAT -> VST, each phase from the one before, resumable as a whole."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import tiny_synth
from tests.train.test_phases import run_cli, write_config
from vsda_train import chain
from vsda_train.checkpoint import load_checkpoint
from vsda_train.config import load_config


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_synth(tmp_path_factory.mktemp("synth") / "bench", frames=8, target_train_clips=2)


def test_each_phase_starts_from_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vsda_train.phases as phases

    calls: list[tuple[str, str | None, int]] = []

    def fake(phase: str):
        def train(cfg, init=None, resume=False, on_checkpoint=None):
            calls.append((phase, init, cfg.optim.iters))
            out = Path(cfg.run.out_dir) / cfg.run.name
            out.mkdir(parents=True)
            (out / "last.pt").write_bytes(b"")
            return SimpleNamespace(out=out, info=SimpleNamespace(is_main=True))
        return train

    for phase in ("source", "vat", "vst"):
        monkeypatch.setattr(phases, f"train_{phase}", fake(phase))
    cfg = load_config(None, [f"run.out_dir={tmp_path}", "optim.iters=9", "optim.phase_iters={vat: 5}"])
    got = chain.adapt(cfg, "exp", evaluate=False)
    runs = tmp_path / "exp"
    assert got == {p: runs / p / "last.pt" for p in ("source", "vat", "vst")}
    assert calls == [("source", None, 9), ("vat", str(runs / "source" / "last.pt"), 5),
                     ("vst", str(runs / "vat" / "last.pt"), 9)]


def test_a_chain_must_name_known_phases() -> None:
    cfg = load_config(None, [])
    for phases in ([], ["source", "vta"]):
        with pytest.raises(ValueError, match="choose from source, vat, vst"):
            chain.adapt(cfg, "exp", phases)
    with pytest.raises(ValueError, match="vst needs an initial checkpoint"):
        chain.train_phase(cfg, "vst")
    res = run_cli("vsda-train", "adapt", "--name", "exp", "--phases", "source,vta")
    assert res.returncode == 2 and res.stderr.strip() == "error: --phases source,vta: a comma-separated list of " \
        "source, vat, vst"


def test_adapt_trains_scores_and_resumes_without_redoing_a_phase(synth: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", synth, tmp_path / "runs",
                       optim={"iters": 2, "phase_iters": {"source": 3}}, vst={"rounds": 1})
    res = run_cli("vsda-train", "adapt", "-c", str(cfg), "--name", "exp")
    assert res.returncode == 0, res.stderr
    runs = tmp_path / "runs" / "exp"
    assert res.stdout.strip().splitlines()[-3:] == [f"{p}: {runs / p / 'last.pt'}" for p in ("source", "vat", "vst")]
    assert [load_checkpoint(runs / p / "last.pt")["iteration"] for p in ("source", "vat", "vst")] == [3, 2, 2]
    stamps = {f: f.stat().st_mtime_ns for p in ("source", "vat", "vst") for f in (runs / p).glob("*.*")
              if f.suffix in (".pt", ".json")}
    assert len(stamps) == 6  # last.pt and eval.json of each phase
    again = run_cli("vsda-train", "adapt", "-c", str(cfg), "--name", "exp", "--resume")
    assert again.returncode == 0, again.stderr
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps  # nothing retrained, nothing rescored
    refused = run_cli("vsda-train", "adapt", "-c", str(cfg), "--name", "exp")
    assert refused.returncode == 1 and "pass --resume" in refused.stderr  # a finished run is never clobbered
