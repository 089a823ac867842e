"""Procedural surface textures of the camera-like style, in surface coordinates (metres).

Each texture is a function of the surface coordinates ``(a, b)`` of the pixels of one
class (along / across a ground quad, along a wall and up), so texture sticks to the
surface and moves with it: optical flow sees real, trackable structure. They return a
per-pixel RGB colour (N, 3) from the per-pixel base colour (N, 3).
"""

from __future__ import annotations

import numpy as np

_U32 = np.uint64(0xFFFFFFFF)
_KX, _KY, _KS, _KM = (np.uint64(k) for k in (374761393, 668265263, 2246822519, 1274126177))


def _lattice(ix: np.ndarray | int, iy: np.ndarray | int, seed: np.ndarray | int) -> np.ndarray:
    """Return the uint64 pre-hash ix * KX + iy * KY + seed * KS (wrapping) of integer lattice points."""
    def u64(v: np.ndarray | int) -> np.ndarray:
        return np.asarray(v).astype(np.int64).view(np.uint64)
    return u64(ix) * _KX + u64(iy) * _KY + u64(np.asarray(seed, np.int64) % 65521) * _KS


def _finish(h: np.ndarray) -> np.ndarray:
    """Return floats in [0, 1) from pre-hashes (an integer avalanche, exact on every machine)."""
    h = h & _U32
    h ^= h >> np.uint64(13)
    h *= _KM
    h &= _U32
    h ^= h >> np.uint64(16)
    return (h & _U32) * (1.0 / 4294967296.0)


def _hash(ix: np.ndarray | int, iy: np.ndarray | int, seed: np.ndarray | int) -> np.ndarray:
    """Return a float in [0, 1) per integer lattice point."""
    return _finish(_lattice(ix, iy, seed))


def value_noise(x: np.ndarray, y: np.ndarray, seed: np.ndarray | int = 0) -> np.ndarray:
    """Return smooth value noise in [0, 1] at (x, y) (bilinear between hashed lattice values)."""
    ix, iy = np.floor(x), np.floor(y)
    fx, fy = x - ix, y - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    base = _lattice(ix, iy, seed)
    v00, v10, v01, v11 = (_finish(base + k) for k in (np.uint64(0), _KX, _KY, _KX + _KY))
    return (v00 * (1 - fx) + v10 * fx) * (1 - fy) + (v01 * (1 - fx) + v11 * fx) * fy


def fbm(x: np.ndarray, y: np.ndarray, seed: np.ndarray | int = 0, octaves: int = 3) -> np.ndarray:
    """Return fractal noise in [0, 1]: ``octaves`` octaves of value noise, each half as strong."""
    total, amp, norm = 0.0, 1.0, 0.0
    for o in range(octaves):
        total = total + amp * value_noise(x * 2 ** o, y * 2 ** o, np.asarray(seed) + 7919 * o)
        norm += amp
        amp /= 2
    return total / norm


def _mix(colour: np.ndarray, other, w: np.ndarray) -> np.ndarray:
    w = np.clip(w, 0, 1)[:, None]
    return colour * (1 - w) + np.asarray(other, float) * w


def road(c: np.ndarray, a: np.ndarray, b: np.ndarray, seed: np.ndarray, lane_width: float,
         lanes: int) -> np.ndarray:
    """Asphalt grain, repair patches and lane markings (dashed between lanes, solid centre and edges)."""
    c = c * (0.88 + 0.22 * fbm(a * 7, b * 7, 11))[:, None] * (0.9 + 0.2 * fbm(a * .3, b * .3, 12))[:, None]
    k = np.round(a / lane_width)
    off = np.abs(a - k * lane_width)
    solid = (k == 0) | (np.abs(k) == lanes)
    dashed = (np.abs(k) < lanes) & (np.mod(b, 9.0) < 3.5)
    line = (off < .07) & (solid | dashed) & (np.abs(k) <= lanes)
    worn = 0.7 + 0.3 * fbm(a * 3, b * 3, 13)
    return np.where(line[:, None], np.array([.86, .86, .82]) * worn[:, None], c)


def sidewalk(c: np.ndarray, a: np.ndarray, b: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Paving slabs with darker joints, slab-to-slab shade and grime."""
    size = .4
    joint = (np.mod(a, size) < .035) | (np.mod(b, size) < .035)
    slab = 0.9 + 0.16 * _hash(np.floor(a / size), np.floor(b / size), 21)
    c = c * (slab * (0.88 + 0.2 * fbm(a * 4, b * 4, 22)))[:, None]
    return np.where(joint[:, None], c * .68, c)


def building(c: np.ndarray, a: np.ndarray, b: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Plaster with stains; a grid of windows per floor and shop windows on the ground floor."""
    spacing = 2.3 + 1.4 * _hash(seed, 0, 31)
    floor = 3.0 + .6 * _hash(seed, 1, 31)
    u, v = np.mod(a / spacing, 1), np.mod(b / floor, 1)
    upper = (b > 3.6) & (u > .3) & (u < .7) & (v > .35) & (v < .75)
    shop = (b > .4) & (b < 2.7) & (np.mod(a / (2 * spacing), 1) > .12) & (np.mod(a / (2 * spacing), 1) < .88)
    shop &= _hash(seed, 2, 31) < .6
    stain = (0.85 + 0.25 * fbm(a * 1.2, b * 1.2, seed)) * (0.93 + 0.1 * fbm(a * 6, b * 6, seed + 1))
    c = c * stain[:, None]
    pane = _hash(np.floor(a / spacing), np.floor(b / floor), seed + 3)
    glass = np.array([.16, .19, .24]) + (.35 * pane ** 2)[:, None] * np.array([.9, .95, 1.0])
    return np.where((upper | shop)[:, None], glass, c)


def fence(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vertical slats with dark gaps and two rails."""
    gap = np.mod(a, .14) < .04
    rail = (np.abs(b - .2) < .05) | (np.abs(b - 1.0) < .05)
    c = c * (0.85 + 0.25 * fbm(a * 2, b * 8, 41))[:, None]
    return np.where((gap & ~rail)[:, None], c * .5, c)


def vegetation(c: np.ndarray, a: np.ndarray, b: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Leaves: high-contrast small-scale clumps, dark gaps, patches of yellower foliage."""
    leaf = fbm(a * 5, b * 5, seed, 3)
    c = _mix(c, c * [1.35, 1.2, .6], fbm(a * .6, b * .6, seed + 5) * 1.4 - .5)
    return c * (0.5 + 0.8 * leaf ** 1.3)[:, None]


def terrain(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Grass blades (anisotropic noise) with bare-soil patches."""
    c = c * (0.7 + 0.55 * fbm(a * 14, b * 3, 51))[:, None]
    soil = np.clip((0.35 - fbm(a * .35, b * .35, 52)) * 6, 0, 1)
    return _mix(c, np.array([.42, .36, .27]) * (0.8 + 0.3 * fbm(a * 5, b * 5, 53))[:, None], soil)


def fabric(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Folds and weave of clothes: low-contrast noise."""
    return c * (0.85 + 0.25 * fbm(a * 9, b * 9, 61))[:, None]


def paint(c: np.ndarray, a: np.ndarray, b: np.ndarray, up: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """Glossy paint: upward faces reflect the sky, slight dirt towards the bottom."""
    c = c * (0.92 + 0.1 * fbm(a * 3, b * 3, 71))[:, None]
    return _mix(c, sky, .25 * np.clip(up, 0, 1) + .05)


def glass(a: np.ndarray, b: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """Dark glass reflecting streaks of sky."""
    streak = fbm(a * 1.5 + b * 1.5, b * .5, 81)
    return np.array([.09, .11, .14]) + (.45 * streak ** 2)[:, None] * sky


def sky(up: np.ndarray, cu: np.ndarray, cv: np.ndarray, horizon: np.ndarray, zenith: np.ndarray,
        clouds: float, seed: int) -> np.ndarray:
    """Sky: horizon-to-zenith gradient and clouds at infinity (they move with the pan only)."""
    c = _mix(np.repeat(horizon[None], len(up), 0), zenith, np.clip(up * 3.5, 0, 1))
    cloud = np.clip((fbm(cu, cv, seed, 4) - (1 - clouds)) * 3, 0, 1) * np.clip(up * 12, 0, 1)
    return _mix(c, np.array([.93, .93, .95]) * (0.8 + 0.25 * fbm(cu * 3, cv * 3, seed + 1))[:, None], cloud)
