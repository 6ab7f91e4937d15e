"""Measurements the grounding engine uses to check a finding against the image (docs/segmentation.md).

All are computed from masks and the image, whichever backend produced the masks:
- `cardiothoracic_ratio`: max horizontal heart width / max internal thoracic width (outer borders of the two lung
  fields on one row). > 0.5 on a PA film suggests cardiomegaly.
- `area_fraction[name]`: region pixels / image pixels.
- `intensity[name]`: mean, std, p10, p90 of the [0, 1] image inside the region (an effusion or consolidation
  makes a lung base brighter; a pneumothorax makes an apex darker). For lung regions only the part outside the
  heart counts: the anatomical lungs (CXAS) pass behind the heart, whose density says nothing about aeration.
- `costophrenic[side]`: the angle point (lowest lateral point of the lung field), the angle in degrees between
  the lateral chest wall and the diaphragm contour there, and `sharpness` in [0, 1] (1 = a deep acute recess,
  0 = blunted: a meniscus of effusion fills the recess and opens the angle).
- `apex_texture[side]`: fine-detail energy in the apical zone divided by that in the mid zone of the same lung.
  Lung markings (vessels) give texture; a pneumothorax has none at the apex, so a low ratio (< ~0.6) supports it.
"""
from __future__ import annotations

import cv2
import numpy as np

from model.taxonomy import SUPERCLASSES

LUNG_REGIONS = frozenset(("lung",) + tuple(n for g in ("lung halves", "lung zones", "lung lobes")
                                            for n in SUPERCLASSES[g] + (g,)))

_CP_ARM = 0.12  # arm length for the angle, as a fraction of the lung's height


def cardiothoracic_ratio(heart: np.ndarray, right: np.ndarray, left: np.ndarray) -> float | None:
    if not heart.any() or not right.any() or not left.any():
        return None
    xs = np.flatnonzero(heart.any(axis=0))
    heart_w = xs[-1] - xs[0] + 1
    w = right.shape[1]
    both = right.any(axis=1) & left.any(axis=1)
    if not both.any():
        return None
    r_outer = np.argmax(right, axis=1)
    l_outer = w - 1 - np.argmax(left[:, ::-1], axis=1)
    thorax_w = int(np.max((l_outer - r_outer + 1)[both]))
    return float(heart_w / thorax_w)


def _lateral_lowest(lung: np.ndarray, lateral_is_left: bool) -> tuple[int, int]:
    """The costophrenic angle point: the lung pixel furthest down-and-out (max of y + lateral x)."""
    ys, xs = np.nonzero(lung)
    lat = -xs if lateral_is_left else xs
    i = int(np.argmax(ys + lat))
    return int(ys[i]), int(xs[i])


def costophrenic(lung: np.ndarray, lateral_is_left: bool) -> dict:
    """Angle at the lung's lower lateral corner between the lateral wall (going up) and the dome (going in)."""
    ys, _ = np.nonzero(lung)
    h = int(ys.max() - ys.min() + 1)
    arm = max(3, int(_CP_ARM * h))
    y0, x0 = _lateral_lowest(lung, lateral_is_left)
    # Lateral wall point: the lateral edge `arm` rows above the angle point.
    ry = max(int(ys.min()), y0 - arm)
    row = np.flatnonzero(lung[ry])
    wx = row[0] if lateral_is_left else row[-1]
    # Dome point: the lowest lung pixel `arm` columns medial of the angle point.
    dx = x0 + arm if lateral_is_left else x0 - arm
    dx = int(np.clip(dx, 0, lung.shape[1] - 1))
    col = np.flatnonzero(lung[:, dx])
    dy = col[-1] if col.size else y0
    v1 = np.array([wx - x0, ry - y0], float)
    v2 = np.array([dx - x0, dy - y0], float)
    cos = float(v1 @ v2 / (np.linalg.norm(v1) * np.linalg.norm(v2) + 1e-9))
    angle = float(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    # A normal recess is ~30-70 degrees; a blunted one opens past ~100.
    sharpness = float(np.clip((130.0 - angle) / 90.0, 0.0, 1.0))
    return {"point": [y0, x0], "angle_deg": round(angle, 1), "sharpness": round(sharpness, 3)}


def _fine_energy(image: np.ndarray, mask: np.ndarray) -> float | None:
    if mask.sum() < 16:
        return None
    fine = image - cv2.GaussianBlur(image, (0, 0), 1.5)
    return float(np.sqrt(np.mean(fine[mask] ** 2)))


def apex_texture(image: np.ndarray, apical: np.ndarray, mid: np.ndarray) -> float | None:
    # Erode so the bright lung border (ribs, mediastinum) does not count as texture.
    k = np.ones((5, 5), np.uint8)
    a = cv2.erode(apical.astype(np.uint8), k).astype(bool)
    m = cv2.erode(mid.astype(np.uint8), k).astype(bool)
    ea, em = _fine_energy(image, a), _fine_energy(image, m)
    if ea is None or em is None or em <= 0:
        return None
    return round(ea / em, 3)


def measure(image: np.ndarray, masks: dict[str, np.ndarray]) -> dict:
    """image: float32 H×W in [0, 1]; masks: CXAS name -> bool H×W (same size). Returns a JSON-serialisable dict."""
    for name, m in masks.items():
        if m.shape != image.shape:
            raise ValueError(f"mask '{name}' is {m.shape}, image is {image.shape}")
    total = float(image.size)
    out: dict = {"area_fraction": {}, "intensity": {}}
    heart = masks.get("heart")
    for name, m in masks.items():
        n = int(m.sum())
        out["area_fraction"][name] = round(n / total, 5)
        seen = m & ~heart if heart is not None and name in LUNG_REGIONS else m
        if seen.sum():
            v = image[seen]
            p10, p90 = np.percentile(v, [10, 90])
            out["intensity"][name] = {"mean": round(float(v.mean()), 4), "std": round(float(v.std()), 4),
                                      "p10": round(float(p10), 4), "p90": round(float(p90), 4)}
    right, left = masks.get("right lung"), masks.get("left lung")
    if right is not None and left is not None and "heart" in masks:
        ctr = cardiothoracic_ratio(masks["heart"], right, left)
        out["cardiothoracic_ratio"] = None if ctr is None else round(ctr, 4)
    out["costophrenic"], out["apex_texture"] = {}, {}
    for side, lung in (("right", right), ("left", left)):
        if lung is None or not lung.any():
            continue
        out["costophrenic"][side] = costophrenic(lung, lateral_is_left=(side == "right"))
        apical, mid = masks.get(f"{side} apical zone lung"), masks.get(f"{side} mid zone lung")
        if apical is not None and mid is not None:
            out["apex_texture"][side] = apex_texture(image, apical, mid)
    return out
