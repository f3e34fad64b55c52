"""Official Depth Anything V2 model configurations (the single copy used by every script)."""

MODEL_CONFIGS = {
    "vits": {"encoder": "vits", "features": 64, "out_channels": [48, 96, 192, 384]},
    "vitb": {"encoder": "vitb", "features": 128, "out_channels": [96, 192, 384, 768]},
    "vitl": {"encoder": "vitl", "features": 256, "out_channels": [256, 512, 1024, 1024]},
    "vitg": {"encoder": "vitg", "features": 384, "out_channels": [1536, 1536, 1536, 1536]},
}

# Backbone blocks whose outputs feed the DPT head.
INTERMEDIATE_LAYER_IDX = {
    "vits": [2, 5, 8, 11],
    "vitb": [2, 5, 8, 11],
    "vitl": [4, 11, 17, 23],
    "vitg": [9, 19, 29, 39],
}

# DINOv2 ViT shapes: embedding width, number of blocks, attention heads, feed-forward type.
BACKBONE_CONFIGS = {
    "vits": {"embed_dim": 384, "depth": 12, "num_heads": 6, "ffn_layer": "mlp"},
    "vitb": {"embed_dim": 768, "depth": 12, "num_heads": 12, "ffn_layer": "mlp"},
    "vitl": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "ffn_layer": "mlp"},
    "vitg": {"embed_dim": 1536, "depth": 40, "num_heads": 24, "ffn_layer": "swiglufused"},
}

ENCODER_BY_EMBED_DIM = {cfg["embed_dim"]: name for name, cfg in BACKBONE_CONFIGS.items()}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH_SIZE = 14

# The official releases' size names, and the metric range of the official metric models (their model pages):
# Hypersim (indoor) 20 m, Virtual KITTI 2 (outdoor) 80 m, keyed as in their file names.
OFFICIAL_SIZES = {"vits": "Small", "vitb": "Base", "vitl": "Large", "vitg": "Giant"}
OFFICIAL_METRIC_RANGES = {"hypersim": 20.0, "vkitti": 80.0}
