"""Segmentation into CXAS (PAX-Ray++) anatomy: `segment(image, backend) -> model.types.Segmentation`.

Backends (docs/segmentation.md):
- "atlas" (default): lung fields from intensity and morphology, the rest by geometry; no learned weights.
- "unet": a small UNet trained on phantom masks (unet.py); SegmentationError when its weights are absent.
- "cxas": the third-party `cxas` package (159 classes, CC BY-NC-SA 4.0) when the user has installed it.
- "auto": `AUTO_RULE`; with no UNet weights shipped it is the atlas.

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
UNET_FEATURE_CHANNELS = 32  # 4 × UNetConfig.base (checked by tests/test_segmentation_unet.py)
# Channels of `Segmentation.features` per backend (fixed, so a fusion layer can be sized from it): the atlas gives
# the image, its fine detail and one pooled mask per derived region; the UNet its decoder at 32×32; cxas its 159
# pooled class masks.
FEATURE_CHANNELS = {"atlas": 2 + len(DERIVED_REGIONS), "unet": UNET_FEATURE_CHANNELS, "cxas": 159}
AUTO_AGREEMENT = 0.85
AUTO_RULE = ("auto runs the atlas and, when UNet weights are shipped, the UNet; it keeps the UNet's answer only where "
             f"the two agree on the lung fields (Dice >= {AUTO_AGREEMENT}: the phantom-like domain in which the UNet "
             "was measured to beat the atlas, docs/segmentation.md) or where the atlas refuses the image but the "
             "UNet's answer passes the plausibility checks; otherwise the atlas's")

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


def _lung_agreement(a: Segmentation, b: Segmentation) -> float:
    inter = total = 0
    for name in ("right lung", "left lung"):
        inter += int((a.masks[name] & b.masks[name]).sum())
        total += int(a.masks[name].sum() + b.masks[name].sum())
    return 2 * inter / total if total else 0.0


def _auto(x: np.ndarray) -> Segmentation:
    """See AUTO_RULE."""
    from model.segmentation import unet
    from model.segmentation.atlas import segment_atlas
    from model.segmentation.checks import plausibility

    if not unet.weights_available():
        seg = segment_atlas(x)
        seg.measurements["auto"] = {"chosen": "atlas", "why": "no UNet weights shipped"}
        return seg
    try:
        learned = unet.segment_unet(x)
    except SegmentationError:
        learned = None
    try:
        atlas = segment_atlas(x)
    except SegmentationError:
        if learned is None:
            raise
        fails = plausibility(learned.masks, learned.measurements.get("cardiothoracic_ratio"), check_ctr=False)
        if fails:
            raise SegmentationError("the atlas refused this image and the UNet's answer is implausible: "
                                    + "; ".join(fails)) from None
        learned.measurements["auto"] = {"chosen": "unet", "why": "the atlas refused; the UNet's answer is plausible"}
        return learned
    if learned is None:
        atlas.measurements["auto"] = {"chosen": "atlas", "why": "the UNet found no lung fields"}
        return atlas
    agree = round(_lung_agreement(learned, atlas), 3)
    chosen = learned if agree >= AUTO_AGREEMENT else atlas
    chosen.measurements["auto"] = {"chosen": chosen.backend, "lung_agreement": agree}
    return chosen
