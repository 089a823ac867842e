"""Dense optical flow and warping with OpenCV (numpy only, no torch).

Convention used everywhere in vsda: ``flow`` for the pair (t-k, t) is *backward* flow,
an (H, W, 2) float32 array such that pixel ``(x, y)`` of frame ``t`` is seen at
``(x + flow[y, x, 0], y + flow[y, x, 1])`` in frame ``t-k``. Backward warping of
anything defined on frame ``t-k`` (image, probabilities, labels) onto frame ``t`` then
samples it at those positions.
"""

from __future__ import annotations

import cv2
import numpy as np

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _gray(frame: np.ndarray) -> np.ndarray:
    # DIS rejects non-contiguous views (e.g. crops): "I0.isContinuous()"
    return np.ascontiguousarray(frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))


def create_dis(preset: str = "medium") -> cv2.DISOpticalFlow:
    """Return an OpenCV DIS optical flow object for ``preset`` (ultrafast|fast|medium)."""
    if preset not in DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {preset!r}; choose from {sorted(DIS_PRESETS)}")
    return cv2.DISOpticalFlow_create(DIS_PRESETS[preset])


def dis_flow(frame_t: np.ndarray, frame_prev: np.ndarray, preset: str = "medium",
             dis: cv2.DISOpticalFlow | None = None) -> np.ndarray:
    """Return the backward flow (H, W, 2) float32 from frame ``t`` to frame ``t-k``."""
    dis = dis or create_dis(preset)
    return dis.calc(_gray(frame_t), _gray(frame_prev), None)


def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the pixel coordinates ``(x, y)`` of an (h, w) grid as float32 (h, w) arrays."""
    return np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))


def source_coords(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(map_x, map_y)``: where each pixel of frame t lies in the other frame, by ``flow``."""
    gx, gy = pixel_grid(*flow.shape[:2])
    return gx + flow[..., 0], gy + flow[..., 1]


def inside(map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Return a bool mask of the source coordinates that lie inside the (equally sized) other frame."""
    h, w = map_x.shape
    return (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)


def in_view(flow: np.ndarray) -> np.ndarray:
    """Return a bool (H, W) mask of the pixels of frame t that ``flow`` keeps inside the other frame."""
    return inside(*source_coords(flow))


def warp(data: np.ndarray, flow: np.ndarray, nearest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(warped, valid)``: ``data`` of frame t-k backward-warped onto frame t.

    ``data`` is (H, W) or (H, W, C); labels need ``nearest=True``. ``valid`` is a bool
    (H, W) mask of pixels whose source lies inside frame t-k.
    """
    map_x, map_y = source_coords(flow)
    valid = inside(map_x, map_y)
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    src = data
    if data.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        src = data.astype(np.float32)
    channels = 1 if src.ndim == 2 else src.shape[2]
    if channels in (1, 3, 4):
        out = cv2.remap(src, map_x, map_y, interp, borderMode=cv2.BORDER_REPLICATE)
    else:  # plane by plane: OpenCV remaps at most 4 channels and 2-channel chunks lose precision
        out = np.stack([cv2.remap(np.ascontiguousarray(src[..., i]), map_x, map_y, interp,
                                  borderMode=cv2.BORDER_REPLICATE) for i in range(channels)], axis=2)
    return out.astype(data.dtype, copy=False), valid


def occlusion_mask(flow_fw: np.ndarray, flow_bw: np.ndarray, alpha: float = 0.01,
                   beta: float = 0.5) -> np.ndarray:
    """Return a bool (H, W) mask of pixels of frame t that fail the forward-backward check.

    ``flow_bw`` is the backward flow t -> t-k (the vsda convention) and ``flow_fw`` the flow
    t-k -> t. A pixel is occluded where following ``flow_bw`` then ``flow_fw`` does not
    return near the start: |b + f(x + b)|^2 > alpha (|b|^2 + |f(x+b)|^2) + beta
    (Sundaram et al., 2010).
    """
    fw_at, valid = warp(flow_fw.astype(np.float32), flow_bw)
    diff = flow_bw + fw_at
    mag = (flow_bw ** 2).sum(-1) + (fw_at ** 2).sum(-1)
    return ((diff ** 2).sum(-1) > alpha * mag + beta) | ~valid
