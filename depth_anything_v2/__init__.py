"""Depth Anything V2 with camera intrinsics: public API. Needs torch, numpy and OpenCV only.

from depth_anything_v2 import DepthAnythingV2, build_model_from_checkpoint
model = build_model_from_checkpoint('checkpoints/depth_anything_v2_vits.pth')   # any format, see loading.py
depth = model.infer_image(cv2.imread('photo.jpg'), input_size=518, intrinsics=K)
model = DepthAnythingV2.from_pretrained('depth-anything/Depth-Anything-V2-Small-hf')  # hub names, folders (hub.py)
"""

from .configs import IMAGENET_MEAN, IMAGENET_STD, INTERMEDIATE_LAYER_IDX, MODEL_CONFIGS, PATCH_SIZE
from .dpt import DepthAnythingV2
from .loading import CheckpointError, build_model_from_checkpoint, load_weights, read_checkpoint

__all__ = [
    "CheckpointError",
    "DepthAnythingV2",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INTERMEDIATE_LAYER_IDX",
    "MODEL_CONFIGS",
    "PATCH_SIZE",
    "build_model_from_checkpoint",
    "load_weights",
    "read_checkpoint",
]
