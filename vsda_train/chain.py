"""The adaptation chain: source → VAT → VST, each phase initialised from the one before.

``train_phase`` runs one phase by name; ``adapt`` runs several in order into ``runs/NAME/<phase>``.
``vsda-train adapt``, ``make demo`` and the benchmarks all train through these two functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vsda_train.config import ConfigError, TrainConfig, for_phase, with_run
from vsda_train.loop import CheckpointHook
from vsda_train.run import PHASES, Run


def train_phase(cfg: TrainConfig, phase: str, init: str | None = None, resume: bool = False,
                on_checkpoint: CheckpointHook | None = None) -> Run:
    """Train one phase (``source``, ``vat`` or ``vst``) with its own ``optim.phase_iters``; return the run."""
    from vsda_train.phases import train_source, train_vat, train_vst

    cfg = for_phase(cfg, phase)
    if phase == "source":
        return train_source(cfg, resume=resume, on_checkpoint=on_checkpoint)
    if phase == "vat":
        return train_vat(cfg, init=init, resume=resume, on_checkpoint=on_checkpoint)
    if phase == "vst":
        if init is None:
            raise ConfigError("vst needs an initial checkpoint (the VAT model that makes the pseudo labels)")
        return train_vst(cfg, init=init, resume=resume, on_checkpoint=on_checkpoint)
    raise ConfigError(f"unknown phase {phase!r}: choose from {', '.join(PHASES)}")


def needs_eval(out: Path) -> bool:
    """True when ``out/eval.json`` is missing or older than ``out/last.pt``."""
    scored, last = out / "eval.json", out / "last.pt"
    return not scored.is_file() or scored.stat().st_mtime < last.stat().st_mtime


def adapt(cfg: TrainConfig, name: str, phases: Sequence[str] = PHASES, init: str | None = None,
          resume: bool = False, evaluate: bool = True) -> dict[str, Path]:
    """Train ``phases`` in order into ``run.out_dir/NAME/<phase>``; return each phase's checkpoint.

    Each phase starts from the previous one's ``last.pt`` (the first from ``init``). With ``resume``
    a finished phase is kept and an interrupted one continues exactly. ``evaluate`` scores each new
    checkpoint on ``data.val`` (main rank; ``eval.json`` beside it).
    """
    from vsda_train.evaluate import evaluate_run

    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise ConfigError(f"phases {list(phases)}: choose from {', '.join(PHASES)}")
    checkpoints: dict[str, Path] = {}
    for phase in phases:
        run = train_phase(with_run(cfg, name=f"{name}/{phase}"), phase, init=init, resume=resume)
        checkpoints[phase] = run.out / "last.pt"
        init = str(checkpoints[phase])
        if evaluate and run.info.is_main and cfg.data.val and needs_eval(run.out):
            evaluate_run(run)
    return checkpoints


__all__ = ["adapt", "needs_eval", "train_phase"]
