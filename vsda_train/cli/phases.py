"""`vsda-train source | vat | vst`: option parsing only; the phases live in vsda_train.phases."""

from __future__ import annotations

from pathlib import Path

import typer

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (configs/*.yaml)")
SetOpt = typer.Option(None, "--set", "-s", help="override: section.key=value (repeatable)")
NameOpt = typer.Option(None, "--name", help="run name: the folder runs/NAME (run.name)")
ResumeOpt = typer.Option(False, "--resume", help="continue runs/NAME/last.pt exactly where it stopped")
SeedOpt = typer.Option(None, "--seed", help="run.seed")
AmpOpt = typer.Option(None, "--amp", help="none | bf16 | fp16 (run.amp)")
DeviceOpt = typer.Option(None, "--device", help="cpu | cuda (run.device)")


def _config(config: Path | None, sets: list[str] | None, name: str | None, seed: int | None,
            amp: str | None, device: str | None, phase: str | None):
    from vsda_train.config import for_phase, load_config

    extra = [f"run.{k}={v}" for k, v in (("name", name), ("seed", seed), ("amp", amp), ("device", device))
             if v is not None]
    cfg = load_config(config, list(sets or []) + extra)
    return cfg if phase is None else for_phase(cfg, phase)


def _finish(run, evaluate: bool) -> None:
    from vsda_train.evaluate import evaluate_run

    if run.info.is_main:
        typer.echo(f"checkpoint: {run.out / 'last.pt'}")
        if evaluate and run.cfg.data.val:
            evaluate_run(run)


def guard(fn, *args, **kwargs):
    """Run a phase; a bad option or config value becomes one line and exit code 2, vsda's other errors
    and file-system errors one line and exit code 1.

    Any other exception is a bug: it propagates with its traceback.
    """
    from vsda_deploy.errors import VsdaError
    from vsda_deploy.options import OptionError
    from vsda_train.config import ConfigError

    try:
        return fn(*args, **kwargs)
    except (ConfigError, OptionError) as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(2) from None
    except (VsdaError, OSError) as e:  # CheckpointError, DatasetError...; FileExistsError
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(1) from None


def source(config: Path | None = ConfigOpt, sets: list[str] | None = SetOpt, name: str | None = NameOpt,
           resume: bool = ResumeOpt, seed: int | None = SeedOpt, amp: str | None = AmpOpt,
           device: str | None = DeviceOpt,
           oracle: bool = typer.Option(False, "--oracle", help="train on target-train labels (data.oracle; "
                                       "source.oracle)"),
           photometric: str | None = typer.Option(None, help="photometric augmentation: none|weak|strong "
                                                  "(source.augment)"),
           evaluate: bool = typer.Option(True, "--eval/--no-eval", help="score data.val at the end")) -> None:
    """Supervised training on source clips (or, with --oracle, on target-train labels)."""
    from vsda_train.phases import train_source

    sets = [*(sets or []), *(["source.oracle=true"] if oracle else []),
            *([f"source.augment={photometric}"] if photometric else [])]
    cfg = guard(_config, config, sets, name, seed, amp, device, "source")
    run = guard(train_source, cfg, resume=resume)
    guard(_finish, run, evaluate)


def vat(config: Path | None = ConfigOpt, sets: list[str] | None = SetOpt, name: str | None = NameOpt,
        resume: bool = ResumeOpt, seed: int | None = SeedOpt, amp: str | None = AmpOpt,
        device: str | None = DeviceOpt,
        init: Path | None = typer.Option(None, "--init", help="start from this checkpoint (e.g. source-only)"),
        evaluate: bool = typer.Option(True, "--eval/--no-eval", help="score data.val at the end")) -> None:
    """Phase 1: source loss + video adversarial training (VAT)."""
    from vsda_train.phases import train_vat

    cfg = guard(_config, config, sets, name, seed, amp, device, "vat")
    run = guard(train_vat, cfg, init=str(init) if init else None, resume=resume)
    guard(_finish, run, evaluate)


def vst(config: Path | None = ConfigOpt, sets: list[str] | None = SetOpt, name: str | None = NameOpt,
        resume: bool = ResumeOpt, seed: int | None = SeedOpt, amp: str | None = AmpOpt,
        device: str | None = DeviceOpt,
        init: Path = typer.Option(..., "--init", help="the VAT checkpoint that makes the pseudo labels"),
        rounds: int | None = typer.Option(None, "--rounds", help="pseudo-label rounds (vst.rounds)"),
        evaluate: bool = typer.Option(True, "--eval/--no-eval", help="score data.val at the end")) -> None:
    """Phase 2: video self-training on target clips with temporally consistent pseudo labels."""
    from vsda_train.phases import train_vst

    sets = list(sets or []) + ([f"vst.rounds={rounds}"] if rounds else [])
    cfg = guard(_config, config, sets, name, seed, amp, device, "vst")
    run = guard(train_vst, cfg, init=str(init), resume=resume)
    guard(_finish, run, evaluate)


def pseudo(config: Path | None = ConfigOpt, sets: list[str] | None = SetOpt, name: str | None = NameOpt,
           seed: int | None = SeedOpt, device: str | None = DeviceOpt,
           init: Path = typer.Option(..., "--init", help="the checkpoint that makes the pseudo labels")) -> None:
    """The pseudo labels VST would train on and their statistics, without training (runs/NAME/pseudo/round0).

    With data.oracle (target-train labels, for measurement only) the statistics include their accuracy
    and how often the neighbours agree with right and with wrong pixels: what the vst settings are
    chosen on, never target-val.
    """
    from vsda_train.phases import pseudo_labels_only

    cfg = guard(_config, config, sets, name, seed, None, device, "vst")
    folder, stats = guard(pseudo_labels_only, cfg, init=str(init))
    typer.echo(pseudo_summary(stats))
    typer.echo(f"labels and {folder / 'stats.json'}")
    if not cfg.data.oracle:
        typer.echo("no accuracy: data.oracle (a labelled copy of the target-train clips) is not set")


def pseudo_summary(stats: dict) -> str:
    """Return one line of pseudo-label statistics (percentages)."""
    parts = [f"kept {stats['kept_fraction']:.1f} % of the pixels"]
    if stats.get("accuracy_kept") is not None:
        parts.append(f"accuracy {stats['accuracy_kept']:.1f} % kept, {stats['accuracy_raw']:.1f} % raw")
    if stats.get("miou_raw") is not None:
        parts.append(f"raw labels' mIoU {stats['miou_raw']:.1f}")
    time = stats.get("time_agreement")
    if time:
        parts.append(f"the neighbours agree with {time['right']:.1f} % of the right and {time['wrong']:.1f} % "
                     f"of the wrong raw pixels ({time['right_confident']:.1f} and {time['wrong_confident']:.1f} "
                     "% of the confident ones)")
    return "; ".join(parts)


def adapt(config: Path | None = ConfigOpt, sets: list[str] | None = SetOpt,
          name: str = typer.Option(..., "--name", help="runs/NAME/{source,vat,vst}"),
          resume: bool = ResumeOpt, seed: int | None = SeedOpt, amp: str | None = AmpOpt,
          device: str | None = DeviceOpt,
          phases: str = typer.Option("source,vat,vst", "--phases", help="the phases to run, in order"),
          init: Path | None = typer.Option(None, "--init", help="checkpoint the first phase starts from"),
          evaluate: bool = typer.Option(True, "--eval/--no-eval", help="score data.val after each phase")) -> None:
    """The whole adaptation: source → VAT → VST, each phase from the one before (runs/NAME/<phase>)."""
    from vsda_train.chain import adapt as run_chain
    from vsda_train.run import PHASES

    order = [p.strip() for p in phases.split(",") if p.strip()]
    if not order or not set(order) <= set(PHASES):
        typer.secho(f"error: --phases {phases}: a comma-separated list of {', '.join(PHASES)}", fg="red", err=True)
        raise typer.Exit(2)
    cfg = guard(_config, config, sets, None, seed, amp, device, None)  # each phase takes its own iters
    checkpoints = guard(run_chain, cfg, name, order, init=str(init) if init else None, resume=resume,
                         evaluate=evaluate)
    for phase, path in checkpoints.items():
        typer.echo(f"{phase}: {path}")
