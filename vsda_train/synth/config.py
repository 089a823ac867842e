"""Configuration of the synthetic sim-to-real benchmark: frozen dataclasses with sensible defaults.

Three kinds of knobs: ``Layout`` (the street and the camera: geometry carries across
domains, but its statistics shift), ``SourceStyle`` (the simulator look) and
``TargetStyle`` (the camera look). ``docs/synthetic_benchmark.md`` says what each does.
Ranges ``(lo, hi)`` are drawn uniformly once per clip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from vsda_deploy.labels import VIPER15
from vsda_deploy.options import OptionError

Range = tuple[float, float]


@dataclass(frozen=True)
class Layout:
    """Street geometry, traffic and camera of one domain."""

    camera_height: Range = (1.5, 1.7)  # metres above the road
    camera_pitch_deg: Range = (-0.5, 0.5)  # positive looks down
    focal: float = 0.8  # focal length in image widths (0.8: ~64 deg horizontal field of view)
    pan_deg: float = 4.0  # amplitude of the slow camera yaw (pan) over a clip
    ego_speed: Range = (0.35, 0.7)  # metres per frame (17 fps: 21-43 km/h)
    lanes: int = 2  # per direction
    lane_width: float = 3.5
    parking_width: float = 2.3  # parking strip at each kerb
    lawn_width: float = 1.2  # kerb strip between road and footpath (poles stand there)
    lawn: float = 0.35  # fraction of the kerb strip that is grass (terrain), the rest paved
    sidewalk_width: float = 3.8  # footpath with a bike lane
    verge_width: float = 3.0  # strip between sidewalk and buildings: grass or paving
    verge_grass: float = 0.6  # fraction of the verge that is grass (terrain), the rest paved
    fence: float = 0.5  # fraction of grass verge fenced off from the sidewalk
    hedge: float = 0.35  # fraction of grass verge with a hedge (vegetation) in front of the buildings
    building_height: Range = (7.0, 24.0)
    building_length: Range = (8.0, 24.0)
    building_gap: float = 0.2  # chance of a gap (trees, sky) after a building
    object_scale: float = 1.0  # size of vehicles and people
    # 256 x 128 frames draw small classes larger than life, so a stride-8 segmenter can learn them (1.0: real size)
    two_wheeler_scale: float = 1.5  # bicycles and motorcycles with their riders, relative to object_scale
    furniture_scale: float = 2.0  # traffic light heads, sign plates and fence heights, relative to real size
    vehicles_per_100m: float = 3.0  # moving traffic, per lane
    parked_per_100m: float = 5.0  # per kerb
    people_per_100m: float = 11.0  # per sidewalk
    cyclists_per_100m: float = 5.0  # per sidewalk (bike lane on the sidewalk)
    trees_per_100m: float = 8.0  # per side
    poles_per_100m: float = 5.0  # per side: traffic lights and signs on poles (poles are void)
    light_share: float = 0.45  # of the poles, the share that carries a traffic light
    truck_share: float = 0.08  # of the vehicles, trucks
    bus_share: float = 0.07  # of the vehicles, buses
    motorcycle_share: float = 0.24  # of the vehicles, motorcycles
    hood_height: float = 0.06  # ego-vehicle hood at the bottom centre, fraction of the height (0: none)


@dataclass(frozen=True)
class SourceStyle:
    """The simulator look: flat per-class colours, hard edges, clean exposure."""

    colour_jitter: float = 0.06  # relative per-object colour jitter around the class colour
    shading: float = 0.35  # strength of the per-face sun shading
    exposure: Range = (0.95, 1.05)  # per-clip brightness gain


@dataclass(frozen=True)
class TargetStyle:
    """The camera look: textures, light, optics, sensor and compression."""

    texture: float = 1.0  # strength of the procedural per-class textures (0: flat colours)
    hue_shift: tuple[tuple[str, float], ...] = (("vegetation", -35.0), ("car", 35.0), ("bus", 30.0))
    colour_jitter: float = 0.12  # relative per-object colour jitter
    shading: float = 0.35  # per-face sun shading
    shadows: float = 0.2  # world-fixed light/shadow patches (clouds, trees) on every surface
    overcast: Range = (0.4, 1.0)  # per-clip cloud cover: 0 a blue sky, 1 a white-grey one
    exposure: Range = (0.66, 0.86)  # per-clip exposure gain
    white_balance: Range = (0.05, 0.22)  # per-clip colour temperature: > 0 warm, < 0 cool
    tint: float = 0.04  # per-clip green-magenta tint amplitude
    gamma: Range = (0.9, 1.1)  # per-clip tone curve exponent
    haze: Range = (0.0005, 0.003)  # per-clip extinction per metre: distance fades into the horizon colour
    vignetting: float = 0.2  # brightness lost in the image corners
    blur_sigma: Range = (0.4, 0.9)  # lens / motion blur, pixels at 256 px width
    noise: float = 4.0  # sensor noise, standard deviation in 8-bit units at mid grey
    jpeg_quality: Range = (35, 70)  # per-clip JPEG quality of the compressed stream (>= 100: none)

    def __post_init__(self) -> None:
        unknown = sorted({name for name, _ in self.hue_shift} - set(VIPER15.classes))
        if unknown:
            raise OptionError(f"hue_shift: unknown class(es) {unknown}; choose from {list(VIPER15.classes)}")


@dataclass(frozen=True)
class SynthConfig:
    """Everything ``generate`` needs: sizes, seed, and the two domains' layout and style."""

    seed: int = 0
    width: int = 256
    height: int = 128
    source_size: tuple[int, int] | None = None  # (H, W) of the source frames; None: height x width like the target
    source_clips: int = 24
    source_val_clips: int = 4
    target_train_clips: int = 16
    target_val_clips: int = 12  # 72 labelled frames: the per-class IoU of rare classes steadies
    frames: int = 30
    label_every: int = 5  # Cityscapes-VPS labels every 5th frame of a val video
    fps: float = 17.0  # Cityscapes frame rate, for the .mp4 videos
    cities: tuple[str, ...] = ("frankfurt", "lindau", "munster")  # Cityscapes' val cities
    source_layout: Layout = field(default_factory=Layout)
    target_layout: Layout = field(default_factory=lambda: TARGET_LAYOUT)
    source_style: SourceStyle = field(default_factory=SourceStyle)
    target_style: TargetStyle = field(default_factory=TargetStyle)

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            if getattr(self, name) < 16:
                raise OptionError(f"--{name}: must be at least 16, got {getattr(self, name)}")
        if self.source_size is not None and min(self.source_size) < 16:
            raise OptionError(f"--source-size: both sides must be at least 16, got {self.source_size}")
        if self.frames < self.label_every:
            raise OptionError(f"--frames: must be at least {self.label_every} (one labelled val frame per "
                             f"clip), got {self.frames}")
        for name in ("source_clips", "target_train_clips", "target_val_clips"):
            if getattr(self, name) < 1:
                raise OptionError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(self, name)}")
        if self.source_val_clips < 0:
            raise OptionError(f"--source-val-clips: must be >= 0, got {self.source_val_clips}")
        if not all(c.isalpha() and c.islower() for c in self.cities):
            raise OptionError(f"cities: lowercase letters only, got {self.cities}")

    def frame_size(self, domain: str) -> tuple[int, int]:
        """Return the (H, W) of ``domain``'s frames (source | target)."""
        return self.source_size if domain == "source" and self.source_size else (self.height, self.width)

    def to_dict(self) -> dict:
        """Return the config as plain JSON-ready data."""
        return asdict(self)


# The camera-like domain: a lower camera pitched slightly down with a longer lens, narrower
# European streets, taller buildings, denser parking and people, more greenery.
TARGET_LAYOUT = Layout(
    camera_height=(1.2, 1.4),
    camera_pitch_deg=(1.0, 3.0),
    focal=0.95,
    pan_deg=6.0,
    ego_speed=(0.3, 0.6),
    lanes=1,
    lane_width=3.2,
    parking_width=2.1,
    lawn_width=1.5,
    lawn=0.5,
    sidewalk_width=3.0,
    verge_width=3.5,
    verge_grass=0.65,
    building_height=(10.0, 22.0),
    building_length=(7.0, 18.0),
    building_gap=0.25,
    object_scale=0.92,
    vehicles_per_100m=5.0,
    parked_per_100m=7.0,
    people_per_100m=14.0,
    cyclists_per_100m=6.0,
    trees_per_100m=11.0,
    poles_per_100m=6.0,
    truck_share=0.08,
    bus_share=0.07,
    motorcycle_share=0.30,
    hood_height=0.09,
)
