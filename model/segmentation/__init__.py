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
# Agreement (Dice between the two backends' masks) that marks the phantom-like domain: on phantom tuning seeds
# 0-19 the backends agree at >= 0.825 (lungs) and >= 0.71 (heart); on the 5 real radiographs the hearts agree at
# <= 0.63 (docs/segmentation.md).
AUTO_AGREEMENT = {"lungs": 0.80, "heart": 0.70}
AUTO_RULE = ("auto runs the atlas and, when UNet weights are shipped, the UNet; it keeps the UNet's answer only where "
             f"the two agree on the lung fields (Dice >= {AUTO_AGREEMENT['lungs']}) and the heart (Dice >= "
             f"{AUTO_AGREEMENT['heart']}), the phantom-like domain in which the UNet was measured to beat the atlas "
             "(docs/segmentation.md), or where the atlas refuses the image but the UNet's answer passes the "
             "plausibility checks; otherwise the atlas's")

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


def _agreement(a: Segmentation, b: Segmentation, names: tuple[str, ...]) -> float:
    """Dice between two segmentations over the named masks pooled."""
    inter = total = 0
    for name in names:
        inter += int((a.masks[name] & b.masks[name]).sum())
        total += int(a.masks[name].sum() + b.masks[name].sum())
    return round(2 * inter / total, 3) if total else 0.0


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
    agree = {"lungs": _agreement(learned, atlas, ("right lung", "left lung")),
             "heart": _agreement(learned, atlas, ("heart",))}
    chosen = learned if all(agree[k] >= AUTO_AGREEMENT[k] for k in AUTO_AGREEMENT) else atlas
    chosen.measurements["auto"] = {"chosen": chosen.backend, "agreement": agree}
    return chosen
