"""The two looks of one rasterised frame: the simulator (source) and the camera (target).

Both looks start from the same per-class colours (the palette below), so colour carries
across domains except for the classes ``TargetStyle.hue_shift`` names. The source look
stops there: flat colours, sun shading per face, hard edges. The target look adds what a
real camera sees: textures in surface coordinates, materials (glass, tyres, skin, lamps),
shadows, haze, then the optics and sensor: exposure, vignetting, blur, white balance,
noise, tone curve and JPEG compression.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vsda_deploy.labels import IGNORE_INDEX, VIPER15
from vsda_train.synth import shapes as S
from vsda_train.synth import textures as T
from vsda_train.synth.config import SourceStyle, TargetStyle
from vsda_train.synth.raster import NEAR, FrameGeometry
from vsda_train.synth.scene import Street

# Class colours (sRGB) shared by both domains: a few tones per class, one picked per object.
PALETTE: dict[str, list[tuple[int, int, int]]] = {
    "road": [(78, 78, 82)],
    "sidewalk": [(172, 168, 162), (164, 162, 158)],
    "building": [(196, 162, 112), (172, 104, 78), (206, 192, 162), (150, 140, 128), (186, 150, 120)],
    "fence": [(128, 108, 88), (112, 116, 112)],
    "traffic light": [(48, 52, 50)],
    "traffic sign": [(40, 80, 170), (196, 40, 40), (40, 80, 170), (222, 190, 40)],
    "vegetation": [(72, 112, 46), (62, 100, 50)],
    "terrain": [(104, 142, 62), (118, 146, 70)],
    "sky": [(150, 186, 226)],
    "person": [(150, 60, 60), (60, 70, 120), (84, 84, 84), (170, 140, 100), (200, 200, 190)],
    "car": [(160, 30, 30), (30, 60, 140), (205, 205, 205), (40, 40, 45), (125, 125, 130), (60, 100, 90)],
    "truck": [(225, 225, 220), (200, 90, 40), (225, 225, 220), (70, 100, 150)],
    "bus": [(205, 165, 40), (40, 110, 170), (190, 50, 50)],
    "motorcycle": [(52, 52, 58), (150, 30, 30)],
    "bicycle": [(30, 90, 130), (160, 160, 40), (60, 60, 60)],
}
VOID_COLOUR = (118, 118, 122)  # poles and mast arms
HOOD_COLOUR = (34, 38, 46)
SKIN = np.array([(224, 172, 140), (190, 130, 100), (120, 82, 62), (58, 44, 38)]) / 255
TROUSERS = np.array([(40, 45, 62), (30, 30, 32), (92, 82, 70), (62, 72, 92)]) / 255
LAMPS = np.array([(1.0, .25, .15), (1.0, .75, .15), (.3, 1.0, .55)])
_TONES = 8


def _palette_table() -> np.ndarray:
    """Return (16, 8, 3) colours in [0, 1]: row c is class c's tones repeated, row 15 void."""
    table = np.zeros((VIPER15.num_classes + 1, _TONES, 3))
    for c, name in enumerate(VIPER15.classes):
        tones = PALETTE[name]
        table[c] = [tones[i % len(tones)] for i in range(_TONES)]
    table[-1] = VOID_COLOUR
    return table / 255


PALETTE_TABLE = _palette_table()
CLASS_ID = {name: i for i, name in enumerate(VIPER15.classes)}


def face_colours(geom: FrameGeometry, jitter: float, hue_shift: dict[int, float] | None = None) -> np.ndarray:
    """Return per-face base colours (F, 3) in [0, 1]: class tone, object jitter, optional hue shifts."""
    row = np.where(geom.cls == IGNORE_INDEX, VIPER15.num_classes, geom.cls)
    colour = PALETTE_TABLE[row, geom.tone % _TONES] * (1 + jitter * np.clip(geom.jitter, -2.5, 2.5))
    for cls, degrees in (hue_shift or {}).items():
        rows = np.flatnonzero(geom.cls == cls)
        if rows.size:
            hsv = cv2.cvtColor(colour[rows, None].astype(np.float32), cv2.COLOR_RGB2HSV)
            hsv[..., 0] = np.mod(hsv[..., 0] + degrees, 360)
            colour[rows] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[:, 0]
    return np.clip(colour, 0, 1)


def sun_shading(geom: FrameGeometry, sun: np.ndarray, strength: float) -> np.ndarray:
    """Return per-face brightness (F,): faces turned to the sun are lit, the sky is 1."""
    lit = np.clip(geom.normal @ sun, 0, 1)
    shade = 1 - strength + strength * (.55 + .75 * lit)
    shade[0] = 1.0
    return shade


# --- source --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceLook:
    """Per-clip parameters of the simulator look."""

    exposure: float

    @classmethod
    def draw(cls, style: SourceStyle, rng: np.random.Generator) -> SourceLook:
        """Return one clip's look, drawn from the style's ranges."""
        return cls(exposure=rng.uniform(*style.exposure))


def render_source(geom: FrameGeometry, street: Street, style: SourceStyle, look: SourceLook) -> np.ndarray:
    """Return the simulator-like RGB uint8 frame: flat shaded class colours, hard edges."""
    colour = face_colours(geom, style.colour_jitter) * sun_shading(geom, street.sun, style.shading)[:, None]
    img = colour[geom.face_id] * look.exposure
    img[geom.hood] = np.array(HOOD_COLOUR) / 255
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


# --- target --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TargetLook:
    """Per-clip parameters of the camera look (one sequence = one camera, one light)."""

    exposure: float
    gains: tuple[float, float, float]  # white balance
    gamma: float
    haze: float
    blur: float
    quality: int
    horizon: tuple[float, float, float]
    zenith: tuple[float, float, float]
    clouds: float
    seed: int

    @classmethod
    def draw(cls, style: TargetStyle, rng: np.random.Generator) -> TargetLook:
        """Return one clip's look, drawn from the style's ranges."""
        temp, tint = rng.uniform(*style.white_balance), rng.uniform(-style.tint, style.tint)
        gains = np.array([1 + .6 * temp, 1 + tint, 1 - .7 * temp])
        overcast = rng.uniform(*style.overcast)
        zenith = np.array([.32, .5, .78]) * (1 - overcast) + np.array([.62, .66, .72]) * overcast
        horizon = np.array([.74, .8, .86]) * (1 - overcast) + np.array([.8, .82, .84]) * overcast
        return cls(exposure=rng.uniform(*style.exposure), gains=tuple(gains / gains.mean()),
                   gamma=rng.uniform(*style.gamma), haze=rng.uniform(*style.haze),
                   blur=rng.uniform(*style.blur_sigma), quality=round(rng.uniform(*style.jpeg_quality)),
                   horizon=tuple(horizon), zenith=tuple(zenith), clouds=rng.uniform(.2, .8),
                   seed=int(rng.integers(1 << 16)))


def _surface(geom: FrameGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return per-pixel world points (N, 3), depth (N,), local points (N, 3) and rays (N, 3)."""
    rays = geom.rays().reshape(-1, 3)
    f = geom.face_id.ravel()
    n = geom.normal[f]
    denom = (n * rays).sum(1)
    ok = (f > 0) & (np.abs(denom) > 1e-9)
    depth = np.full(f.shape, 2000.0)
    depth[ok] = (geom.offset[f][ok] - n[ok] @ geom.position) / denom[ok]
    depth = np.clip(depth, NEAR, 2000.0)
    world = geom.position + depth[:, None] * rays
    local = world - geom.origin[f]
    local[:, 2] *= geom.heading[f]
    return world, depth, local, rays


def _surface_coords(normal: np.ndarray, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return texture coordinates (a, b): on the ground (x, z), on walls (along, up)."""
    ax = np.abs(normal)
    ground = ax[:, 1] >= np.maximum(ax[:, 0], ax[:, 2])
    side = ~ground & (ax[:, 0] >= ax[:, 2])
    a = np.where(ground, local[:, 0], np.where(side, local[:, 2], local[:, 0]))
    b = np.where(ground, local[:, 2], local[:, 1])
    return a, b


def _textured(geom: FrameGeometry, street: Street, style: TargetStyle, look: TargetLook) -> np.ndarray:
    """Return (N, 3) scene colours before the camera: textures, materials, light, haze, sky."""
    hue = {CLASS_ID[name]: deg for name, deg in style.hue_shift}
    f = geom.face_id.ravel()
    world, depth, local, rays = _surface(geom)
    normal = geom.normal[f]
    a, b = _surface_coords(normal, local)
    flat = face_colours(geom, style.colour_jitter, hue)[f]
    cls, mat, seed, tone = geom.cls[f], geom.material[f], geom.seed[f], geom.tone[f]
    horizon = np.array(look.horizon)
    c = flat.copy()

    def on(mask: np.ndarray, fn, *args) -> None:  # apply a texture to the masked pixels
        if mask.any():
            per_pixel = (x[mask] if isinstance(x, np.ndarray) and x.shape[:1] == mask.shape else x
                         for x in args)
            c[mask] = fn(c[mask], *per_pixel)

    paint = mat == S.PAINT
    on(cls == CLASS_ID["road"], T.road, a, b, seed, street.lane_width, street.lanes)
    on(cls == CLASS_ID["sidewalk"], T.sidewalk, a, b, seed)
    on(cls == CLASS_ID["building"], T.building, a, b, seed)
    on(cls == CLASS_ID["fence"], T.fence, a, b)
    on((cls == CLASS_ID["vegetation"]) & paint, T.vegetation, a, b, seed)
    on(cls == CLASS_ID["terrain"], T.terrain, a, b)
    on((cls == CLASS_ID["person"]) & paint, T.fabric, a, b)
    vehicle = np.isin(cls, [CLASS_ID[k] for k in ("car", "truck", "bus")]) & paint
    on(vehicle, T.paint, a, b, normal[:, 1], horizon)
    window = (mat == S.GLASS) & ~((cls == CLASS_ID["truck"]) & (local[:, 1] < 1.7))
    window |= (cls == CLASS_ID["bus"]) & paint & (local[:, 1] > 1.25) & (local[:, 1] < 2.6)
    if window.any():
        c[window] = T.glass(a[window], b[window], horizon)
    _materials(c, mat, cls, tone, local, normal[:, 2] * geom.heading[f])

    shade = sun_shading(geom, street.sun, style.shading)[f]
    patches = T.fbm(world[:, 0] / 14, world[:, 2] / 14, look.seed + 3, 2)
    shade = shade * (1 - style.shadows * np.clip((patches - .42) * 4, 0, 1))
    vertical = np.abs(normal[:, 1]) < .5
    shade = shade * np.where(vertical, 1 - .3 * np.exp(-np.clip(world[:, 1], 0, None) / .6), 1.0)
    c = flat + style.texture * (c - flat)
    c = c * shade[:, None]
    fog = np.exp(-look.haze * depth)[:, None]
    c = c * fog + horizon * (1 - fog)
    sky = f == 0
    if sky.any():
        d = rays[sky] / np.linalg.norm(rays[sky], axis=1, keepdims=True)
        up = np.clip(d[:, 1], 0, None)
        lift = np.maximum(up, .04)
        c[sky] = T.sky(up, d[:, 0] / lift * .7, d[:, 2] / lift * .7, horizon, np.array(look.zenith),
                       look.clouds, look.seed)
    return c


def _materials(c: np.ndarray, mat: np.ndarray, cls: np.ndarray, tone: np.ndarray, local: np.ndarray,
               facing: np.ndarray) -> None:
    """Paint material colours in place: tyres, skin, trousers, lamps, bark, sign inlays, car lights."""
    c[mat == S.TYRE] = (.07, .07, .08)
    c[mat == S.SKIN] = SKIN[tone[mat == S.SKIN] % len(SKIN)]
    c[mat == S.TROUSERS] = TROUSERS[tone[mat == S.TROUSERS] % len(TROUSERS)]
    c[mat == S.LAMP_OFF] = (.1, .1, .09)
    c[mat == S.LAMP_ON] = LAMPS[tone[mat == S.LAMP_ON] % 3]
    c[mat == S.TRUNK] = (.33, .26, .2)
    c[mat == S.INLAY] = (.92, .92, .9)
    # facing: the local z of the face normal; > 0 the car's front, < 0 its rear
    lights = (cls == CLASS_ID["car"]) & (mat == S.PAINT) & (np.abs(facing) > .7)
    lights &= (local[:, 1] > .55) & (local[:, 1] < .75) & (np.abs(local[:, 0]) > .55)
    rear = lights & (facing < 0)
    c[lights] = (.95, .92, .8)
    c[rear] = (.75, .08, .06)


def render_target(geom: FrameGeometry, street: Street, style: TargetStyle, look: TargetLook,
                  rng: np.random.Generator) -> np.ndarray:
    """Return the camera-like RGB uint8 frame (after JPEG compression)."""
    h, w = geom.face_id.shape
    img = _textured(geom, street, style, look).reshape(h, w, 3)
    yy, xx = np.mgrid[0:h, 0:w]
    img[geom.hood] = (np.array(HOOD_COLOUR) / 255 * (.7 + .6 * xx / w)[..., None])[geom.hood]  # a sheen
    r2 = (((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2) / 2
    img = img * (look.exposure * (1 - style.vignetting * r2))[..., None]
    if look.blur > 0:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), look.blur * w / 256)
    img = img * np.array(look.gains)
    sigma = style.noise / 255
    img = img + rng.normal(0, 1, img.shape) * (sigma * (.4 + 1.2 * np.sqrt(np.clip(img, 0, 1))))
    img = np.clip(img, 0, 1) ** look.gamma
    out = np.round(img * 255).astype(np.uint8)
    if look.quality >= 100:
        return out
    bgr = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, look.quality])
    if not ok:
        raise RuntimeError("OpenCV cannot encode JPEG")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
