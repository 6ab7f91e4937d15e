"""Phantom pathology: sample finding specs, draw each into the radiograph layers and its own mask.

A *spec* is the plan for one finding (type, side, size, location); drawing it yields the ground-truth mask, the
CXAS regions the mask lies in and measurements. Types use CheXpert observation names.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .anatomy import SIDES, Anatomy, _blur, dome_curve, ellipse, fill, side_sign, stroke

FINDING_TYPES = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Consolidation", "Lung Opacity",
                 "Lung Lesion", "Atelectasis", "Edema", "Support Devices")
# sampling weights for a random abnormal case
_WEIGHTS = np.array([1.0, 1.3, 0.8, 1.0, 0.7, 0.8, 0.8, 0.5, 0.9])
ZONES = ("upper zone lung", "mid zone lung", "lung base")
LOBES = {"right": ("lung upper lobe right", "lung middle lobe right", "lung lower lobe right"),
         "left": ("lung upper lobe left", "lung lower lobe left")}
DEVICES = ("endotracheal tube", "central venous catheter", "pacemaker")
SIZES = {"Pleural Effusion": ("small", "moderate", "large"), "Pneumothorax": ("small", "large"),
         "Cardiomegaly": ("mild", "moderate", "marked"), "Edema": ("mild", "moderate", "severe"),
         "Lung Opacity": ("mild", "moderate"), "Consolidation": ("patchy", "dense"),
         "Lung Lesion": ("nodule", "mass"), "Atelectasis": ("linear", "plate-like")}
CTR_BY_SEVERITY = {"mild": (0.53, 0.57), "moderate": (0.57, 0.62), "marked": (0.62, 0.68)}
CM_PER_IMAGE = 40.0  # the phantom image spans about 40 cm, for stated sizes and distances


def sample_spec(rng: np.random.Generator, ftype: str, **fixed) -> dict:
    """One finding plan; `fixed` overrides any sampled field (side, size, location, subtype)."""
    if ftype not in FINDING_TYPES:
        raise ValueError(f"unknown finding type {ftype!r}; expected one of {FINDING_TYPES}")
    spec: dict = {"type": ftype, "side": None}
    if ftype in SIZES:
        spec["size"] = str(rng.choice(SIZES[ftype]))
    if ftype in ("Pleural Effusion", "Pneumothorax", "Consolidation", "Lung Opacity", "Lung Lesion"):
        spec["side"] = str(rng.choice(SIDES))
    if ftype == "Atelectasis":
        spec["side"] = str(rng.choice(("right", "left", "bilateral"), p=[0.35, 0.35, 0.3]))
    if ftype == "Edema":
        spec["side"] = "bilateral"
    if ftype == "Support Devices":
        spec["subtype"] = str(rng.choice(DEVICES))
    spec.update({k: v for k, v in fixed.items() if v is not None})
    if ftype == "Support Devices" and spec["subtype"] in DEVICES:  # each device has its usual side
        spec["side"] = {"endotracheal tube": None, "central venous catheter": "right", "pacemaker": "left"}[
            spec["subtype"]]
    if fixed.get("location") and not fixed.get("side"):  # a named place fixes the side
        spec["side"] = "right" if "right" in fixed["location"] else "left"
    _validate(spec)
    side = spec["side"]
    if "location" not in spec:
        if ftype == "Consolidation":
            spec["location"] = str(rng.choice(LOBES[side]))
        elif ftype in ("Lung Opacity", "Lung Lesion"):
            spec["location"] = f"{side} {rng.choice(ZONES)}"
    if ftype == "Lung Lesion" and "diameter_mm" not in spec:
        spec["diameter_mm"] = int(rng.integers(8, 25) if spec["size"] == "nodule" else rng.integers(35, 60))
    if ftype == "Cardiomegaly" and "ctr" not in spec:
        spec["ctr"] = round(float(rng.uniform(*CTR_BY_SEVERITY[spec["size"]])), 3)
    return spec


_ALLOWED_SIDES = {"Cardiomegaly": (None,), "Edema": ("bilateral",), "Atelectasis": ("right", "left", "bilateral"),
                  "Support Devices": (None, "right", "left")}
_LOCATIONS = {"Consolidation": LOBES["right"] + LOBES["left"],
              "Lung Opacity": tuple(f"{s} {z}" for s in SIDES for z in ZONES),
              "Lung Lesion": tuple(f"{s} {z}" for s in SIDES for z in ZONES)}


def _validate(spec: dict) -> None:
    """Reject a planned finding that cannot be drawn, naming the field and the allowed values."""
    t = spec["type"]
    sides = _ALLOWED_SIDES.get(t, SIDES)
    if spec["side"] not in sides:
        raise ValueError(f"{t}: side must be one of {sides}, got {spec['side']!r}")
    if t in SIZES and spec.get("size") not in SIZES[t]:
        raise ValueError(f"{t}: size must be one of {SIZES[t]}, got {spec.get('size')!r}")
    if "location" in spec:
        allowed = _LOCATIONS.get(t, ())
        if spec["location"] not in allowed or not spec["location"].count(spec["side"] or "-"):
            raise ValueError(f"{t}: location must be one of {allowed} on side {spec['side']!r}, got "
                             f"{spec['location']!r}")
    if t == "Support Devices" and spec.get("subtype") not in DEVICES:
        raise ValueError(f"Support Devices: subtype must be one of {DEVICES}, got {spec.get('subtype')!r}")


def sample_specs(rng: np.random.Generator, abnormal_prob: float, max_findings: int) -> list[dict]:
    """Random findings for one case: none with probability 1 - abnormal_prob, else 1..max_findings distinct types."""
    if max_findings < 1 or rng.random() >= abnormal_prob:
        return []
    k = int(rng.integers(1, max_findings + 1))
    types = rng.choice(len(FINDING_TYPES), size=min(k, len(FINDING_TYPES)), replace=False,
                       p=_WEIGHTS / _WEIGHTS.sum())
    specs = [sample_spec(rng, FINDING_TYPES[i]) for i in sorted(types)]
    # fluid and free air on the same side would be a hydropneumothorax: move the effusion across
    sides = {s["type"]: s["side"] for s in specs}
    for s in specs:
        if s["type"] == "Pleural Effusion" and sides.get("Pneumothorax") == s["side"]:
            s["side"] = "left" if s["side"] == "right" else "right"
    return specs


def _pick_center(region: np.ndarray, radius_px: float, rng: np.random.Generator):
    """A random pixel at least `radius_px` inside `region` (the deepest pixel if none is that deep)."""
    dist = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 3)
    ys, xs = np.nonzero(dist >= min(radius_px, dist.max()))
    i = rng.integers(len(ys))
    return xs[i], ys[i]


def _blob(size: int, cx: float, cy: float, radius: float, rng: np.random.Generator, lobes: int = 4) -> np.ndarray:
    """An irregular soft field (float, peak ~1) made of a few overlapping Gaussians around (cx, cy) in pixels."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    field = np.zeros((size, size), np.float32)
    for _ in range(lobes):
        ox, oy = rng.normal(0, radius * 0.45, 2)
        r = radius * rng.uniform(0.55, 0.9)
        field += np.exp(-((xx - cx - ox) ** 2 + (yy - cy - oy) ** 2) / (2 * r * r))
    return field / max(field.max(), 1e-6)


def draw(spec: dict, anat: Anatomy, layers: dict, rng: np.random.Generator, size: int, strength: float):
    """Draw one finding into `layers` in place; returns (mask bool HxW, measurements dict, regions override|None)."""
    drawer = _DRAWERS.get(spec["type"])
    if drawer is None:
        raise ValueError(f"cannot draw finding type {spec['type']!r}")
    return drawer(_Canvas(spec, anat, layers, rng, size, strength))


@dataclass
class _Canvas:
    """One finding being drawn: its spec, the anatomy it sits in, the layers it paints, and the pixel grid."""

    spec: dict
    anat: Anatomy
    layers: dict
    rng: np.random.Generator
    size: int
    strength: float

    def __post_init__(self):
        self.yy, self.xx = np.mgrid[0:self.size, 0:self.size].astype(np.float32) / self.size
        self.px = self.size / 256.0  # blur widths are tuned at 256 px


def _cardiomegaly(c: _Canvas):
    """The heart was already drawn large (geometry ctr); the mask is the heart."""
    anat, m = c.anat, c.anat.masks
    return m["heart"].copy(), {"cardiothoracic_ratio": anat.measurements["cardiothoracic_ratio"]}, None


def _pleural_effusion(c: _Canvas):
    spec, anat, layers, strength = c.spec, c.anat, c.layers, c.strength
    S, g, m, yy = c.size, c.anat.geometry, c.anat.masks, c.yy
    xx, px, side, opacity = c.xx, c.px, c.spec["side"], c.layers["opacity"]
    meas: dict = {}
    lung = m[f"{side} lung"]
    s = side_sign(side)
    off = np.clip((xx - g.cx) * s, g.medial, None)
    rel = np.clip((off - g.medial) / (g.half_width - g.medial), 0, 1)
    dome, cp = g.dome_y[side], g.cp_y[side]
    level = {"small": cp - 0.035, "moderate": dome - 0.08, "large": dome - 0.20}[spec["size"]]
    meniscus = level - {"small": 0.02, "moderate": 0.06, "large": 0.08}[spec["size"]] * rel ** 2
    mask = lung & (yy > meniscus)
    # layering fluid: denser towards the base, merging with the diaphragm below
    depth = np.clip((yy - meniscus) / 0.05, 0, 1)
    layer = _blur(mask, 1.2 * px) * (0.6 + 0.4 * depth)
    below = (yy > dome_curve(g, side, off) - 0.01) & anat.fields[side] & ~m["heart"]
    opacity[...] = np.maximum(opacity, strength * 0.45 * np.maximum(layer, _blur(below & (yy > meniscus), 1.5 * px)))
    layers["vessel_keep"] *= 1.0 - 0.8 * _blur(mask, 1.5 * px)  # fluid hides the vessels behind it
    if not mask.any():
        raise RuntimeError(f"{spec['size']} {side} pleural effusion came out empty")
    meas["fluid_top_y"] = round(float(np.flatnonzero(mask.any(1))[0] / S), 3)
    return mask, meas, None


def _pneumothorax(c: _Canvas):
    spec, anat, layers, strength = c.spec, c.anat, c.layers, c.strength
    S, g, m, px = c.size, c.anat.geometry, c.anat.masks, c.px
    side = c.spec["side"]
    meas: dict = {}
    outline = anat.hemithorax[side]
    s = side_sign(side)
    anchor = np.array([g.cx + s * g.medial, g.dome_y[side]])  # the lung collapses towards the hilum / base
    scale = {"small": 0.86, "large": 0.68}[spec["size"]]
    collapsed = anchor + scale * (outline - anchor)
    inner = fill(collapsed, S)
    mask = m[f"{side} lung"] & ~inner
    layers["vessel_keep"] *= 1.0 - _blur(mask, 0.8 * px)
    layers["extra"] -= strength * 0.06 * _blur(mask, 1.0 * px)
    line = stroke(collapsed, S, 1.0 / S) & (_blur(mask, 1.5 * px) > 0.15) & m[f"{side} lung"]
    layers["extra"] += strength * 0.16 * _blur(line, 0.5 * px)
    rows = np.flatnonzero(mask.any(1))
    meas["apical_gap_cm"] = round(float((np.flatnonzero(inner.any(1))[0] - rows[0]) / S * CM_PER_IMAGE), 1)
    return mask, meas, None


def _airspace_opacity(c: _Canvas):
    spec, rng, strength, S = c.spec, c.rng, c.strength, c.size
    m, px, t, opacity = c.anat.masks, c.px, c.spec["type"], c.layers["opacity"]
    meas: dict = {}
    region = m[spec["location"]]
    radius = (0.07 if t == "Consolidation" else 0.06) * S
    cx, cy = _pick_center(region, radius * 0.6, rng)
    field = _blob(S, cx, cy, radius, rng, lobes=5)
    mask = (field > 0.35) & region
    if not mask.any():
        raise RuntimeError(f"{t} in {spec['location']} came out empty")
    amp = {"Consolidation": 0.30, "Lung Opacity": 0.17}[t] * (1.0 if spec["size"] in ("dense", "moderate") else 0.75)
    soft = _blur(mask, 2.0 * px) * np.clip(field * 1.5, 0, 1)
    if t == "Consolidation":  # air bronchograms: short dark branches inside the opacity
        br = np.zeros((S, S), np.float32)
        for _ in range(3):
            a = rng.uniform(0, 2 * np.pi)
            ln = radius * rng.uniform(0.4, 0.8)
            cv2.line(br, (int(cx), int(cy)), (int(cx + ln * np.cos(a)), int(cy + ln * np.sin(a))), 1.0,
                     max(1, int(px)), cv2.LINE_AA)
        soft = soft * (1 - 0.5 * _blur(br, 0.6 * px) * mask)
    opacity[...] = np.maximum(opacity, strength * amp * soft)
    return mask, meas, None


def _lung_lesion(c: _Canvas):
    spec, rng, strength, S = c.spec, c.rng, c.strength, c.size
    m, px, side, opacity = c.anat.masks, c.px, c.spec["side"], c.layers["opacity"]
    meas: dict = {}
    region = m[spec["location"]]
    r = spec["diameter_mm"] / 10.0 / CM_PER_IMAGE / 2 * S
    cx, cy = _pick_center(region, r + 2, rng)
    mask = ellipse(S, (cx / S, cy / S), (r / S, r / S * rng.uniform(0.85, 1.0)), rng.uniform(0, 180)) & m[f"{side} lung"]
    edge = 0.6 if spec["size"] == "nodule" else 1.2
    opacity[...] = np.maximum(opacity, strength * 0.30 * _blur(mask, edge * px))
    meas["diameter_mm"] = spec["diameter_mm"]
    return mask, meas, None


def _atelectasis(c: _Canvas):
    spec, rng, strength, S = c.spec, c.rng, c.strength, c.size
    m, px, side, opacity = c.anat.masks, c.px, c.spec["side"], c.layers["opacity"]
    meas: dict = {}
    mask = np.zeros((S, S), bool)
    for sd in (SIDES if side == "bilateral" else (side,)):
        base = m[f"{sd} lung base"]
        thick = 0.010 if spec["size"] == "linear" else 0.02
        cx, cy = _pick_center(base, thick * S + 2, rng)
        mask |= ellipse(S, (cx / S, cy / S), (0.08, thick), rng.uniform(-12, 12)) & base
    opacity[...] = np.maximum(opacity, strength * 0.16 * _blur(mask, 1.2 * px))
    return mask, meas, None


def _edema(c: _Canvas):
    spec, anat, layers, rng = c.spec, c.anat, c.layers, c.rng
    strength, S, m, yy = c.strength, c.size, c.anat.masks, c.yy
    xx, px, opacity = c.xx, c.px, c.layers["opacity"]
    meas: dict = {}
    reach = {"mild": 0.16, "moderate": 0.21, "severe": 0.27}[spec["size"]]
    field = np.zeros((S, S), np.float32)
    for sd in SIDES:
        hx, hy = anat.hilum[sd]
        field = np.maximum(field, np.exp(-(((xx - hx) / reach) ** 2 + ((yy - hy) / (reach * 1.2)) ** 2)))
    mask = (field > 0.35) & m["lung"]
    amp = {"mild": 0.16, "moderate": 0.21, "severe": 0.27}[spec["size"]]
    # interstitial texture: the haze is patchy, not a smooth glow
    patchy = 0.75 + 0.25 * np.tanh(_blur(rng.normal(0, 1, (S, S)), 1.5 * px) * 3)
    opacity[...] = np.maximum(opacity, strength * amp * field * patchy * _blur(m["lung"], 1.5 * px))
    layers["vessel_keep"] *= 1.0 - 0.5 * _blur(mask, 3 * px)  # vessels blur into the haze
    return mask, meas, None


def _support_device(c: _Canvas):
    spec, layers, rng, S = c.spec, c.layers, c.rng, c.size
    g, m, yy, px = c.anat.geometry, c.anat.masks, c.yy, c.px
    meas: dict = {}
    sub = spec["subtype"]
    if sub == "endotracheal tube":
        tip_y = g.carina_y - rng.uniform(0.07, 0.12)
        pts = np.array([[g.cx, 0.0], [g.cx, tip_y]])
        mask = stroke(pts, S, 0.016) & m["trachea"] & (yy <= tip_y)
        meas["tip_to_carina_cm"] = round(float((g.carina_y - tip_y) * CM_PER_IMAGE), 1)
        tip, region = (g.cx, tip_y - 0.005), "trachea"
    elif sub == "central venous catheter":
        tip_y = g.carina_y + rng.uniform(0.03, 0.06)
        x_svc = g.cx - g.medial + 0.015
        pts = np.array([[g.cx - 0.10, 0.0], [g.cx - 0.08, 0.10], [x_svc, g.apex_y + 0.06], [x_svc, tip_y]])
        mask = stroke(pts, S, 0.008)
        tip, region = (x_svc, tip_y - 0.005), "cardiomediastinum"
    else:
        gen_c = (g.cx + 0.24, g.clavicle_y + 0.06)
        box = ellipse(S, gen_c, (0.045, 0.03), rng.uniform(-20, 20))
        tip = (g.cx + 0.05, max(g.dome_y.values()) - 0.04)
        lead = np.array([[gen_c[0], gen_c[1]], [g.cx + 0.08, g.clavicle_y + 0.02], [g.cx - 0.02, g.carina_y + 0.05],
                         [g.cx - 0.04, g.carina_y + 0.16], tip])
        mask = box | stroke(lead, S, 0.008)
        region = "heart"
    # metal is far denser than anything else in the chest
    layers["devices"] = np.maximum(layers["devices"], 0.45 * _blur(mask, 0.5 * px))
    meas["tip_xy"] = [round(float(tip[0]), 3), round(float(tip[1]), 3)]
    return mask, meas, [region]


_DRAWERS = {"Cardiomegaly": _cardiomegaly, "Pleural Effusion": _pleural_effusion, "Pneumothorax": _pneumothorax,
            "Consolidation": _airspace_opacity, "Lung Opacity": _airspace_opacity, "Lung Lesion": _lung_lesion,
            "Atelectasis": _atelectasis, "Edema": _edema, "Support Devices": _support_device}


_LUNG_REGIONS = tuple(f"{s} {z}" for s in SIDES for z in ZONES + ("apical zone lung",)) + LOBES["right"] + LOBES["left"]


def regions_of(mask: np.ndarray, masks: dict, min_share: float = 0.03) -> list[str]:
    """CXAS regions holding at least `min_share` of the mask, largest share first (lungs, zones, lobes, heart)."""
    total = max(int(mask.sum()), 1)
    cands = ("right lung", "left lung") + _LUNG_REGIONS + ("heart",)
    shares = [(int((mask & masks[n]).sum()) / total, n) for n in cands]
    return [n for share, n in sorted(shares, key=lambda p: -p[0]) if share >= min_share]
