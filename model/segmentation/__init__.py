"""Segmentation into CXAS (PAX-Ray++) anatomy: `segment(image, backend) -> model.types.Segmentation`.

Backends (docs/segmentation.md):
- "unet" (default): a MONAI UNet trained on phantoms and real films that finds both lungs (anatomical, as CXAS
  draws them) and the heart; zones, lobes, mediastinum, trachea and hemidiaphragms are derived from them.
- "atlas" (fallback): lung fields from intensity and morphology, the rest by geometry; no learned weights.
- "cxas": the third-party `cxas` package (159 classes, CC BY-NC-SA 4.0) when the user has installed it.
- "auto": the unet when its weights are present, else the atlas.

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

BACKENDS = ("unet", "atlas", "cxas", "auto")
DEFAULT_BACKEND = "unet"
# Channels of `Segmentation.features` per backend (fixed, so a fusion layer can be sized from it): the image, its
# fine detail and one pooled mask per derived region (atlas and unet); cxas its 159 pooled class masks.
FEATURE_CHANNELS = {"atlas": 2 + len(DERIVED_REGIONS), "unet": 2 + len(DERIVED_REGIONS), "cxas": 159}

__all__ = ["segment", "SegmentationError", "BACKENDS", "DEFAULT_BACKEND", "FEATURE_CHANNELS", "FEATURE_SIZE",
           "load_image"]


def load_image(image) -> np.ndarray:
    """A path, bytes or array -> float32 H×W in [0, 1] (ImageReadError on bad input)."""
    if isinstance(image, np.ndarray):
        return as_gray_unit(image)
    return read_radiograph(image)


def segment(image, backend: str = DEFAULT_BACKEND) -> Segmentation:
    """image: path, bytes, or array (uint8/uint16/float, gray/RGB/RGBA, any size). Raises SegmentationError when
    the image is not a frontal chest radiograph or the backend is unavailable, ImageReadError on unreadable input."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown segmentation backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    t0 = time.perf_counter()
    x = load_image(image)
    if backend == "unet":
        from model.segmentation.unet import segment_unet
        seg = segment_unet(x)
    elif backend == "atlas":
        from model.segmentation.atlas import segment_atlas
        seg = segment_atlas(x)
    elif backend == "auto":
        seg = _auto(x)
    else:
        from model.segmentation.cxas_backend import segment_cxas
        seg = segment_cxas(x)
    seg.measurements["seconds"] = round(time.perf_counter() - t0, 4)
    return seg


def _auto(x: np.ndarray) -> Segmentation:
    """The learned segmenter when its weights are present; the atlas otherwise (a build without weights)."""
    from model.segmentation import unet
    if unet.weights_available():
        seg = unet.segment_unet(x)
        seg.measurements["auto"] = {"chosen": "unet"}
        return seg
    from model.segmentation.atlas import segment_atlas
    seg = segment_atlas(x)
    seg.measurements["auto"] = {"chosen": "atlas", "why": "no unet weights at " + unet.WEIGHTS_PATH}
    return seg
