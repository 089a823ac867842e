"""The synthetic sim-to-real video benchmark: procedural street clips in a simulator look (source,
VIPER format) and a camera look (target, Cityscapes-VPS format), with exact video panoptic labels.

``generate(out, config) -> summary`` writes it; ``docs/synthetic_benchmark.md`` describes it.
"""

from vsda_train.synth.config import Layout, SourceStyle, SynthConfig, TargetStyle
from vsda_train.synth.generate import generate, render_clip, total_frames

__all__ = ["Layout", "SourceStyle", "SynthConfig", "TargetStyle", "generate", "render_clip", "total_frames"]
