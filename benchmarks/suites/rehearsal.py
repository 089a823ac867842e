"""``python -m benchmarks rehearsal``: the real recipe end to end at full resolution, a few iterations, on CPU.

What a team about to train VIPER -> Cityscapes on GPUs wants to know first: do the real configs run
from the released layouts to an exported model, and what does each step cost in time, memory and
disk. The suite writes a synthetic tree in the released layouts at the real sizes (``vsda-train
synth``: VIPER 1920x1080 source, Cityscapes / Cityscapes-VPS 2048x1024 target), then for each model
runs the shipped config (``configs/viper2cityvps_deeplabv2.yaml``, ``configs/viper2cityvps_ddrnet.yaml``)
with only the paths, the device (CPU), the iterations and the loader workers overridden:

flow (``vsda-train flow -c --vst``) -> source -> VAT -> VST (one process, then two gloo ranks under
``torchrun``) -> ``vsda-train eval`` (Cityscapes-VPS val) -> ``vsda-export`` (FP32 + FP16) ->
``vsda-infer`` on the val videos at the model's trained scale.

Every step is its own process. A row gives its wall time, the peak resident memory of its process
tree (summed over the processes alive at once, sampled every 0.2 s), and the disk it added under the
rehearsal root. The model starts from random weights (no ImageNet checkpoint is downloaded), so
accuracy means nothing here; that the steps run, and what they cost, does. An export whose FP16
file misses the parity tolerance on such a model (near-tied logits) is marked ❎, not ❌.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.suite import FAILED, INACCURATE, OK, Column, Row, SuiteResult, new_result

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"deeplabv2": "configs/viper2cityvps_deeplabv2.yaml", "ddrnet": "configs/viper2cityvps_ddrnet.yaml"}
SYNTH = ("--width", "2048", "--height", "1024", "--source-size", "1080x1920", "--source-clips", "1",
         "--source-val-clips", "0", "--target-train-clips", "2", "--target-val-clips", "1", "--frames", "30")
PARITY_MISSED = 3  # vsda-export's exit code when a file misses its parity tolerance
COLUMNS = [Column("wall_s", "wall s", "{:.0f}"), Column("peak_rss_gib", "peak RSS GiB", "{:.2f}"),
           Column("disk_mib", "disk written MiB", "{:.0f}"), Column("command", "command", "{}")]


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def tree_rss(root_pid: int) -> int:
    """Return the resident bytes of ``root_pid`` and every process below it (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            rss[int(entry.name)] = int(fields[21]) * page  # field 24: rss in pages
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def disk_bytes(root: Path) -> int:
    """Return the bytes the files under ``root`` occupy on disk (allocated blocks, as ``du``)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                continue
    return total


def run_step(name: str, argv: Sequence[str], root: Path, log: Path) -> Row:
    """Run one step as a subprocess; return its row (wall time, peak tree RSS, disk written, status)."""
    env = {**os.environ, "VSDA_NO_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}
    before, peak, start = disk_bytes(root), 0, time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ {shlex.join(argv)}\n")
        out.flush()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.2):
                peak = max(peak, tree_rss(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    values = {"wall_s": wall, "peak_rss_gib": peak / 2**30, "disk_mib": (disk_bytes(root) - before) / 2**20,
              "command": shlex.join(argv[:3]) + " ..."}
    if code == PARITY_MISSED and "vsda-export" in argv[0]:  # the files are written; random weights tie logits
        return Row(name, INACCURATE, "parity tolerance missed (random weights)", values)
    if code != 0:
        return Row(name, FAILED, f"exit {code} (see {log})", values)
    return Row(name, OK, "", values)


def model_steps(model: str, root: Path) -> list[tuple[str, list[str]]]:
    """Return ``(row name, argv)`` of one model's steps, the config's paths pointed at the rehearsal tree."""
    config, runs = CONFIGS[model], root / "runs" / model
    sets = [f"data.source=viper:{root}/source", f"data.target=cityscapes-vps:{root}/target",
            f"data.val=cityscapes-vps:{root}/target", f"data.oracle=cityscapes-seq:{root}/oracle",
            "data.workers=0", "run.device=cpu", "run.amp=none", "optim.iters=2", "run.log_every=1",
            "run.ckpt_every=2", f"run.out_dir={runs}"]
    common = ["-c", config, *(a for s in sets for a in ("--set", s))]
    train = _bin("vsda-train")
    ckpt = {p: str(runs / p / "last.pt") for p in ("source", "vat", "vst")}
    onnx = runs / "export" / "model.onnx"
    return [
        (f"{model} · flow (source, target, VST pairs)", [train, "flow", *common, "--workers", "2", "--vst"]),
        (f"{model} · source", [train, "source", *common, "--name", "source", "--no-eval"]),
        (f"{model} · VAT", [train, "vat", *common, "--name", "vat", "--init", ckpt["source"], "--no-eval"]),
        (f"{model} · VST (1 process)", [train, "vst", *common, "--name", "vst", "--init", ckpt["vat"], "--no-eval"]),
        (f"{model} · VST (2 gloo ranks)", [_bin("torchrun"), "--standalone", "--nproc_per_node", "2", train, "vst",
                                           *common, "--name", "vst_ddp", "--init", ckpt["vat"], "--no-eval"]),
        (f"{model} · eval (VPS val)", [train, "eval", ckpt["vst"], "--data", f"cityscapes-vps:{root}/target",
                                       "--json", str(runs / "eval.json")]),
        (f"{model} · export FP32 + FP16", [_bin("vsda-export"), ckpt["vst"], "-o", str(onnx), "--fp16",
                                           "--data", f"cityscapes-vps:{root}/target"]),
        (f"{model} · vsda-infer (VPS val)", [_bin("vsda-infer"), f"cityscapes-vps:{root}/target", "--model", str(onnx),
                                             "--no-show", "--report", str(runs / "infer.json")]),
    ]


def run(root: Path, models: Sequence[str] = tuple(CONFIGS)) -> SuiteResult:
    """Return the rehearsal's rows: the synthetic tree, then every step of each model."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    log = root / "rehearsal.log"
    result = new_result("rehearsal", COLUMNS, {"root": str(root), "models": list(models)})
    steps: list[tuple[str, list[str]]] = []
    if not (root / "summary.json").is_file():
        steps.append(("synth: VIPER 1920x1080 + Cityscapes 2048x1024",
                      [_bin("vsda-train"), "synth", str(root), *SYNTH, "--force"]))
    for model in models:
        steps += model_steps(model, root)
    for name, argv in steps:
        row = run_step(name, argv, root, log)
        result.rows.append(row)
        print(f"{row.status:6} {name}: {row.values['wall_s']:.0f} s, {row.values['peak_rss_gib']:.2f} GiB, "
              f"{row.values['disk_mib']:.0f} MiB", flush=True)
    result.notes.append(f"commands and their output: {log}")
    result.extra["name_header"] = "step"
    return result


def plot(result: SuiteResult, path: Path) -> Path | None:
    """Return a bar chart of each step's wall time and peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r.values]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.42 * len(rows) + 1.5), sharey=True)
    names = [r.name for r in rows][::-1]
    for ax, key, label in ((axes[0], "wall_s", "wall time (s)"), (axes[1], "peak_rss_gib", "peak RSS (GiB)")):
        values = [r.values[key] for r in rows][::-1]
        colours = ["tab:red" if r.status == FAILED else "tab:blue" for r in rows][::-1]
        ax.barh(names, values, color=colours)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"rehearsal at full resolution on {result.machine.get('summary', 'this machine')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

