"""A procedural street clip: layout, traffic, people, and the ego camera's path.

World frame: x to the right of the street axis, y up, z along the street; forward
traffic drives on the right (x > 0), oncoming on the left. The ego camera drives in a
forward lane. Every object lives in one lateral *band* (a lane, the parking strip, the
kerb, the bike lane, the footpath, the verge, the building line). Bands do not overlap in
x, and a ray from the camera crosses them in order of their lateral distance, so drawing
bands from the farthest to the nearest (and, inside a band, objects far to near) gives
exact occlusion with the painter's algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

import numpy as np

from vsda_deploy.options import OptionError
from vsda_train.synth import shapes as S
from vsda_train.synth.config import Layout

Z_BEHIND = 60.0  # metres of street built behind the camera's start
Z_AHEAD = 260.0  # metres of street built ahead of the camera's end
NEAR_VIEW = 150.0  # metres: most objects are not drawn beyond (a person is 2.5 px tall there)
FAR_VIEW = 260.0  # metres: buildings are drawn up to here
MAX_INSTANCES = 999  # panoptic_inst keeps instance ids below 1000
STRIDE_STEP = 2 * np.pi / 24  # walk-cycle phase resolution
PERSON_DETAIL = 35.0  # metres: farther people (< 12 px tall) are drawn without limbs


@dataclass
class SceneObject:
    """One object of the street: a shape moving along z."""

    shape: S.Shape | None  # None: built per frame (a walking person)
    x: float
    z: float  # position at frame 0
    vz: float  # metres per frame
    heading: float  # +1 faces +z, -1 faces -z
    band: int
    footprint: tuple[float, float, float, float]  # local x0, x1, z0, z1 (after heading)
    tone: int  # index into the class palette
    jitter: np.ndarray  # (3,) standard normal, scaled by the style
    seed: int
    walker: tuple[int, float, float, float] | None = None  # instance, scale, phase at t=0, phase per frame
    visible_to: float = NEAR_VIEW  # metres

    def shape_at(self, t: int, distance: float = 0.0) -> S.Shape:
        """Return the object's shape at frame ``t``, seen from ``distance`` metres."""
        if self.shape is not None:
            return self.shape
        inst, s, phase, rate = self.walker
        far = distance > PERSON_DETAIL
        step = 0 if far else round((phase + rate * t) / STRIDE_STEP)
        pose = _walk_pose(step, rate > 0, self.heading, far)
        return replace(pose, verts=pose.verts * s, inst=np.full(pose.num_faces, inst, np.int32))


@cache
def _walk_pose(step: int, walking: bool, heading: float, far: bool) -> S.Shape:
    """Return the unit-size person at one step of the walk cycle (a cycle has few distinct poses).

    ``far``: a few pixels tall, the person is drawn as a body and a head (no limbs).
    """
    step %= round(2 * np.pi / STRIDE_STEP)
    if far:
        return S.person_far(1).build(heading)
    return S.person(S.ShapeBuilder(), 1, 1.0, step * STRIDE_STEP, .45 if walking else 0.0).build(heading)


@dataclass(frozen=True)
class CameraPath:
    """The ego camera of a clip: pose at frame t and intrinsics."""

    x: float
    height: float
    pitch: float  # radians, positive looks down
    speed: float  # metres per frame
    pan: float  # yaw amplitude, radians
    pan_rate: float
    pan_phase: float
    focal: float  # pixels

    def position(self, t: int) -> np.ndarray:
        """Return the camera centre (3,) at frame ``t``: forward motion with a slight lateral sway."""
        return np.array([self.x + .15 * np.sin(.09 * t + self.pan_phase), self.height, self.speed * t])

    def rotation(self, t: int) -> np.ndarray:
        """Return R (3, 3): camera coordinates (x right, y down, z forward) = R @ (world - position)."""
        yaw = self.pan * np.sin(self.pan_rate * t + self.pan_phase)
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(self.pitch), np.sin(self.pitch)
        right = np.array([cy, 0.0, -sy])
        forward = np.array([sy * cp, -sp, cy * cp])
        return np.stack([right, np.cross(right, forward), forward])


@dataclass
class Street:
    """A clip's world: ground, objects, bands in drawing order, camera and sun."""

    ground: S.Shape
    objects: list[SceneObject]
    band_order: list[int]  # bands from the farthest (drawn first) to the camera's own
    camera: CameraPath
    sun: np.ndarray  # (3,) unit vector towards the sun
    lane_width: float
    lanes: int


class _Bands:
    """Lateral intervals, one per band, registered as the street is laid out."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    def add(self, side: int, a: float, b: float) -> int:
        x0, x1 = sorted((side * a, side * b))
        self.spans.append((x0, x1))
        return len(self.spans) - 1

    def order(self, x_cam: float) -> list[int]:
        """Return band indices sorted by lateral distance to the camera, farthest first."""
        def gap(span: tuple[float, float]) -> float:
            return max(span[0] - x_cam, x_cam - span[1], 0.0)
        return sorted(range(len(self.spans)), key=lambda b: -gap(self.spans[b]))


class _Builder:
    """Lays out one street from a layout and a random generator."""

    def __init__(self, layout: Layout, rng: np.random.Generator, frames: int, width: int) -> None:
        self.lay, self.rng = layout, rng
        self.objects: list[SceneObject] = []
        self.bands = _Bands()
        self.next_inst = 1
        lay = layout
        speed = rng.uniform(*lay.ego_speed)
        ego_lane = int(rng.integers(lay.lanes))
        self.camera = CameraPath(
            x=(ego_lane + .5) * lay.lane_width + rng.uniform(-.2, .2),
            height=rng.uniform(*lay.camera_height),
            pitch=np.radians(rng.uniform(*lay.camera_pitch_deg)),
            speed=speed,
            pan=np.radians(lay.pan_deg) * rng.uniform(.3, 1.0),
            pan_rate=rng.uniform(.05, .2),
            pan_phase=rng.uniform(0, 2 * np.pi),
            focal=lay.focal * width,
        )
        self.ego_lane = ego_lane
        self.z0, self.z1 = -Z_BEHIND, speed * frames + Z_AHEAD
        self.road = lay.lanes * lay.lane_width + lay.parking_width
        self.kerb = self.road + max(lay.lawn_width, .5)  # kerb strip: poles, and lawn where there is one
        self.bike = self.kerb + .35 * lay.sidewalk_width
        self.path_end = self.kerb + lay.sidewalk_width
        self.verge_end = self.path_end + lay.verge_width
        self.verge_segments: dict[int, list[tuple[float, float, bool]]] = {-1: [], 1: []}

    # --- helpers ---------------------------------------------------------------------------

    def instance(self) -> int:
        """Return a new instance id, persistent for the whole clip."""
        inst = self.next_inst
        if inst > MAX_INSTANCES:
            raise OptionError(f"more than {MAX_INSTANCES} things in one clip; lower the densities")
        self.next_inst += 1
        return inst

    def put(self, sb: S.ShapeBuilder | None, x: float, z: float, band: int, heading: float = 1.0,
            vz: float = 0.0, walker: tuple | None = None, visible_to: float = NEAR_VIEW) -> None:
        """Add an object (``sb`` None: a walker, posed per frame) with its footprint, tone and seed."""
        shape = sb.build(heading) if sb is not None else None
        ref = shape if shape is not None else S.person(S.ShapeBuilder(), 1, walker[1], 0, 0).build()
        v = ref.verts
        self.objects.append(SceneObject(
            shape=shape, x=x, z=z, vz=vz, heading=heading, band=band,
            footprint=(v[:, 0].min(), v[:, 0].max(), v[:, 2].min(), v[:, 2].max()),
            tone=int(self.rng.integers(8)), jitter=self.rng.standard_normal(3),
            seed=int(self.rng.integers(1 << 30)), walker=walker, visible_to=visible_to))

    def along(self, per_100m: float, lo: float | None = None) -> np.ndarray:
        """Return sorted z positions of a Poisson process with ``per_100m`` objects per 100 m."""
        lo = self.z0 if lo is None else lo
        n = self.rng.poisson(max(per_100m, 0) * (self.z1 - lo) / 100)
        return np.sort(self.rng.uniform(lo, self.z1, n))

    def queue(self, per_100m: float, lo: float | None = None, min_gap: float = 3.0):
        """Yield the rear z of each vehicle of a queue with about ``per_100m`` vehicles per 100 m."""
        z = self.z0 if lo is None else lo
        mean_gap = 100 / max(per_100m, 1e-3)
        while True:
            z += self.rng.exponential(mean_gap) + min_gap
            if z > self.z1:
                return
            yield z

    def vehicle_kind(self, parked: bool = False) -> str:
        """Return a random vehicle class: the layout's shares in traffic, mostly cars when parked."""
        lay, u = self.lay, self.rng.uniform()
        if parked:
            return "car" if u < .8 else ("truck" if u < .86 else ("motorcycle" if u < .93 else "bicycle"))
        shares = (("truck", lay.truck_share), ("bus", lay.bus_share), ("motorcycle", lay.motorcycle_share))
        for kind, share in shares:
            if u < share:
                return kind
            u -= share
        return "car"

    def vehicle(self, kind: str, heading: float, parked: bool) -> tuple[S.ShapeBuilder, float]:
        """Return a vehicle's shape and its length."""
        s, r = self.lay.object_scale, self.rng.uniform
        inst = self.instance()
        if kind == "car":
            length = r(3.8, 4.8) * s
            return S.car(inst, length, r(1.7, 1.9) * s, s), length
        if kind == "truck":
            length = (r(5.0, 6.5) if parked else r(6.5, 9.0)) * s
            return S.truck(inst, length, (1.95 if parked else 2.35) * s, s, cab_last=heading < 0), length
        if kind == "bus":
            length = r(10.5, 12.5) * s
            return S.bus(inst, length, 2.5 * s, s), length
        rider = 0 if parked else self.instance()
        s *= self.lay.two_wheeler_scale
        return S.two_wheeler(kind, inst, rider, s, r(0, 6.3)), (2.1 if kind == "motorcycle" else 1.8) * s

    # --- the layout -----------------------------------------------------------------------

    def lay_out(self) -> Street:
        ground = self.lay_ground()
        for side in (-1, 1):
            self.lanes(side)
            self.parking(side)
            self.kerb_poles(side)
            self.cyclists(side)
            self.pedestrians(side)
            self.verge(side)
            self.buildings(side)
        sun_az, sun_el = self.rng.uniform(0, 2 * np.pi), np.radians(self.rng.uniform(25, 60))
        sun = np.array([np.cos(sun_el) * np.sin(sun_az), np.sin(sun_el), np.cos(sun_el) * np.cos(sun_az)])
        return Street(ground=ground, objects=self.objects, band_order=self.bands.order(self.camera.x),
                      camera=self.camera, sun=sun, lane_width=self.lay.lane_width, lanes=self.lay.lanes)

    def lay_ground(self) -> S.Shape:
        lay, g = self.lay, S.ShapeBuilder()
        far = self.z1 + 3000
        g.ground(-2000, 2000, self.z0 - 100, far, S.C["terrain"])
        g.ground(-self.road, self.road, self.z0 - 100, far, S.C["road"])
        for side in (-1, 1):
            x0, x1 = sorted((side * self.road, side * self.path_end))
            g.ground(x0, x1, self.z0 - 100, far, S.C["sidewalk"])
            for z0, z1, grass in self._segments(far, lay.lawn):
                if grass and lay.lawn_width > 0:
                    g.ground(*sorted((side * self.road, side * self.kerb)), z0, z1, S.C["terrain"])
            for z0, z1, grass in self._segments(far, lay.verge_grass):
                self.verge_segments[side].append((z0, z1, grass))
                v0, v1 = sorted((side * self.path_end, side * (self.verge_end + 1.5)))
                g.ground(v0, v1, z0, z1, S.C["terrain"] if grass else S.C["sidewalk"])
        return g.build()

    def _segments(self, far: float, grass: float) -> list[tuple[float, float, bool]]:
        """Return ``(z0, z1, is_grass)`` segments of 10-40 m along the street, a ``grass`` share grass."""
        out, z = [], self.z0 - 100
        while z < far:
            length = self.rng.uniform(10, 40) if z < self.z1 else far - z
            out.append((z, z + length, bool(self.rng.uniform() < grass)))
            z += length
        return out

    def lanes(self, side: int) -> None:
        lay, ego = self.lay, self.camera.speed
        heading = float(side)
        for lane in range(lay.lanes):
            band = self.bands.add(side, lane * lay.lane_width, (lane + 1) * lay.lane_width)
            x = side * (lane + .5) * lay.lane_width
            own = side > 0 and lane == self.ego_lane
            if own:  # never faster towards us than we drive: nothing drives into the camera
                speed, lo = ego * self.rng.uniform(1.0, 1.15), self.rng.uniform(10, 25)
            else:
                speed = ego * (self.rng.uniform(.75, 1.3) if side > 0 else -self.rng.uniform(.7, 1.3))
                lo = None
            for z in self.queue(lay.vehicles_per_100m, lo, min_gap=4.0):
                sb, length = self.vehicle(self.vehicle_kind(), heading, parked=False)
                self.put(sb, x + self.rng.uniform(-.2, .2), z + length / 2, band, heading, speed)

    def parking(self, side: int) -> None:
        lay = self.lay
        band = self.bands.add(side, lay.lanes * lay.lane_width, self.road)
        x = side * (self.road - lay.parking_width / 2)
        for z in self.queue(lay.parked_per_100m, min_gap=.8):
            kind = self.vehicle_kind(parked=True)
            sb, length = self.vehicle(kind, float(side), parked=True)
            self.put(sb, x + side * self.rng.uniform(-.1, .15), z + length / 2, band, float(side))

    def kerb_poles(self, side: int) -> None:
        lay, band = self.lay, self.bands.add(side, self.road, self.kerb)
        for z in self.along(lay.poles_per_100m):
            if self.rng.uniform() < lay.light_share:
                arm = -side * self.rng.uniform(2.5, 4.0) if self.rng.uniform() < .35 else 0.0
                height = self.rng.uniform(3.2, 4.4) + (1.5 if arm else 0)
                sb = S.traffic_light(height, arm, int(self.rng.integers(3)), lay.furniture_scale)
            else:
                sb = S.traffic_sign(self.rng.uniform(2.0, 2.6), int(self.rng.integers(4)), lay.furniture_scale)
            self.put(sb, side * (self.road + .25), z, band)

    def cyclists(self, side: int) -> None:
        lay, band = self.lay, self.bands.add(side, self.kerb, self.bike)
        speed = side * self.rng.uniform(.18, .3)
        for z in self.queue(lay.cyclists_per_100m, min_gap=2.5):
            sb, _ = self.vehicle("bicycle", float(side), parked=False)
            self.put(sb, side * (self.kerb + self.bike) / 2, z, band, float(side), speed)

    def pedestrians(self, side: int) -> None:
        lay, band = self.lay, self.bands.add(side, self.bike, self.path_end)
        s = lay.object_scale
        for z in self.along(lay.people_per_100m):
            heading = float(self.rng.choice((-1, 1)))
            speed = self.rng.uniform(.05, .09) if self.rng.uniform() < .75 else 0.0
            scale = s * self.rng.uniform(.9, 1.1)
            walker = (self.instance(), scale, self.rng.uniform(0, 2 * np.pi), np.pi * speed / (.75 * scale))
            x = side * self.rng.uniform(self.bike + .4, self.path_end - .4)
            self.put(None, x, z, band, heading, heading * speed, walker)

    def verge(self, side: int) -> None:
        lay, band = self.lay, self.bands.add(side, self.path_end, self.verge_end)
        if lay.verge_width <= 0:
            return
        for z0, z1, grass in self.verge_segments[side]:
            if not grass or z0 > self.z1:
                continue
            fenced, hedged = self.rng.uniform() < lay.fence, self.rng.uniform() < lay.hedge
            for z in np.arange(z0, min(z1, self.z1), 4.0):  # short pieces keep the far-to-near order exact
                if fenced:
                    height = self.rng.uniform(1.0, 1.3) * lay.furniture_scale
                    self.put(S.fence(4.0, height), side * (self.path_end + .15), z, band)
                if hedged and lay.verge_width > 1.5:
                    self.put(S.hedge(4.0, 1.2, side), side * (self.verge_end - 1.0), z, band)
        for z in self.along(lay.trees_per_100m):
            radius = self.rng.uniform(1.4, min(2.6, lay.verge_width / 2 + lay.sidewalk_width * .6))
            sb = S.tree(self.rng.uniform(2.5, 4.0), radius, self.rng)
            self.put(sb, side * (self.path_end + lay.verge_width / 2), z, band)

    def buildings(self, side: int) -> None:
        lay, rng = self.lay, self.rng
        band = self.bands.add(side, self.verge_end, self.verge_end + 100)
        z = self.z0
        while z < self.z1:
            length = rng.uniform(*lay.building_length)
            facade = self.verge_end + rng.uniform(0, 1.5)
            sb = S.building(length, rng.uniform(8, 15), rng.uniform(*lay.building_height), side)
            self.put(sb, side * facade, z, band, visible_to=FAR_VIEW)
            z += length
            if rng.uniform() < lay.building_gap:
                gap = rng.uniform(5, 14)
                tree = S.tree(rng.uniform(3, 5), rng.uniform(2, 3.5), rng)
                x = side * (self.verge_end + rng.uniform(4, 8))
                self.put(tree, x, z + gap / 2, band, visible_to=FAR_VIEW)
                z += gap


def build_street(layout: Layout, rng: np.random.Generator, frames: int, width: int) -> Street:
    """Return a random street clip laid out by ``layout``."""
    return _Builder(layout, rng, frames, width).lay_out()
