"""Region scoring: how much of a sentence's attribution heatmap falls in each CXAS region, normalised by area.

A heatmap here is a non-negative attribution *density* at image resolution (H x W). For a region r with mask M_r:

    mass_r = sum(heatmap[M_r]) / sum(heatmap)      fraction of the sentence's attribution inside r
    area_r = |M_r| / (H * W)                        fraction of the image r covers
    lift_r = mass_r / area_r                        1.0 = no more attention than a uniform map would give r
    score_r = lift_r / (1 + lift_r) = mass_r / (mass_r + area_r)   in [0, 1); 0.5 = chance level

Normalising by area stops big regions (a whole lung) from always winning on raw mass, and the squash to [0, 1)
keeps scores comparable across images and methods. Masks overlap (a lung contains its base), so scores are not a
distribution over regions; ties between a region and its sub-region are broken by the higher lift (the tighter fit).
"""
from __future__ import annotations

import numpy as np

from model.types import RegionScore

# Regions below this fraction of the image are too small for a stable mass estimate at patch resolution.
MIN_AREA_FRACTION = 0.002


def region_mass(heatmap: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """name -> (mass fraction, area fraction) for each non-trivial mask. heatmap: H x W, non-negative."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (H x W), got shape {heatmap.shape}")
    if np.any(heatmap < 0) or not np.all(np.isfinite(heatmap)):
        raise ValueError("heatmap must be finite and non-negative (take the positive part of signed attributions)")
    total = heatmap.sum()
    hw = heatmap.size
    out = {}
    for name, mask in masks.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != heatmap.shape:
            raise ValueError(f"mask '{name}' has shape {mask.shape} but the heatmap has shape {heatmap.shape}")
        area = mask.sum() / hw
        if area < MIN_AREA_FRACTION:
            continue
        mass = float(heatmap[mask].sum() / total) if total > 0 else float(area)
        out[name] = (mass, float(area))
    return out


def score_regions(heatmap: np.ndarray, masks: dict[str, np.ndarray]) -> list[RegionScore]:
    """Every region's area-normalised score (module docstring), ranked best first."""
    scored = []
    for name, (mass, area) in region_mass(heatmap, masks).items():
        score = mass / (mass + area) if mass + area > 0 else 0.0
        scored.append((score, name))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [RegionScore(name=n, score=float(s)) for s, n in scored]


def spread_tokens(patch_weights: np.ndarray, region_weights: dict[str, float], masks: dict[str, np.ndarray],
                  shape: tuple[int, int]) -> np.ndarray:
    """Turn attribution on key tokens into a pixel density: each patch token's weight spread evenly over its
    patch, each region token's weight spread evenly over its mask. patch_weights: [gh, gw] -> H x W density whose
    sum equals the total weight placed (tokens with an empty mask place nothing)."""
    h, w = shape
    gh, gw = patch_weights.shape
    # Patch boundaries at image resolution (images need not divide evenly by the grid).
    rows = np.minimum((np.arange(h) * gh) // h, gh - 1)
    cols = np.minimum((np.arange(w) * gw) // w, gw - 1)
    counts_r = np.bincount(rows, minlength=gh).astype(np.float64)
    counts_c = np.bincount(cols, minlength=gw).astype(np.float64)
    per_pixel = patch_weights / np.outer(counts_r, counts_c)  # [gh, gw] density inside each patch
    density = per_pixel[rows][:, cols].astype(np.float64)
    for name, weight in region_weights.items():
        mask = masks.get(name)
        if mask is None or weight == 0:
            continue
        area = mask.sum()
        if area:
            density[mask] += weight / area
    return density


def to_display(heatmap: np.ndarray) -> np.ndarray:
    """Scale a density to [0, 1] float32 for display (max-normalised; an all-zero map stays zero)."""
    peak = float(heatmap.max()) if heatmap.size else 0.0
    return (heatmap / peak).astype(np.float32) if peak > 0 else np.zeros_like(heatmap, dtype=np.float32)


def threshold_iou(heatmap: np.ndarray, truth: np.ndarray, level: float = 0.5) -> float:
    """IoU between the heatmap thresholded at `level` x its maximum and a ground-truth mask (benchmarks)."""
    peak = float(heatmap.max())
    if peak <= 0:
        return 0.0
    pred = heatmap >= level * peak
    inter = np.logical_and(pred, truth).sum()
    union = np.logical_or(pred, truth).sum()
    return float(inter / union) if union else 0.0
