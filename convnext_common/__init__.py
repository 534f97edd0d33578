"""Framework-agnostic core of the ConvNeXt twins: configs, variants, image processing, checkpoints.

Importing this package imports neither torch nor tensorflow.
"""

from .config import ConvNextConfig, ConvNextV2Config, ConfigError, load_config
from .dinov3 import DINOv3ConvNextConfig
from .variants import config_for_variant, variant_names
from . import pretrained as _pretrained  # noqa: F401,E402  (installs how configs read hub ids and timm checkpoints)

__version__ = "0.1.0"


def __getattr__(name):  # keep PIL out of the import path of code that only needs configs
    if name in ("ConvNextImageProcessor", "ConvNextFeatureExtractor"):
        from . import processing

        return getattr(processing, name)
    raise AttributeError(f"module 'convnext_common' has no attribute {name!r}")


__all__ = ["ConvNextConfig", "ConvNextV2Config", "DINOv3ConvNextConfig", "ConfigError", "load_config",
           "config_for_variant",
           "variant_names", "ConvNextImageProcessor", "ConvNextFeatureExtractor", "__version__"]
