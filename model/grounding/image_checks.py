"""Image statistics the verdict checks beside the segmenter's measurements (model/grounding/verdict.py): how dark
each lung's lateral band is (pneumothorax) and how dense each lung zone is against its mirror (opacity). They read
aeration, so lung regions count only outside the heart: anatomical lungs (CXAS) pass behind it."""
from __future__ import annotations

import numpy as np

SIDES = ("right", "left")
ZONES = ("upper zone lung", "mid zone lung", "lung base")


def image_checks(image: np.ndarray, masks: dict[str, np.ndarray]) -> dict:
    """Image statistics the verdict checks beside the segmenter's measurements. They read aeration, so lung
    regions count only outside the heart: anatomical lungs (CXAS) pass behind it, and its density is not the lung's."""
    seen = visible_lungs(masks)
    return {"zone_opacity": zone_opacity(image, seen), "lateral_lucency": lateral_lucency(image, seen)}


def visible_lungs(masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`masks` with every lung region (lungs, zones, lobes) cut to the part outside the heart."""
    from model.segmentation.measure import LUNG_REGIONS

    heart = masks.get("heart")
    if heart is None:
        return masks
    return {n: (m & ~heart if n in LUNG_REGIONS else m) for n, m in masks.items()}


def lateral_band(lung: np.ndarray, side: str, fraction: float = 0.35) -> np.ndarray:
    """The outer `fraction` of a lung field on every row: where the air of a pneumothorax collects on a frontal
    film. The patient's right lung lies on the image's left, so its lateral edge is its leftmost pixel."""
    out = np.zeros_like(lung, dtype=bool)
    for y in np.flatnonzero(lung.any(axis=1)):
        xs = np.flatnonzero(lung[y])
        k = int(fraction * (xs[-1] - xs[0] + 1)) + 1
        cols = xs[xs < xs[0] + k] if side == "right" else xs[xs > xs[-1] - k]
        out[y, cols] = True
    return out


def lateral_lucency(image: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """Per side: how much darker the lung's lateral band is than the other lung's, in units of the lungs' intensity
    spread. A pneumothorax puts air without lung markings between the chest wall and the collapsing lung."""
    image = np.asarray(image, dtype=np.float64)
    lungs = {s: masks.get(f"{s} lung") for s in SIDES}
    if any(m is None or not m.any() for m in lungs.values()):
        return {}
    spread = float(image[lungs["right"] | lungs["left"]].std()) or 1.0
    mean = {s: float(image[lateral_band(m, s)].mean()) for s, m in lungs.items()}
    return {"right": (mean["left"] - mean["right"]) / spread, "left": (mean["right"] - mean["left"]) / spread}


def zone_opacity(image: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """Per lung zone (CXAS name): how much brighter (denser) it is than the same zone on the other side, in units
    of the lungs' intensity spread. An opacity, consolidation, nodule or collapse raises its zone's value; a
    symmetric chest gives ~0 everywhere. Needs both sides' zone masks; missing pairs are left out."""
    image = np.asarray(image, dtype=np.float64)
    lungs = [masks[n] for n in ("right lung", "left lung") if n in masks]
    if not lungs:
        return {}
    spread = float(image[np.logical_or.reduce(lungs)].std()) or 1.0
    out = {}
    for zone in ZONES:
        r, l = masks.get(f"right {zone}"), masks.get(f"left {zone}")
        if r is None or l is None or not r.any() or not l.any():
            continue
        # The brightest quarter of each zone: a focal opacity moves it where it barely moves the zone mean.
        qr, ql = (float(np.percentile(image[m], 75)) for m in (r, l))
        out[f"right {zone}"] = (qr - ql) / spread
        out[f"left {zone}"] = (ql - qr) / spread
    return out
