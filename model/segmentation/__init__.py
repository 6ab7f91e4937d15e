"""Segmentation into CXAS (PAX-Ray++) anatomy: `segment(image, backend) -> model.types.Segmentation`.

Backends (docs/segmentation.md):
- "atlas" (default): lung fields from intensity and morphology, the rest by geometry; no learned weights.
- "unet": a small UNet trained on phantom masks (weights in assets/segmentation/ when shipped).
- "cxas": the third-party `cxas` package (159 classes, CC BY-NC-SA 4.0) when the user has installed it.
- "auto": the UNet where it beats the atlas (phantom images, see `AUTO_RULE`), else the atlas.

Every backend returns masks at the image's own resolution named with CXAS class and superclass names,
`measurements` (measure.py) and `features`: float32 [FEATURE_CHANNELS[backend], 32, 32] for ASaRG fusion.
Importing this package does not import torch; only the unet backend does.
"""
from __future__ import annotations

import time

import numpy as np

from model.imageio import as_gray_unit, read_radiograph
from model.segmentation.derive import DERIVED_REGIONS
from model.segmentation.errors import SegmentationError
from model.segmentation.output import FEATURE_SIZE
from model.types import Segmentation

BACKENDS = ("atlas", "unet", "cxas", "auto")
UNET_FEATURE_CHANNELS = 32  # model.segmentation.unet.UNetConfig.base * 2 (checked there)
# Channels of `Segmentation.features` per backend (fixed, so a fusion layer can be sized from it): the atlas gives
# the image, its fine detail and one pooled mask per derived region; the UNet its last decoder features.
FEATURE_CHANNELS = {"atlas": 2 + len(DERIVED_REGIONS), "unet": UNET_FEATURE_CHANNELS, "cxas": 159}
AUTO_RULE = ("auto uses the UNet when its weights are shipped and the image is a phantom (the only domain where it "
             "was measured to beat the atlas, docs/segmentation.md); otherwise the atlas")

__all__ = ["segment", "SegmentationError", "BACKENDS", "FEATURE_CHANNELS", "FEATURE_SIZE", "load_image"]


def load_image(image) -> np.ndarray:
    """A path, bytes or array -> float32 H×W in [0, 1] (ImageReadError on bad input)."""
    if isinstance(image, np.ndarray):
        return as_gray_unit(image)
    return read_radiograph(image)


def segment(image, backend: str = "atlas") -> Segmentation:
    """image: path, bytes, or array (uint8/uint16/float, gray/RGB/RGBA, any size). Raises SegmentationError when
    the image is not a frontal chest radiograph or the backend is unavailable, ImageReadError on unreadable input."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown segmentation backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    t0 = time.perf_counter()
    x = load_image(image)
    if backend == "auto":
        from model.segmentation import unet
        backend = "unet" if unet.weights_available() and unet.looks_like_phantom(x) else "atlas"
    if backend == "atlas":
        from model.segmentation.atlas import segment_atlas
        seg = segment_atlas(x)
    elif backend == "unet":
        from model.segmentation.unet import segment_unet
        seg = segment_unet(x)
    else:
        from model.segmentation.cxas_backend import segment_cxas
        seg = segment_cxas(x)
    seg.measurements["seconds"] = round(time.perf_counter() - t0, 4)
    return seg
