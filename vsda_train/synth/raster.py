"""Rasterise a street clip frame: exact per-pixel faces with the painter's algorithm.

Every visible face gets an index in ``FrameGeometry.face_id`` (0 is the sky); labels and
both rendering styles are looked up from that one map, so images and labels agree to
the pixel. Faces are filled without anti-aliasing (``LINE_8``) at 1/16 pixel precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vsda_deploy.labels import IGNORE_INDEX, VIPER15
from vsda_train.synth.scene import Street

NEAR = 0.3  # metres: the near clipping plane
SHIFT = 4  # fillPoly fractional bits
SKY = VIPER15.classes.index("sky")


@dataclass(frozen=True)
class FrameGeometry:
    """One frame's visible surfaces: a face index per pixel and per-face attributes."""

    face_id: np.ndarray  # (H, W) int32, 0 = sky
    cls: np.ndarray  # (F,) uint8 per face, face 0 is the sky
    inst: np.ndarray  # (F,) int32
    material: np.ndarray  # (F,) uint8
    normal: np.ndarray  # (F, 3) world
    offset: np.ndarray  # (F,) plane: normal . p = offset
    origin: np.ndarray  # (F, 3) the owning object's position (texture frame)
    heading: np.ndarray  # (F,)
    tone: np.ndarray  # (F,) palette index
    jitter: np.ndarray  # (F, 3)
    seed: np.ndarray  # (F,) int64
    position: np.ndarray  # (3,) camera centre
    rotation: np.ndarray  # (3, 3) world -> camera
    focal: float
    hood: np.ndarray  # (H, W) bool, ego-vehicle hood

    def semantic(self) -> np.ndarray:
        """Return VIPER15 train ids (H, W) uint8; void (poles, hood) is 255."""
        sem = self.cls[self.face_id]
        sem[self.hood] = IGNORE_INDEX
        return sem

    def instance(self) -> np.ndarray:
        """Return instance ids (H, W) int32, 0 for stuff and void."""
        inst = self.inst[self.face_id]
        inst[self.hood] = 0
        return inst

    def rays(self) -> np.ndarray:
        """Return (H, W, 3) world ray directions whose camera-z component is 1."""
        h, w = self.face_id.shape
        u, v = np.meshgrid((np.arange(w) - (w - 1) / 2) / self.focal,
                           (np.arange(h) - (h - 1) / 2) / self.focal)
        return np.stack([u, v, np.ones_like(u)], -1) @ self.rotation


def hood_mask(width: int, height: int, fraction: float) -> np.ndarray:
    """Return the bool (H, W) mask of an ego-vehicle hood rising ``fraction`` of H at the centre."""
    if fraction <= 0:
        return np.zeros((height, width), bool)
    x = (np.arange(width) - (width - 1) / 2) / (.62 * width)
    top = height - fraction * height * np.sqrt(np.clip(1 - x ** 2, 0, 1))
    return np.arange(height)[:, None] >= np.minimum(top, height - 1)[None, :]


def _clip(poly: np.ndarray, axis: int, bound: float, keep_above: bool) -> np.ndarray:
    """Return the part of ``poly`` (K, D) on one side of ``poly[:, axis] = bound`` (Sutherland-Hodgman)."""
    out = []
    k = len(poly)
    for i in range(k):
        a, b = poly[i], poly[(i + 1) % k]
        ina, inb = (a[axis] >= bound) == keep_above, (b[axis] >= bound) == keep_above
        if ina:
            out.append(a)
        if ina != inb:
            out.append(a + (bound - a[axis]) / (b[axis] - a[axis]) * (b - a))
    return np.array(out).reshape(-1, poly.shape[1])


def _project(cam: np.ndarray, focal: float, width: int, height: int) -> np.ndarray | None:
    """Return pixel coordinates of a camera-space polygon, clipped to the near plane and a guard band."""
    if cam[:, 2].max() < NEAR:
        return None
    if cam[:, 2].min() < NEAR:
        cam = _clip(cam, 2, NEAR, True)
        if len(cam) < 3:
            return None
    pts = cam[:, :2] * (focal / cam[:, 2:3]) + [(width - 1) / 2, (height - 1) / 2]
    guard = 4 * max(width, height)
    if np.abs(pts).max() > guard:  # keep OpenCV's fixed-point arithmetic far from overflow
        for axis in (0, 1):
            for bound, above in ((-guard, True), (guard, False)):
                pts = _clip(pts, axis, bound, above)
                if len(pts) < 3:
                    return None
    return pts


def _fixed_point(cam: np.ndarray, focal: float, width: int, height: int) -> np.ndarray | None:
    """Return fixed-point pixel coordinates of camera-space vertices, or None when any needs clipping."""
    if cam[:, 2].min() < NEAR:
        return None
    pts = cam[:, :2] * (focal / cam[:, 2:3]) + [(width - 1) / 2, (height - 1) / 2]
    if np.abs(pts).max() > 4 * max(width, height):
        return None
    return np.round(pts * (1 << SHIFT)).astype(np.int32)


class _Faces:
    """Per-face attributes collected while drawing."""

    def __init__(self) -> None:
        self.cols: dict[str, list] = {k: [] for k in
                                      ("cls", "inst", "material", "normal", "offset", "origin",
                                       "heading", "tone", "jitter", "seed")}

    def add(self, **kw) -> None:
        for k, v in kw.items():
            self.cols[k].append(v)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.cols.items()}


def rasterize(street: Street, t: int, width: int, height: int, hood: np.ndarray) -> FrameGeometry:
    """Return the visible faces of frame ``t`` of ``street``."""
    cam = street.camera
    pos, rot = cam.position(t), cam.rotation(t)
    face_id = np.zeros((height, width), np.int32)
    faces = _Faces()
    faces.add(cls=[SKY], inst=[0], material=[0], normal=np.zeros((1, 3)), offset=[0.0],
              origin=np.zeros((1, 3)), heading=[1.0], tone=[0], jitter=np.zeros((1, 3)), seed=[0])
    count = 1
    for shape, origin, obj in _draw_order(street, t, pos):
        verts = shape.verts + origin
        first = verts[shape.starts[:-1]]
        visible = np.flatnonzero(((pos - first) * shape.normals).sum(1) > 1e-9)
        if not visible.size:
            continue
        cam_verts = (verts - pos) @ rot.T
        drawn = []
        fast = _fixed_point(cam_verts, cam.focal, width, height)
        for f in visible:
            s, e = shape.starts[f], shape.starts[f + 1]
            if fast is not None:
                poly = fast[s:e]
            else:
                pts = _project(cam_verts[s:e], cam.focal, width, height)
                if pts is None:
                    continue
                poly = np.round(pts * (1 << SHIFT)).astype(np.int32)
            count += 1
            cv2.fillPoly(face_id, [poly], count - 1, lineType=cv2.LINE_8, shift=SHIFT)
            drawn.append(f)
        if not drawn:
            continue
        n = len(drawn)
        faces.add(cls=shape.cls[drawn], inst=shape.inst[drawn], material=shape.material[drawn],
                  normal=shape.normals[drawn], offset=(shape.normals[drawn] * first[drawn]).sum(1),
                  origin=np.repeat(origin[None], n, 0),
                  heading=np.full(n, obj.heading if obj else 1.0), tone=np.full(n, obj.tone if obj else 0),
                  jitter=np.repeat((obj.jitter if obj else np.zeros(3))[None], n, 0),
                  seed=np.full(n, obj.seed if obj else 0))
    a = faces.arrays()
    return FrameGeometry(face_id=face_id, cls=a["cls"].astype(np.uint8), inst=a["inst"].astype(np.int32),
                         material=a["material"].astype(np.uint8), normal=a["normal"], offset=a["offset"],
                         origin=a["origin"], heading=a["heading"], tone=a["tone"].astype(np.int64),
                         jitter=a["jitter"], seed=a["seed"].astype(np.int64), position=pos, rotation=rot,
                         focal=cam.focal, hood=hood)


def _draw_order(street: Street, t: int, pos: np.ndarray):
    """Yield ``(shape, origin, object)`` far to near: the ground, then band by band."""
    yield street.ground, np.zeros(3), None
    bands: dict[int, list] = {}
    for i, obj in enumerate(street.objects):
        ox, oz = obj.x, obj.z + obj.vz * t
        x0, x1, z0, z1 = obj.footprint
        if oz + z1 < pos[2] - 2:
            continue  # behind the camera: outside any field of view the layouts allow
        dx = max(ox + x0 - pos[0], pos[0] - ox - x1, 0.0)
        dz = max(oz + z0 - pos[2], pos[2] - oz - z1, 0.0)
        d = float(np.hypot(dx, dz))
        if d < obj.visible_to:
            bands.setdefault(obj.band, []).append((d, i, obj, ox, oz))
    for band in street.band_order:
        for d, _, obj, ox, oz in sorted(bands.get(band, ()), key=lambda e: (-e[0], e[1])):
            yield obj.shape_at(t, d), np.array([ox, 0.0, oz]), obj
