"""Training configuration: frozen dataclasses loaded from YAML, overridden with ``key=value``.

One YAML file per scenario lives in ``configs/``. The file mirrors the dataclasses below
(sections ``data``, ``model``, ``optim``, ``source``, ``vat``, ``vst``, ``run``); anything left out
keeps its default. ``--set optim.lr=1e-3 --set run.seed=1`` overrides single fields.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from vsda_deploy.errors import VsdaError

BN_MODES = ("train", "frozen_affine", "frozen_stats", "frozen")
PREPROCESS = ("imagenet", "caffe")
TARGET_FRAMES = ("all", "labelled")
VAT_PASSES = ("per_domain", "joint")


class ConfigError(VsdaError, ValueError):
    """A config file or override that does not fit the dataclasses."""


def _choice(where: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(choices)}")


def _size(where: str, value: tuple[int, ...] | None) -> None:
    if value is not None and (len(value) != 2 or min(value) < 1):
        raise ConfigError(f"{where}: expected [H, W] with positive sides, got {list(value)}")


@dataclass(frozen=True)
class DataConfig:
    """Where clips come from and how training reads them: load-time resize, random scale, crop, flip.

    Frames are resized at load to ``source_resize`` / ``target_resize`` (H, W; None keeps the
    dataset's size), as the peers do (VIPER 1920x1080 -> 720x1280, Cityscapes 2048x1024 ->
    512x1024); the optical flow is computed (and cached) on the resized frames. A training clip is
    then rescaled by a factor from ``scale_range``, cropped to ``source_size`` / ``target_size``
    and mirrored with ``hflip``. Target frames are predicted at ``eval_size`` (default
    ``target_resize``) for validation, pseudo labels and export, and scored at full resolution.
    """

    source: str = ""  # labelled source spec, e.g. viper:data/synth/source
    target: str = ""  # unlabelled target spec, e.g. cityscapes-vps:data/synth/target
    val: str = ""  # labelled target spec scored at the end (never used for selection)
    val_split: str = "val"
    oracle: str = ""  # target-train *with* labels: the oracle run and pseudo-label accuracy only
    label_space: str = "viper15"
    k: int = 1  # neighbour offset t-k
    target_frames: str = "all"  # all | labelled: every target frame, or the labelled-frame positions (peers)
    source_resize: tuple[int, int] | None = None  # H, W of source frames at load (None: as stored)
    target_resize: tuple[int, int] | None = None
    eval_size: tuple[int, int] | None = None  # H, W target frames are predicted at (None: target_resize)
    source_size: tuple[int, int] = (128, 256)  # H, W of training crops
    target_size: tuple[int, int] = (128, 256)
    scale_range: tuple[float, float] = (1.0, 1.0)  # random rescale before the crop
    hflip: bool = True  # random horizontal flip of training clips
    batch_size: int = 2
    rcs_temperature: float = 0.0  # rare-class sampling of labelled clips (DAFormer: 0.01); 0: uniform
    rcs_min_pixels: int = 3000  # a clip counts for a class above this many pixels at its load size
    workers: int = 0
    flow_source: str = "dis"  # dis (OpenCV DIS, cached) | flownet2:FOLDER (the published *_int16_x10.npy)
    flow_preset: str = "medium"
    flow_scale: float = 1.0  # DIS at this fraction of the (resized) frame size
    flow_cache: str | None = None
    compute_flow: bool = True  # False: a missing cached pair is an error

    def __post_init__(self) -> None:
        _choice("data.target_frames", self.target_frames, TARGET_FRAMES)
        for name in ("source_resize", "target_resize", "eval_size", "source_size", "target_size"):
            _size(f"data.{name}", getattr(self, name))
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ConfigError(f"data.scale_range: expected 0 < low <= high, got {list(self.scale_range)}")
        if self.rcs_temperature < 0 or self.rcs_min_pixels < 0:
            raise ConfigError(f"data.rcs_temperature / data.rcs_min_pixels: expected >= 0, got "
                              f"{self.rcs_temperature} / {self.rcs_min_pixels}")
        if self.flow_source != "dis" and not self.flow_source.startswith("flownet2:"):
            raise ConfigError(f"data.flow_source: {self.flow_source!r} is not 'dis' or 'flownet2:FOLDER'")

    @property
    def predict_size(self) -> tuple[int, int] | None:
        """Return the (H, W) target frames are predicted at (None: their own size)."""
        return self.eval_size or self.target_resize


@dataclass(frozen=True)
class ModelConfig:
    """Which segmenter (``vsda_train.models.create_model``), its input normalisation and BatchNorm mode.

    ``bn``: ``train`` (batch statistics, affine trained), ``frozen_affine`` (batch statistics and
    running averages as in train mode, affine weights fixed: the peers' DeepLabV2 recipe),
    ``frozen_stats`` (running statistics fixed, affine trained) or ``frozen`` (BatchNorm fixed).
    ``preprocess``: ``imagenet`` (RGB, mean/std) or ``caffe`` (BGR, 0-255, mean only: the Caffe
    ImageNet ResNet-101 the peers start from).
    """

    name: str = "ddrnet23_slim"
    kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    bn: str = "train"
    preprocess: str = "imagenet"
    sync_bn: bool = True  # SyncBatchNorm under multi-GPU DDP (CUDA only; CPU/gloo keeps per-rank stats)

    def __post_init__(self) -> None:
        _choice("model.bn", self.bn, BN_MODES)
        _choice("model.preprocess", self.preprocess, PREPROCESS)


@dataclass(frozen=True)
class OptimConfig:
    """SGD with poly decay, the peers' recipe."""

    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 2.5e-4
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    iters: int = 40000  # where training stops
    poly_horizon: int | None = None  # the poly LR reaches 0 here (peers: 250000 while stopping at 40k-120k)
    head_schedule: str = "poly"  # poly | constant: the heads' LR (DA-VSN / TPS leave their x10 heads undecayed)
    phase_iters: dict[str, int] = field(default_factory=dict)  # e.g. {vst: 20000}; default: iters
    warmup_iters: int = 0
    grad_clip: float | None = None  # max L2 norm of the segmenter's gradient (peers: none or 1)
    aux_weight: float = 0.4  # weight of the auxiliary head's cross-entropy (DDRNet 0.4; DeepLabV2 peers 0.1)

    def __post_init__(self) -> None:
        _choice("optim.head_schedule", self.head_schedule, ("poly", "constant"))
        if self.poly_horizon is not None and self.poly_horizon < 1:
            raise ConfigError(f"optim.poly_horizon: expected a positive iteration count, got {self.poly_horizon}")


@dataclass(frozen=True)
class SourceConfig:
    """The supervised phase (``vsda-train source``): on source labels, or on target-train labels (oracle)."""

    oracle: bool = False  # train on data.oracle (target-train labels): the upper bound, never a method
    augment: str = "none"  # photometric augmentation of the training clips: none | weak | strong | tps
    # A model with an instance head (model.kwargs.instance_head) also learns Panoptic-DeepLab's
    # centres and offsets from the labels' instance ids (vsda_train.instance_loss): the weights of the
    # heatmap cross-entropy and of the offsets' L1 (pixels), and the centres' Gaussian in pixels of the
    # training frames (Panoptic-DeepLab: 8 at 1024 x 2048).
    center_weight: float = 1.0
    offset_weight: float = 0.1
    center_sigma: float = 2.0


@dataclass(frozen=True)
class VATConfig:
    """Phase 1: video adversarial training."""

    adv_weight: float = 1e-3  # segmenter's adversarial loss weight (video discriminator)
    batch_size: int | None = None  # clips per domain in a VAT step (default: data.batch_size)
    disc_lr: float = 1e-4
    disc_betas: tuple[float, float] = (0.9, 0.99)
    disc_width: int = 64
    video_disc: bool = True
    image_disc: bool = False  # optional per-frame (ADVENT-style) discriminator
    image_adv_weight: float = 1e-3
    source_augment: str = "none"  # photometric augmentation of source clips: none | weak | strong | tps
    disc_schedule: str = "constant"  # constant | poly: the discriminators' LR decays like the segmenter's
    disc_grad_clip: float | None = None  # max L2 norm of each discriminator's gradient (DA-VSN: 1)
    aux_adv_weight: float = 0.0  # adversarial weight on the auxiliary output (its own discriminator; peers 2e-4)
    passes: str = "per_domain"  # per_domain: source and target clips in separate segmenter passes (peers);
    #                             joint: one pass over both (crops of one size only)

    def __post_init__(self) -> None:
        _choice("vat.disc_schedule", self.disc_schedule, ("constant", "poly"))
        _choice("vat.passes", self.passes, VAT_PASSES)


@dataclass(frozen=True)
class VSTConfig:
    """Phase 2: video self-training with temporally consistent pseudo labels."""

    rounds: int = 1
    class_top_fraction: float = 0.6  # keep the most confident p of each class's pixels (CBST)
    min_confidence: float = 0.0
    temporal_filter: bool = True  # neighbours warped by flow must agree
    neighbours: tuple[int, ...] = (-1, 1)  # offsets (in k) of the voting frames
    occlusion_check: bool = True  # forward-backward check: occluded pixels do not vote
    time_first: bool = False  # class-balanced selection among temporally consistent pixels (filter, then select)
    time_rule: str = "filter"  # filter: a pixel a neighbour contradicts is dropped (the seed's); rank: each class
    #                            keeps its top fraction of all its pixels, temporally consistent ones first;
    #                            fuse: each pixel's softmax is averaged with its visible neighbours', warped
    #                            by the flow, before the class top fraction (offline teacher only)
    tta_flip: bool = False  # pseudo labels from the mean softmax of the frame and its mirror image
    tta_scales: tuple[float, ...] = (1.0,)  # ... and of these rescaled copies (each mirrored too with tta_flip)
    augment: str = "strong"  # photometric augmentation of target frames: none | weak | strong | tps
    teacher: str = "offline"  # offline: rounds of pseudo labels from a fixed model (the seed's VST);
    #                           ema: a mean teacher labels each batch online (vsda_train/teacher.py)
    ema_momentum: float = 0.99  # teacher <- m teacher + (1 - m) student, every step
    mix: str = "source"  # ema: source (DACS: half of a source frame's classes, with their true labels, pasted
    #                      onto the target frame) | class (ClassMix of target frames across clips) | none
    source_weight: float = 1.0  # ema: weight of the source cross-entropy trained alongside
    source_match: str = "histogram"  # ema: histogram (each source frame's channels matched to the histograms of
    #                                  the clean target frame of its step, as TPS's hist_match does) | none
    threshold_decay: float = 0.99  # ema: decay of the running confidence histogram per step
    pseudo_from: str = "current"  # ema: current (the teacher labels frame t; temporal_filter checks it against
    #                               t-k) | previous (frame t-k's labels warped to t by the flow, occluded
    #                               pixels ignored: TPS's cross-frame pseudo labels)
    mask_ratio: float = 0.0  # ema: MIC's masked image consistency: the student also learns the target frame with
    #                          this share of its mask_block squares blanked, from the teacher's labels (MIC: 0.7)
    mask_block: int = 16  # ema: side of a masked square in pixels at the load size (MIC: 64 at 1024 px width)
    mask_weight: float = 1.0  # ema: weight of the masked frame's cross-entropy (MIC's mask_lambda)

    def __post_init__(self) -> None:
        _choice("vst.teacher", self.teacher, ("offline", "ema"))
        _choice("vst.mix", self.mix, ("none", "class", "source"))
        _choice("vst.source_match", self.source_match, ("none", "histogram"))
        _choice("vst.pseudo_from", self.pseudo_from, ("current", "previous"))
        _choice("vst.time_rule", self.time_rule, ("filter", "rank", "fuse"))
        if self.time_rule != "filter" and self.teacher != "offline":
            raise ConfigError(f"vst.time_rule={self.time_rule}: the offline teacher only (vst.teacher=offline)")
        if not 0 <= self.mask_ratio < 1 or self.mask_block < 1 or self.mask_weight < 0:
            raise ConfigError(f"vst.mask_ratio in [0, 1), vst.mask_block >= 1 and vst.mask_weight >= 0 expected, got "
                              f"{self.mask_ratio}, {self.mask_block}, {self.mask_weight}")
        if not 0 <= self.ema_momentum < 1:
            raise ConfigError(f"vst.ema_momentum: expected a value in [0, 1), got {self.ema_momentum}")
        if not self.tta_scales or any(s <= 0 for s in self.tta_scales):
            raise ConfigError(f"vst.tta_scales: expected one or more positive scales, got {list(self.tta_scales)}")


@dataclass(frozen=True)
class RunConfig:
    """Bookkeeping: names, seeds, precision, logging, checkpoints."""

    name: str = "run"
    out_dir: str = "runs"
    seed: int = 0
    device: str = "cpu"
    amp: str = "none"  # none | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    log_every: int = 20
    ckpt_every: int = 500
    threads: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training phase needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    vat: VATConfig = field(default_factory=VATConfig)
    vst: VSTConfig = field(default_factory=VSTConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))




def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Return ``value`` converted to the annotated type ``hint`` (tuples, optionals, numbers)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], where)
    if origin is tuple:
        if isinstance(value, str):
            value = yaml.safe_load(value if value.startswith("[") else f"[{value}]")
        args = typing.get_args(hint)
        item = args[0]
        return tuple(_coerce(v, item, where) for v in value)
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is not Any:
            return {k: _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    if hint is bool:
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes", "on"):
                return True
            if value.lower() in ("false", "0", "no", "off"):
                return False
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return bool(value)
    if hint in (int, float, str):
        try:
            return hint(yaml.safe_load(value) if isinstance(value, str) and hint is not str else value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}") from None
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{name}: expected a section (mapping)")
            kwargs[name] = _build(hint, value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, hint, f"{where}.{name}")
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], where: str = "config") -> TrainConfig:
    """Return a TrainConfig from a nested mapping (unknown keys are errors)."""
    return _build(TrainConfig, data or {}, where)


def _yaml_value(text: str, where: str) -> Any:
    """Return ``text`` read as one YAML value (``32`` -> 32, ``[1, 2]`` -> list, ``abc`` -> 'abc')."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not a YAML value: {text!r} ({e.problem})") from None


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Return ``cfg`` with ``section.key=value`` overrides applied."""
    data = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        key, value = item.split("=", 1)
        node = data
        *parents, leaf = key.strip().split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"--set {key}: unknown section {p!r}")
            node = node[p]
        if len(parents) > 1:  # an entry of a mapping field (model.kwargs.width=32): any key, a YAML value
            node[leaf] = _yaml_value(value, f"--set {key}")
            continue
        if leaf not in node:
            raise ConfigError(f"--set {key}: unknown key {leaf!r}; valid: {sorted(node)}")
        node[leaf] = value
    return config_from_dict(data, "--set")


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Return the TrainConfig of a YAML file (defaults when ``path`` is None) plus overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML ({e})") from None
        data.pop("base", None)
    cfg = config_from_dict(data, str(path or "config"))
    return apply_overrides(cfg, overrides or [])


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML (the exact config a run used)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def for_phase(cfg: TrainConfig, phase: str) -> TrainConfig:
    """Return ``cfg`` with ``optim.iters`` set to the phase's own count when one is given."""
    iters = cfg.optim.phase_iters.get(phase)
    return cfg if iters is None else replace(cfg, optim=replace(cfg.optim, iters=int(iters)))


def with_run(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """Return ``cfg`` with fields of its ``run`` section replaced."""
    return replace(cfg, run=replace(cfg.run, **changes))
