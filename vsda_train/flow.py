"""Optical flow for training: torch warping, occlusion masks and the flow providers of the loaders.

The flow convention is the one of :mod:`vsda_deploy.flow` (read it there): ``flow`` of the pair
(t-k, t) is the *backward* flow t -> t-k, in pixels, channel 0 = x, channel 1 = y. Tensors are
(N, 2, H, W); numpy arrays, as providers return them, are (H, W, 2) float32.

A flow provider is any callable ``provider(key_t, key_prev, frame_t, frame_prev) -> (H, W, 2)``
float32 backward flow. Training calls it with the frames at the training size
(:class:`vsda_train.clips.ScaledClips`: resized at load, before cropping or augmentation), and
``vsda-train flow`` (:mod:`vsda_train.flow_precompute`) fills the cache with the same frames, so
its files are the ones training reads.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vsda_deploy.data.base import DatasetError, FlowProvider
from vsda_deploy.flow import DIS_PRESETS, create_dis, dis_flow
from vsda_train.config import ConfigError

# ---------------------------------------------------------------------------------------------
# torch side: warping, occlusion, resizing


def _check_flow(x: Tensor, flow: Tensor) -> None:
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be (N, 2, H, W), got {tuple(flow.shape)}")
    if x.shape[0] != flow.shape[0] or x.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"flow {tuple(flow.shape)} does not match the warped tensor {tuple(x.shape)}")


def sampling_grid(flow: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(grid, valid)``: the ``grid_sample`` grid (N, H, W, 2) of ``flow`` and its (N, 1, H, W) mask.

    Pixel ``x`` maps to ``2 x / (W - 1) - 1``, the normalisation of ``align_corners=True`` under
    which -1 and 1 are the centres of the corner pixels, as in ``cv2.remap``.
    """
    flow = flow.float()  # half/bf16 coordinates would be off by pixels on wide frames
    h, w = flow.shape[-2:]
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
    px, py = xs + flow[:, 0], ys + flow[:, 1]
    valid = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    grid = torch.stack((2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1), dim=-1)
    return grid, valid.unsqueeze(1)


def warp(x: Tensor, flow: Tensor, mode: str = "bilinear") -> tuple[Tensor, Tensor]:
    """Return ``(warped, valid)``: ``x`` (N, C, H, W) of frame t-k backward-warped onto frame t.

    ``flow`` is the (N, 2, H, W) backward flow t -> t-k in pixels. ``mode="nearest"`` is for
    labels (integer tensors are sampled exactly and keep their dtype). Out-of-view positions
    repeat the border, as :func:`vsda_deploy.flow.warp` does; ``valid`` (N, 1, H, W, bool) marks
    the pixels whose source lies inside frame t-k. Gradients flow to ``x`` (and ``flow``).
    """
    _check_flow(x, flow)
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"warp mode must be 'bilinear' or 'nearest', got {mode!r}")
    if not x.is_floating_point() and mode != "nearest":
        raise ValueError(f"warp: {x.dtype} tensors (labels) need mode='nearest'")
    grid, valid = sampling_grid(flow)
    # float32 sampling: exact for label ids, and grid_sample wants input and grid of one dtype
    src = x if x.dtype in (torch.float32, torch.float64) else x.float()
    out = F.grid_sample(src, grid.to(src.dtype), mode=mode, padding_mode="border", align_corners=True)
    return out.to(x.dtype), valid


def occlusion_mask_torch(*, flow_fw: Tensor, flow_bw: Tensor, alpha: float = 0.01,
                         beta: float = 0.5) -> Tensor:
    """Return the bool (N, 1, H, W) mask of pixels of frame t that fail the forward-backward check.

    Same test as :func:`vsda_deploy.flow.occlusion_mask`: ``flow_bw`` is t -> t-k, ``flow_fw``
    t-k -> t, and a pixel is occluded (or out of view) where |b + f(x+b)|^2 > alpha (|b|^2 +
    |f(x+b)|^2) + beta. Keyword-only, because swapping the two flows is silent otherwise.
    """
    fw_at, valid = warp(flow_fw.float(), flow_bw)
    bw = flow_bw.float()
    diff = ((bw + fw_at) ** 2).sum(1, keepdim=True)
    mag = (bw ** 2).sum(1, keepdim=True) + (fw_at ** 2).sum(1, keepdim=True)
    return (diff > alpha * mag + beta) | ~valid


def flow_to_tensor(flow: np.ndarray | Tensor) -> Tensor:
    """Return a (N, 2, H, W) float32 tensor from a provider's (H, W, 2) or a batched (N, H, W, 2) flow."""
    t = torch.as_tensor(flow, dtype=torch.float32)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[-1] != 2:
        raise ValueError(f"expected a (H, W, 2) or (N, H, W, 2) flow, got {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------------
# providers: DIS computed on demand with a disk cache, and the published FlowNet2 files


def _resize_flow_np(flow: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return the (H, W, 2) ``flow`` resized to ``shape`` = (h, w) with its vectors rescaled."""
    h, w = shape
    out = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
    return out * np.array([w / flow.shape[1], h / flow.shape[0]], dtype=np.float32)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` so that readers see the whole file or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name unique per process and thread; open() rather than mkstemp keeps the umask's permissions
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)  # atomic on POSIX and Windows within one file system
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class DISFlowCache:
    """Flow provider: OpenCV DIS flow computed on demand and cached on disk, one ``.npy`` per pair.

    A pair is stored at ``cache_dir/ab/<sha1>.npy``, the hash of (key_t, key_prev, preset, scale,
    H, W), as float16: half the disk of float32, off by under 0.02 px for |flow| < 32 px (relative
    2^-11). Files are written to a temp name and renamed, so DataLoader workers that compute the
    same pair at once never read half a file. With ``compute=False`` a missing pair is an error.
    ``scale`` < 1 runs DIS on frames downscaled by it and stores the smaller flow (a quarter of
    the disk and time at 0.5), returned resized to the frames with its vectors rescaled.
    """

    def __init__(self, cache_dir: str | Path, preset: str = "medium", compute: bool = True,
                 scale: float = 1.0):
        if preset not in DIS_PRESETS:
            raise ConfigError(f"unknown DIS preset {preset!r}; choose from {sorted(DIS_PRESETS)}")
        if not 0 < scale <= 1:
            raise ConfigError(f"flow scale must be in (0, 1], got {scale}")
        self.cache_dir = Path(cache_dir)
        self.preset, self.compute, self.scale = preset, compute, float(scale)
        self._local = threading.local()  # one DIS object per thread: they hold scratch buffers

    def __getstate__(self) -> dict:  # DataLoader workers pickle providers; DIS objects do not pickle
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def path(self, key_t: str, key_prev: str, shape: tuple[int, int]) -> Path:
        """Return the cache file of the pair (``key_t``, ``key_prev``) for frames of ``shape`` (H, W)."""
        ident = f"v1\0{key_t}\0{key_prev}\0{self.preset}\0{self.scale:g}\0{shape[0]}x{shape[1]}"
        digest = hashlib.sha1(ident.encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.npy"

    def has(self, key_t: str, key_prev: str, shape: tuple[int, int]) -> bool:
        """Return whether the pair is already cached."""
        return self.path(key_t, key_prev, shape).is_file()

    def stored_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """Return the (H, W) DIS runs at and the file holds for frames of ``shape`` (``scale`` applied)."""
        return max(1, round(shape[0] * self.scale)), max(1, round(shape[1] * self.scale))

    def ensure(self, key_t: str, key_prev: str, frame_t: np.ndarray, frame_prev: np.ndarray) -> bool:
        """Return True if the pair had to be computed (and was cached), False if it was cached already."""
        shape = _frame_shape(key_t, key_prev, frame_t, frame_prev)
        path = self.path(key_t, key_prev, shape)
        if path.is_file():
            return False
        if not self.compute:
            raise FileNotFoundError(
                f"{path}: no cached {self.preset} DIS flow for the pair {key_t} -> {key_prev}; "
                "run `vsda-train flow -c CONFIG` first, or allow computing flow on demand (data.compute_flow)")
        if getattr(self._local, "dis", None) is None:
            self._local.dis = create_dis(self.preset)
        if self.scale != 1:
            h, w = self.stored_shape(shape)
            frame_t, frame_prev = (cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in (frame_t, frame_prev))
        flow = dis_flow(frame_t, frame_prev, self.preset, dis=self._local.dis)
        _atomic_save(path, flow.astype(np.float16))
        return True

    def __call__(self, key_t: str, key_prev: str, frame_t: np.ndarray, frame_prev: np.ndarray) -> np.ndarray:
        """Return the (H, W, 2) float32 backward flow ``key_t`` -> ``key_prev``, computing it if needed."""
        self.ensure(key_t, key_prev, frame_t, frame_prev)
        shape = frame_t.shape[:2]
        path = self.path(key_t, key_prev, shape)
        try:
            flow = np.load(path).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: unreadable flow cache file ({exc}); delete it to recompute") from exc
        if flow.shape != (*self.stored_shape(shape), 2):
            raise DatasetError(f"{path}: cached flow is {flow.shape}, expected {(*self.stored_shape(shape), 2)}; "
                             "delete it to recompute")
        return flow if flow.shape[:2] == shape else _resize_flow_np(flow, shape)


def _frame_shape(key_t: str, key_prev: str, frame_t: np.ndarray, frame_prev: np.ndarray) -> tuple[int, int]:
    if frame_t.shape[:2] != frame_prev.shape[:2]:
        raise DatasetError(f"{key_t}: frame is {frame_t.shape[:2]} but its neighbour {key_prev} is "
                         f"{frame_prev.shape[:2]}; flow needs frames of one size")
    return frame_t.shape[:2]


_IMAGE_EXT = re.compile(r"\.(png|jpe?g)$", re.IGNORECASE)
_VPS_PREFIX = re.compile(r"^\d{4}_\d{4}_")


def _stem(key: str) -> str:
    return _IMAGE_EXT.sub("", Path(key).name)


def flownet2_name(key_t: str, key_prev: str) -> str:
    """Return the file name DA-VSN / TPS give the FlowNet2 flow of the pair (``key_t``, ``key_prev``).

    Their archives are flat folders named after the frame at t (DA-VSN and TPS
    ``train_video_UDA.py``, ``eval_video_UDA.py``):

    - Cityscapes-Seq ``{city}_{seq}_{t:06d}_leftImg8bit.png``
      -> ``{city}_{seq}_{t:06d}_{t-k:06d}_int16_x10.npy``
    - VIPER ``{SSS}_{t:05d}.jpg`` -> ``{SSS}_{t:05d}{t-1:05d}_int16_x10.npy`` (no separator, as published)
    - SYNTHIA-Seq ``{t:06d}.png`` -> ``{t:06d}_int16_x10.npy`` (k = 1 only)
    """
    stem_t, stem_prev = _stem(key_t), _stem(key_prev)
    if stem_t.endswith("_leftImg8bit"):
        return f"{stem_t[: -len('_leftImg8bit')]}_{stem_prev.split('_')[-2]}_int16_x10.npy"
    if re.fullmatch(r"\d+", stem_t):
        if not stem_prev.isdigit() or int(stem_prev) != int(stem_t) - 1:
            raise DatasetError(f"{key_t}: SYNTHIA-Seq FlowNet2 files only hold the pair with frame t-1, "
                             f"not with {key_prev}")
        return f"{stem_t}_int16_x10.npy"
    if re.fullmatch(r".+_\d{5}", stem_t):
        return f"{stem_t}{stem_prev[-5:]}_int16_x10.npy"
    raise DatasetError(f"{key_t}: cannot map this frame name to a FlowNet2 *_int16_x10.npy file "
                     "(known: Cityscapes-Seq, VIPER, SYNTHIA-Seq names)")


class FlowNet2Files:
    """Flow provider reading the FlowNet2 flows published with DA-VSN / TPS.

    One ``.npy`` per pair, (H, W, 2) int16 holding 10 x the flow in pixels, named by
    :func:`flownet2_name`. The direction is vsda's: TPS warps frame t-k onto frame t with
    ``Resample2d`` (out(x) = in(x + flow(x))) using the file named after (t, t-k), so the file
    holds the backward flow t -> t-k. Flows stored at another resolution than the frames (DA-VSN's
    ``*_scale512`` archives) are resized to the frames, their vectors rescaled.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder}: FlowNet2 flow folder not found")

    def path(self, key_t: str, key_prev: str) -> Path:
        """Return the file of the pair (``folder/NAME`` first; the first candidate if none exists).

        Also tried: per-city or per-sequence layouts, ``folder/<frame's folder>/NAME`` and
        ``folder/<city or sequence>/NAME``, and for Cityscapes-VPS frames ``VVVV_FFFF_{city}_...``
        the Cityscapes-Seq name without ``VVVV_FFFF_``: VPS videos are Cityscapes-Seq val frames,
        whose flows are published.
        """
        names = [flownet2_name(key_t, key_prev)]
        stem_t, stem_prev = _stem(key_t), _stem(key_prev)
        if _VPS_PREFIX.match(stem_t) and _VPS_PREFIX.match(stem_prev):
            names.append(flownet2_name(_VPS_PREFIX.sub("", stem_t), _VPS_PREFIX.sub("", stem_prev)))
        subdirs = ("", Path(key_t).parent.name)
        candidates = [self.folder / d / n for n in names for d in (*subdirs, n.split("_")[0])]
        return next((c for c in candidates if c.is_file()), candidates[0])

    def __call__(self, key_t: str, key_prev: str, frame_t: np.ndarray, frame_prev: np.ndarray) -> np.ndarray:
        """Return the (H, W, 2) float32 backward flow ``key_t`` -> ``key_prev`` at the frames' size."""
        path = self.path(key_t, key_prev)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: FlowNet2 flow for the pair {key_t} -> {key_prev} not found")
        raw = np.load(path)
        if raw.dtype != np.int16 or raw.ndim != 3 or raw.shape[2] != 2:
            raise DatasetError(f"{path}: expected (H, W, 2) int16 flow x10, got {raw.shape} {raw.dtype}")
        flow = raw.astype(np.float32) / 10.0
        shape = _frame_shape(key_t, key_prev, frame_t, frame_prev)
        return flow if flow.shape[:2] == shape else _resize_flow_np(flow, shape)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def default_cache_dir(root: str | Path, preset: str = "medium") -> Path:
    """Return ``<root>/.vsda_flow/<preset>``, or a user cache folder (with a warning) if root is read-only.

    A video file as root caches next to the file. The fallback is
    ``$XDG_CACHE_HOME/vsda/flow/<root name>-<hash of its path>/<preset>`` (``~/.cache`` by default).
    """
    return user_cache_dir(root, ".vsda_flow", preset, "optical flow")


def user_cache_dir(root: str | Path, name: str, sub: str, what: str = "") -> Path:
    """Return ``<root>/<name>/<sub>``, or ``$XDG_CACHE_HOME/vsda/<name without dots and vsda_>/...``.

    The fallback (with a warning) is taken when the dataset folder is read-only; it is keyed by
    the root's name and a hash of its path.
    """
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"{root}: dataset root not found")
    folder = root if root.is_dir() else root.parent
    preferred = folder / name / sub
    if _writable(preferred):
        return preferred
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    tag = f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"
    fallback = base / "vsda" / name.lstrip(".").removeprefix("vsda_") / tag / sub
    warnings.warn(f"{folder}: not writable; caching {what or sub} in {fallback}", stacklevel=3)
    return fallback


def spec_root(spec: str) -> Path:
    """Return the path of a dataset spec such as ``viper:/data/viper`` (a bare path is its own root)."""
    name, sep, path = spec.partition(":")
    return Path(path if sep and re.fullmatch(r"[a-z][a-z0-9_-]+", name) else spec)


def flow_provider(source: str = "dis", root: str | Path | None = None, preset: str = "medium",
                  cache: str | Path | None = None, compute: bool = True, scale: float = 1.0) -> FlowProvider:
    """Return the flow provider named by ``source``: ``dis`` (cached DIS) or ``flownet2:FOLDER``."""
    if source == "dis":
        if cache is None and root is None:
            raise ValueError("flow source 'dis' needs the dataset root or a --cache folder")
        folder = cache if cache is not None else default_cache_dir(root, preset)
        return DISFlowCache(folder, preset, compute, scale)
    if source.startswith("flownet2:"):
        return FlowNet2Files(source.partition(":")[2])
    raise ValueError(f"unknown flow source {source!r}; use 'dis' or 'flownet2:FOLDER'")
