"""``InferOptions``: everything ``vsda-infer`` is asked to do, checked before anything is opened.

A bad or contradictory value raises ``OptionError`` (the CLI's exit 2) naming the option.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vsda_deploy.backends import BACKENDS, ORT_PROVIDERS, parse_device
from vsda_deploy.options import NATIVE, OptionError, check_hw
from vsda_deploy.outputs import check_distinct
from vsda_deploy.pipeline import SMOOTH_WIDTH
from vsda_deploy.smoothing import DEFAULT_ALPHA, MODES


@dataclass(frozen=True)
class InferOptions:
    """Everything ``run_inference`` needs; the CLI options map one to one."""

    source: str
    model: str | Path
    backend: str = "auto"
    device: str = "cpu"
    provider: str = "auto"  # ONNX Runtime execution provider: auto | cpu | cuda | tensorrt
    precision: str = "fp32"  # torch backend only: fp32 | fp16
    input_size: tuple[int, int] | str | None = None  # (H, W), "native", or None: the model's trained scale
    smooth: str = "flow"
    alpha: float = DEFAULT_ALPHA
    smooth_width: int = SMOOTH_WIDTH  # smoothing grid at most this wide (px)
    gt: str | None = None
    split: str = "val"
    save_video: Path | None = None
    legend: bool = False  # draw the classes present (colour, name) on the overlay video and window
    save_labels: Path | None = None
    panoptic: bool = False
    save_jsonl: Path | None = None
    report: Path | None = None
    show: bool = False
    max_frames: int | None = None
    realtime: bool = False
    warmup: int = 10
    max_reconnects: int = 5  # a live source that cannot (re)connect gives up after this many more attempts
    live: bool = False  # a Rich status line on stderr (the CLI sets it when stderr is a terminal)

    def __post_init__(self) -> None:
        """Raise OptionError (the CLI's exit 2) for a bad or contradictory value; nothing is touched yet."""
        checks = [
            (self.smooth in MODES, f"--smooth {self.smooth!r}: choose from {', '.join(MODES)}"),
            (self.max_frames is None or self.max_frames >= 1, f"--max-frames must be >= 1, got {self.max_frames}"),
            (0 <= self.alpha < 1, f"--alpha must be in [0, 1), got {self.alpha}"),
            (self.smooth_width >= 16, f"--smooth-width must be >= 16, got {self.smooth_width}"),
            (self.warmup >= 0, f"--warmup must be >= 0, got {self.warmup}"),
            (self.max_reconnects >= 0, f"--reconnects must be >= 0, got {self.max_reconnects}"),
            (self.backend in BACKENDS, f"--backend {self.backend!r}: choose from {', '.join(BACKENDS)}"),
            (self.provider in ORT_PROVIDERS, f"--provider {self.provider!r}: choose from {', '.join(ORT_PROVIDERS)}"),
            (self.precision in ("fp32", "fp16"), f"--precision {self.precision!r}: choose from fp32, fp16"),
            (not self.panoptic or self.save_labels is not None, "--panoptic writes pan_pred/ + pred.json into the "
                                                                "--save-labels folder; give --save-labels DIR"),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionError(message)
        parse_device(self.device)
        if self.input_size is not None and self.input_size != NATIVE:
            if isinstance(self.input_size, str):
                raise OptionError(f"--input-size {self.input_size!r}: expected HxW or {NATIVE}")
            check_hw(self.input_size)
        check_distinct([("--report", self.report), ("--save-video", self.save_video),
                        ("--save-jsonl", self.save_jsonl)])
