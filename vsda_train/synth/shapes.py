"""Shapes of the synthetic street: convex prisms in an object's local frame (metres).

Local frame: x to the right, y up, z along the object's heading, origin on the ground at
the object's centre. A prism is a profile polygon in the plane (u, y) extruded along the
other horizontal axis: ``axis="z"`` puts u along z (a side profile, extruded across x),
``axis="x"`` puts u along x (a front profile, extruded along z). Each builder lists its
parts in drawing order; back faces are culled per frame, so a convex part never needs
sorting and a few ordered parts make a car, a cyclist or a tree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vsda_deploy.labels import IGNORE_INDEX, VIPER15

C = {name: i for i, name in enumerate(VIPER15.classes)}  # class name -> VIPER15 train id
VOID = IGNORE_INDEX

# Materials: what a face is made of, beyond its class (used by the camera-like style).
PAINT, GLASS, TYRE, SKIN, TROUSERS, LAMP_OFF, LAMP_ON, TRUNK, METAL, INLAY = range(10)


@dataclass(frozen=True)
class Shape:
    """Polygon faces of one object in its local frame."""

    verts: np.ndarray  # (M, 3) float64, the faces' vertices one after the other
    starts: np.ndarray  # (F + 1,) int, face f is verts[starts[f]:starts[f + 1]]
    normals: np.ndarray  # (F, 3) outward unit normals
    cls: np.ndarray  # (F,) uint8 VIPER15 train id, 255 void
    inst: np.ndarray  # (F,) int32 instance id, 0 for stuff
    material: np.ndarray  # (F,) uint8

    @property
    def num_faces(self) -> int:
        return len(self.normals)


def ngon(cu: float, cy: float, r: float, n: int, squash: float = 1.0) -> np.ndarray:
    """Return the (n, 2) profile of a regular polygon centred at (cu, cy)."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False) + np.pi / n
    return np.stack([cu + r * np.cos(a), cy + squash * r * np.sin(a)], axis=1)


def rect(u0: float, u1: float, y0: float, y1: float) -> np.ndarray:
    """Return the (4, 2) profile of an axis-aligned rectangle."""
    return np.array([[u0, y0], [u1, y0], [u1, y1], [u0, y1]], float)


def bar(p0: tuple[float, float], p1: tuple[float, float], width: float) -> np.ndarray:
    """Return the (4, 2) profile of a bar of ``width`` from p0 to p1 (a limb)."""
    a, b = np.asarray(p0, float), np.asarray(p1, float)
    d = (b - a) / max(np.linalg.norm(b - a), 1e-9)
    n = np.array([-d[1], d[0]]) * width / 2
    return np.stack([a - n, b - n, b + n, a + n])


class ShapeBuilder:
    """Collects prism faces in drawing order and packs them into a ``Shape``."""

    def __init__(self) -> None:
        self._verts: list[np.ndarray] = []  # (n, k, 3) blocks of n faces with k vertices
        self._normals: list[np.ndarray] = []
        self._attrs: list[tuple[int, int, int, int]] = []  # (faces, cls, inst, material) per block

    def _add(self, verts: np.ndarray, normals: np.ndarray, cls: int, inst: int, material: int) -> None:
        self._verts.append(verts)
        self._normals.append(normals)
        self._attrs.append((len(verts), cls, inst, material))

    def prism(self, profile: np.ndarray, extent: tuple[float, float], axis: str, cls: int,
              inst: int = 0, material: int = PAINT, sides_only: bool = False) -> ShapeBuilder:
        """Add the faces of ``profile`` extruded over ``extent``; ``sides_only`` keeps the two caps."""
        p = np.asarray(profile, float)
        k = len(p)
        order = [2, 1, 0] if axis == "z" else [0, 1, 2]  # (u, y, e) -> (x, y, z)

        def lift(e: float) -> np.ndarray:
            return np.stack([p[:, 0], p[:, 1], np.full(k, e)], 1)[:, order]

        a, b = lift(extent[0]), lift(extent[1])
        caps = np.array([[0, 0, -1.0], [0, 0, 1.0]])[:, order]
        self._add(np.stack([a, b[::-1]]), caps, cls, inst, material)
        if sides_only:
            return self
        d = np.roll(p, -1, 0) - p
        n = np.stack([d[:, 1], -d[:, 0]], 1) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
        inward = ((p + d / 2 - p.mean(0)) * n).sum(1) < 0
        n[inward] *= -1
        strips = np.stack([a, np.roll(a, -1, 0), np.roll(b, -1, 0), b], 1)
        self._add(strips, np.stack([n[:, 0], n[:, 1], np.zeros(k)], 1)[:, order], cls, inst, material)
        return self

    def ground(self, x0: float, x1: float, z0: float, z1: float, cls: int) -> ShapeBuilder:
        """Add a horizontal ground quad (normal up)."""
        v = np.array([[[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]]], float)
        self._add(v, np.array([[0.0, 1.0, 0.0]]), cls, 0, PAINT)
        return self

    def build(self, heading: float = 1.0) -> Shape:
        """Return the packed shape; ``heading=-1`` mirrors it to face -z."""
        flip = np.array([1.0, 1.0, heading])
        sizes = np.concatenate([np.full(len(v), v.shape[1]) for v in self._verts])
        def repeat(i: int) -> np.ndarray:
            return np.concatenate([np.full(a[0], a[i]) for a in self._attrs])
        return Shape(
            verts=np.concatenate([v.reshape(-1, 3) for v in self._verts]) * flip,
            starts=np.concatenate([[0], np.cumsum(sizes)]),
            normals=np.concatenate(self._normals) * flip,
            cls=repeat(1).astype(np.uint8),
            inst=repeat(2).astype(np.int32),
            material=repeat(3).astype(np.uint8),
        )


# --- things -----------------------------------------------------------------------------

def _wheels(sb: ShapeBuilder, zs: tuple[float, ...], r: float, half_w: float, inst: int, cls: int) -> None:
    for z in zs:
        for side in (-1, 1):
            x0, x1 = sorted((side * (half_w - 0.2), side * (half_w + 0.03)))
            sb.prism(ngon(z, r, r, 8), (x0, x1), "z", cls, inst, TYRE, sides_only=True)


def car(inst: int, length: float, width: float, s: float) -> ShapeBuilder:
    """Return a car: body, glass cabin, wheels (side caps only, drawn over the body)."""
    L, w = length, width / 2
    body = [(-L / 2, .28), (L / 2, .28), (L / 2, .72), (.32 * L, .88), (-.45 * L, .95), (-L / 2, .85)]
    cabin = [(-.40 * L, .93), (.22 * L, .88), (.05 * L, 1.42), (-.30 * L, 1.45)]
    sb = ShapeBuilder()
    sb.prism(np.array(body) * [1, s], (-w, w), "z", C["car"], inst)
    sb.prism(np.array(cabin) * [1, s], (-0.86 * w, 0.86 * w), "z", C["car"], inst, GLASS)
    _wheels(sb, (-.3 * L, .3 * L), .32 * s, w, inst, C["car"])
    return sb


def truck(inst: int, length: float, width: float, s: float, cab_last: bool) -> ShapeBuilder:
    """Return a truck: cargo box and cab; the part nearer the camera is drawn last."""
    L, w = length, width / 2
    cargo = rect(-L / 2, .22 * L, .6 * s, 3.5 * s)
    cab = np.array([(.25 * L, .5), (L / 2, .5), (L / 2, 2.5), (.45 * L, 2.9), (.25 * L, 2.9)]) * [1, s]
    sb = ShapeBuilder()
    parts = [(cargo, PAINT), (cab, GLASS)] if cab_last else [(cab, GLASS), (cargo, PAINT)]
    for profile, material in parts:
        sb.prism(profile, (-w, w), "z", C["truck"], inst, material)
    _wheels(sb, (-.35 * L, -.2 * L, .36 * L), .45 * s, w, inst, C["truck"])
    return sb


def bus(inst: int, length: float, width: float, s: float) -> ShapeBuilder:
    """Return a bus: one rounded box (its window band is a texture) and wheels."""
    L, w = length, width / 2
    body = [(-L / 2, .35), (L / 2, .35), (L / 2, 2.95), (.48 * L, 3.15), (-.48 * L, 3.15), (-L / 2, 2.95)]
    sb = ShapeBuilder().prism(np.array(body) * [1, s], (-w, w), "z", C["bus"], inst)
    _wheels(sb, (-.3 * L, .32 * L), .5 * s, w, inst, C["bus"])
    return sb


def person(sb: ShapeBuilder, inst: int, s: float, phase: float, swing: float, seated: bool = False,
           y0: float = 0.0) -> ShapeBuilder:
    """Add a walking (or seated) person: legs, torso, arms, head; ``swing`` is the stride."""
    a = swing * np.sin(phase)
    hip = y0 + .9 * s
    if seated:
        legs = [((0, hip), (.35 * s, hip - .15 * s)), ((0, hip), (.35 * s, hip - .15 * s))]
    else:
        legs = [((0, hip), (.9 * s * np.sin(sgn * a), hip - .9 * s * np.cos(a))) for sgn in (1, -1)]
    for (p0, p1), (x0, x1) in zip(legs, ((.02, .16), (-.16, -.02))):
        sb.prism(bar(p0, p1, .15 * s), (x0 * s, x1 * s), "z", C["person"], inst, TROUSERS)
    lean = .12 * s if seated else 0.0
    torso = np.array([(-.12 * s, hip - .03 * s), (.12 * s, hip - .03 * s),
                      (.12 * s + lean, hip + .58 * s), (-.12 * s + lean, hip + .58 * s)])
    sb.prism(torso, (-.2 * s, .2 * s), "z", C["person"], inst)
    shoulder = (lean, hip + .55 * s)
    for sgn, (x0, x1) in zip((-1, 1), ((.2, .27), (-.27, -.2))):
        hand = (shoulder[0] + .6 * s * np.sin(sgn * .8 * a) + (.3 * s if seated else 0), shoulder[1] - .6 * s)
        sb.prism(bar(shoulder, hand, .09 * s), (x0 * s, x1 * s), "z", C["person"], inst)
    sb.prism(ngon(lean, hip + .72 * s, .11 * s, 8), (-.09 * s, .09 * s), "z", C["person"], inst, SKIN)
    return sb


def person_far(inst: int) -> ShapeBuilder:
    """Return a distant person: a body box and a head (limbs are below a pixel there)."""
    sb = ShapeBuilder().prism(rect(-.13, .13, 0, 1.48), (-.2, .2), "z", C["person"], inst, TROUSERS)
    return sb.prism(rect(-.1, .1, 1.5, 1.72), (-.09, .09), "z", C["person"], inst, SKIN)


def two_wheeler(kind: str, inst: int, rider: int, s: float, phase: float) -> ShapeBuilder:
    """Return a motorcycle or bicycle, with a seated rider (a person) when ``rider`` > 0."""
    cls = C[kind]
    sb = ShapeBuilder()
    if kind == "motorcycle":
        r, hub, half = .3 * s, .7 * s, .06
        frame = np.array([(-.55, .35), (.6, .4), (.5, .95), (-.3, .9), (-.6, .6)]) * s
        fw = .2 * s
    else:
        r, hub, half = .34 * s, .52 * s, .03
        frame = np.array([(-.45, .42), (.42, .42), (.38, .92), (-.2, .9)]) * s
        fw = .04 * s
    for z in (-hub, hub):
        sb.prism(ngon(z, r, r, 10), (-half, half), "z", cls, inst, TYRE)
    sb.prism(frame, (-fw, fw), "z", cls, inst, METAL)
    sb.prism(rect(.3 * s, .42 * s, .95 * s, 1.05 * s), (-.3 * s, .3 * s), "z", cls, inst, METAL)
    if rider:
        person(sb, rider, s * .95, phase, 0.0, seated=True, y0=(.1 if kind == "motorcycle" else .05) * s)
    return sb


# --- stuff ------------------------------------------------------------------------------

def building(length: float, depth: float, height: float, side: int) -> ShapeBuilder:
    """Return a building block from z = 0 to ``length``, its facade at local x = 0."""
    x0, x1 = sorted((0.0, side * depth))
    return ShapeBuilder().prism(rect(0, length, 0, height), (x0, x1), "z", C["building"])


def tree(height: float, radius: float, rng: np.random.Generator) -> ShapeBuilder:
    """Return a tree: trunk and an irregular canopy drum (both vegetation, as Cityscapes labels trees)."""
    sb = ShapeBuilder()
    sb.prism(rect(-.15, .15, 0, height), (-.15, .15), "x", C["vegetation"], 0, TRUNK)
    canopy = ngon(0, height + .7 * radius, radius, 12, squash=.85)
    canopy = canopy * [1, 1] + (canopy - [0, height + .7 * radius]) * rng.uniform(-.15, .15, (12, 1))
    return sb.prism(canopy, (-.7 * radius, .7 * radius), "x", C["vegetation"])


def hedge(length: float, height: float, side: int) -> ShapeBuilder:
    """Return a hedge from z = 0 to ``length``, 0.9 m deep away from the street."""
    x0, x1 = sorted((0.0, side * .9))
    return ShapeBuilder().prism(rect(0, length, 0, height), (x0, x1), "z", C["vegetation"])


def fence(length: float, height: float) -> ShapeBuilder:
    """Return a fence panel from z = 0 to ``length``."""
    return ShapeBuilder().prism(rect(0, length, 0, height), (-.03, .03), "z", C["fence"])


def _light_head(sb: ShapeBuilder, x: float, y0: float, y1: float, z0: float, lit: int, size: float) -> None:
    """Add a light housing from y0 to y1 facing -z at z0, ``size`` times as wide, with three lamps, ``lit`` on."""
    half, lamp = .17 * size, .1 * size
    sb.prism(rect(x - half, x + half, y0, y1), (z0, z0 + .27 * size), "x", C["traffic light"], 0, METAL)
    for i in range(3):
        cy = y1 - (i + .5) * (y1 - y0) / 3
        material = LAMP_ON if i == lit else LAMP_OFF
        sb.prism(ngon(x, cy, lamp, 8), (z0 - .02, z0), "x", C["traffic light"], 0, material, sides_only=True)


def traffic_light(height: float, arm: float, lit: int, size: float = 1.0) -> ShapeBuilder:
    """Return a pole (void) with a light head ``size`` times real size facing -z; ``arm`` != 0 adds a mast arm."""
    sb = ShapeBuilder().prism(rect(-.07, .07, 0, height), (-.07, .07), "x", VOID, 0, METAL)
    _light_head(sb, 0.0, height - .35 - .95 * size, height - .35, -.35, lit, size)
    if arm:
        x0, x1 = sorted((0.0, arm))
        sb.prism(rect(x0, x1, height - .12, height), (-.05, .05), "x", VOID, 0, METAL)
        _light_head(sb, arm, height - .12 - .93 * size, height - .12, -.3, lit, size)
    return sb


def traffic_sign(height: float, kind: int, size: float = 1.0) -> ShapeBuilder:
    """Return a pole (void) with a sign plate ``size`` times real size facing -z (disc, triangle, square,
    diamond) and its inlay."""
    sb = ShapeBuilder().prism(rect(-.05, .05, 0, height), (-.05, .05), "x", VOID, 0, METAL)
    r = .38 * size
    cy = height + r - .28
    diamond = np.array([[0, -1.2], [1.2, 0], [0, 1.2], [-1.2, 0]])
    unit = [ngon(0, 0, 1, 12), ngon(0, 0, 1.2, 3), rect(-1, 1, -1, 1), diamond][kind]
    sb.prism(unit * r + [0, cy], (-.1, -.07), "x", C["traffic sign"])
    return sb.prism(unit * r * .55 + [0, cy], (-.11, -.1), "x", C["traffic sign"], 0, INLAY, sides_only=True)
