"""Turn a backend's working-resolution result into the public `Segmentation` at the image's own resolution."""
from __future__ import annotations

import cv2
import numpy as np

from model.segmentation.derive import add_superclasses
from model.segmentation.measure import measure
from model.taxonomy import validate_names
from model.types import Segmentation

FEATURE_SIZE = 32


def pool_features(channels: np.ndarray) -> np.ndarray:
    """[C, h, w] float -> [C, 32, 32] float32 by area averaging."""
    return np.stack([cv2.resize(c.astype(np.float32), (FEATURE_SIZE, FEATURE_SIZE), interpolation=cv2.INTER_AREA)
                     for c in channels]).astype(np.float32)


def upsample_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask.astype(bool)
    # Linear on 0/255 then threshold gives smooth borders instead of nearest-neighbour stairs.
    up = cv2.resize(mask.astype(np.uint8) * 255, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return up >= 128


def build(x_small: np.ndarray, masks_small: dict[str, np.ndarray], shape: tuple[int, int], backend: str,
          features: np.ndarray, extra: dict | None = None) -> Segmentation:
    """x_small: the [S, S] working image the masks were made on; shape: the original (H, W).
    Measurements are taken at the working resolution (ratios and fractions do not depend on it; it keeps a
    1024² image fast) and point coordinates are scaled to the original image."""
    masks_small = add_superclasses(masks_small)
    validate_names(masks_small)
    meas = measure(x_small, masks_small)
    sy, sx = shape[0] / x_small.shape[0], shape[1] / x_small.shape[1]
    for cp in meas["costophrenic"].values():
        cp["point"] = [int(round((cp["point"][0] + 0.5) * sy)), int(round((cp["point"][1] + 0.5) * sx))]
    meas["working_size"] = list(x_small.shape)
    if extra:
        meas.update(extra)
    masks = {name: upsample_mask(m, shape) for name, m in masks_small.items()}
    return Segmentation(masks=masks, backend=backend, measurements=meas, features=features)
