"""vsda_train: source training, video adversarial training (VAT) and video self-training (VST)."""

from vsda_deploy import __version__

__all__ = ["__version__"]
