"""Depth Anything V2 with camera intrinsics: public API."""

from .configs import IMAGENET_MEAN, IMAGENET_STD, INTERMEDIATE_LAYER_IDX, MODEL_CONFIGS
from .dpt import DepthAnythingV2

__all__ = ["DepthAnythingV2", "MODEL_CONFIGS", "INTERMEDIATE_LAYER_IDX", "IMAGENET_MEAN", "IMAGENET_STD"]
