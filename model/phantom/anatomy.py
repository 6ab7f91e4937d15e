"""Phantom anatomy: a seeded thorax geometry, its CXAS-named masks and the normal radiograph layers.

Coordinates: x, y are fractions of the image width/height, y down. Radiological convention: the patient's right
is the image's LEFT, so the patient's right lung sits at x < 0.5. `side_sign(side)` turns "right"/"left" into the
direction of the patient's side on the image (-1 = towards x = 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

SIDES = ("right", "left")


def side_sign(side: str) -> int:
    if side not in SIDES:
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    return -1 if side == "right" else 1


@dataclass
class Geometry:
    """Per-patient shape parameters (fractions of the image side)."""
    cx: float            # body midline
    half_width: float    # lateral lung border offset from the midline at its widest
    apex_y: float        # top of the lung apices
    dome_y: dict         # side -> top of the hemidiaphragm dome
    cp_y: dict           # side -> costophrenic angle height
    medial: float        # half-width of the mediastinum between the lungs
    carina_y: float
    ctr: float           # target cardiothoracic ratio (heart width / thoracic width)
    clavicle_y: float    # medial end height of the clavicles
    rib_phase: float
    rib_spacing: float


def sample_geometry(rng: np.random.Generator, ctr: float) -> Geometry:
    dome_r = rng.uniform(0.69, 0.75)
    dome_l = dome_r + rng.uniform(0.01, 0.035)  # the right hemidiaphragm usually sits higher (liver)
    cp_drop = rng.uniform(0.06, 0.09)
    apex = rng.uniform(0.10, 0.14)
    return Geometry(
        cx=0.5 + rng.normal(0, 0.008), half_width=rng.uniform(0.33, 0.37), apex_y=apex,
        dome_y={"right": dome_r, "left": dome_l}, cp_y={"right": dome_r + cp_drop, "left": dome_l + cp_drop},
        medial=rng.uniform(0.045, 0.06), carina_y=apex + rng.uniform(0.19, 0.23), ctr=ctr,
clavicle_y=apex + rng.uniform(0.05, 0.08),
        rib_phase=rng.uniform(0, 1), rib_spacing=rng.uniform(0.052, 0.060))


def _poly(points: np.ndarray, size: int) -> np.ndarray:
    return np.round(points * size).astype(np.int32).reshape(-1, 1, 2)


def fill(points: np.ndarray, size: int) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [_poly(points, size)], 1)
    return m.astype(bool)


def stroke(points: np.ndarray, size: int, width: float) -> np.ndarray:
    """A polyline of `width` (fraction of the image side) as a mask."""
    m = np.zeros((size, size), np.uint8)
    cv2.polylines(m, [_poly(points, size)], False, 1, max(1, int(round(width * size))), cv2.LINE_8)
    return m.astype(bool)


def ellipse(size: int, center, axes, angle_deg: float = 0.0) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    c = (int(round(center[0] * size)), int(round(center[1] * size)))
    a = (max(1, int(round(axes[0] * size))), max(1, int(round(axes[1] * size))))
    cv2.ellipse(m, c, a, angle_deg, 0, 360, 1, -1)
    return m.astype(bool)


def dome_curve(g: Geometry, side: str, x_off: np.ndarray) -> np.ndarray:
    """Hemidiaphragm height at lateral offset `x_off` (from the midline) on `side`: a dome peaking at ~45%."""
    w, top, cp = g.half_width, g.dome_y[side], g.cp_y[side]
    peak = 0.45 * w
    lat = np.clip((x_off - peak) / (w - peak), 0, None)
    med = np.clip((peak - x_off) / (peak - g.medial), 0, None)
    return top + (cp - top) * lat ** 2 + 0.03 * med ** 2


def lung_outline(g: Geometry, side: str, n: int = 40) -> np.ndarray:
    """The hemithorax lung field outline as (N, 2) points: apex -> lateral wall -> dome -> medial border."""
    s, w = side_sign(side), g.half_width
    t = np.linspace(0, 1, n)
    # lateral wall: rounded apex widening quickly to the widest point, then slightly in to the costophrenic angle
    lat_off = 0.10 + (w - 0.10) * np.sin(np.clip(t * 1.6, 0, 1) * np.pi / 2) ** 0.7 - 0.015 * np.clip(t - 0.7, 0, 1)
    lat_y = g.apex_y + 0.02 + t * (g.cp_y[side] - g.apex_y - 0.02)
    # diaphragm from the costophrenic angle to the medial end
    d_off = np.linspace(lat_off[-1], g.medial, n)
    d_y = dome_curve(g, side, d_off)
    # medial border straight up to the apex
    m_y = np.linspace(d_y[-1], g.apex_y + 0.05, n // 2)
    m_off = np.full_like(m_y, g.medial)
    # apex cap from the medial top to the lateral start
    a = np.linspace(0, np.pi, n // 2)
    a_off = g.medial + (0.10 - g.medial) * (1 - np.cos(a)) / 2
    a_y = g.apex_y + 0.05 - 0.05 * np.sin(a)
    off = np.concatenate([lat_off, d_off, m_off, a_off])
    y = np.concatenate([lat_y, d_y, m_y, a_y])
    return np.stack([g.cx + s * off, y], axis=1)


@dataclass
class Anatomy:
    geometry: Geometry
    masks: dict  # CXAS name -> bool HxW
    hemithorax: dict = field(default_factory=dict)  # side -> lung outline points (before the heart cut-out)
    fields: dict = field(default_factory=dict)  # side -> filled hemithorax outline (bool HxW)
    airway: np.ndarray | None = None  # trachea + main bronchi (bool HxW), drawn as air
    hilum: dict = field(default_factory=dict)  # side -> (x, y)
    measurements: dict = field(default_factory=dict)


def build_anatomy(g: Geometry, size: int) -> Anatomy:
    S = size
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    outlines = {side: lung_outline(g, side) for side in SIDES}
    fields = {side: fill(outlines[side], S) for side in SIDES}

    # thoracic width: between the outer lung borders (what a radiologist measures the heart against)
    both = fields["right"] | fields["left"]
    cols = np.flatnonzero(both.any(0))
    thorax_w = (cols[-1] - cols[0] + 1) / S

    heart = _heart(g, S, thorax_w)
    # aortic knob bulging into the left lung's medial border above the left hilum
    arch = ellipse(S, (g.cx + g.medial + 0.012, g.carina_y - 0.045), (0.032, 0.026))
    arch |= ellipse(S, (g.cx + 0.015, g.carina_y - 0.06), (0.05, 0.018))
    lungs = {side: fields[side] & ~heart & ~arch for side in SIDES}
    masks: dict[str, np.ndarray] = {"heart": heart, "aortic arch": arch, "right lung": lungs["right"],
                                    "left lung": lungs["left"]}
    for side in SIDES:
        masks.update(_lung_divisions(g, side, lungs[side], yy, xx))
    airway = _airways(g, S, masks, yy, xx)
    masks.update(_mediastinum(g, S, outlines, fields, heart | arch, yy, xx))
    masks.update(_diaphragm_and_bones(g, S, yy, xx))
    masks.update(_groups(masks, heart))

    hw_px = np.flatnonzero(heart.any(0))
    heart_w = (hw_px[-1] - hw_px[0] + 1) / S
    hilum = {side: (g.cx + side_sign(side) * (g.medial + 0.03), g.carina_y + 0.07) for side in SIDES}
    meas = {"cardiothoracic_ratio": round(float(heart_w / thorax_w), 3), "heart_width_px": int(round(heart_w * S)),
            "thoracic_width_px": int(round(thorax_w * S))}
    return Anatomy(geometry=g, masks=masks, hemithorax=outlines, fields=fields, airway=airway, hilum=hilum,
                   measurements=meas)


def _heart_floor(g: Geometry) -> float:
    return max(g.dome_y.values()) + 0.045


def _heart(g: Geometry, S: int, thorax_w: float) -> np.ndarray:
    """A pear-shaped silhouette widening from the mediastinum down to the diaphragm; its widest extent is
    ctr * thoracic width, about a third right of the midline (right atrium) and two thirds left (left ventricle)."""
    hw = g.ctr * thorax_w
    right_border, left_border = g.cx - 0.36 * hw, g.cx + 0.64 * hw
    floor, top = _heart_floor(g), g.carina_y + 0.10
    t = np.linspace(0, 1, 40)
    y = top + t * (floor - top)
    left_x = g.cx + g.medial + (left_border - g.cx - g.medial) * np.sin(np.clip(t * 1.25, 0, 1) * np.pi / 2) ** 0.9
    right_x = g.cx - g.medial - (g.cx - g.medial - right_border) * np.sin(np.clip(t * 1.15, 0, 1) * np.pi / 2) ** 1.3
    return fill(np.concatenate([np.stack([left_x, y], 1), np.stack([right_x[::-1], y[::-1]], 1)]), S)


def _lung_divisions(g: Geometry, side: str, lung: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> dict:
    """Zones (thirds of the lung's height; the apical zone is the part above the clavicle, inside the upper zone)
    and approximate lobes on a frontal view: horizontal fissure (right) and an oblique lateral-high to medial-low
    line separating the lower lobe (lateral and basal) from the middle lobe / lingula."""
    S = lung.shape[0]
    rows = np.flatnonzero(lung.any(1))
    top, bot = rows[0] / S, (rows[-1] + 1) / S
    h = bot - top
    masks = {f"{side} upper zone lung": lung & (yy < top + h / 3),
             f"{side} mid zone lung": lung & (yy >= top + h / 3) & (yy < top + 2 * h / 3),
             f"{side} lung base": lung & (yy >= top + 2 * h / 3),
             f"{side} apical zone lung": lung & (yy < min(g.clavicle_y + 0.01, top + h / 3))}
    off = (xx - g.cx) * side_sign(side)  # lateral offset, grows towards the patient's side
    rel = np.clip((off - g.medial) / (g.half_width - g.medial), 0, 1)  # 0 medial .. 1 lateral
    oblique = top + h * (0.45 + 0.45 * (1 - rel))  # lateral: 45% down, medial: 90% down
    if side == "right":
        fissure = top + 0.45 * h
        masks["lung upper lobe right"] = lung & (yy < fissure)
        masks["lung middle lobe right"] = lung & (yy >= fissure) & (yy < oblique)
        masks["lung lower lobe right"] = lung & (yy >= fissure) & (yy >= oblique)
    else:
        masks["lung upper lobe left"] = lung & (yy < oblique)
        masks["lung lower lobe left"] = lung & (yy >= oblique)
    return masks


def _airways(g: Geometry, S: int, masks: dict, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Trachea and main bronchi (air), the carina at the bifurcation; adds their masks, returns the airway."""
    tw = 0.021
    trachea_pts = np.array([[g.cx - tw, 0.0], [g.cx + tw, 0.0], [g.cx + tw, g.carina_y], [g.cx - tw, g.carina_y]])
    masks["trachea"] = fill(trachea_pts, S)
    bronchi = stroke(np.array([[g.cx, g.carina_y - 0.01], [g.cx - 0.07, g.carina_y + 0.05]]), S, 0.026)
    bronchi |= stroke(np.array([[g.cx, g.carina_y - 0.01], [g.cx + 0.08, g.carina_y + 0.07]]), S, 0.024)
    near = ((xx - g.cx) ** 2 + (yy - g.carina_y) ** 2) < 0.04 ** 2
    masks["tracheal bifurcation"] = (masks["trachea"] | bronchi) & near
    return masks["trachea"] | bronchi


def _mediastinum(g: Geometry, S: int, outlines: dict, fields: dict, heart_and_arch: np.ndarray, yy: np.ndarray,
                 xx: np.ndarray) -> dict:
    """The space between the lungs from the apices to the diaphragm, plus the heart and arch."""
    hull_pts = cv2.convexHull(np.round(np.concatenate([outlines["right"], outlines["left"]]) * S).astype(np.int32))
    hull = np.zeros((S, S), np.uint8)
    cv2.fillPoly(hull, [hull_pts], 1)
    between = hull.astype(bool) & ~fields["right"] & ~fields["left"] & (yy >= g.apex_y) & (yy < _heart_floor(g))
    between &= np.abs(xx - g.cx) < g.medial + 0.02
    cardiomed = between | heart_and_arch
    return {"cardiomediastinum": cardiomed, "upper mediastinum": cardiomed & (yy < g.carina_y),
            "lower mediastinum": cardiomed & (yy >= g.carina_y)}


def _diaphragm_and_bones(g: Geometry, S: int, yy: np.ndarray, xx: np.ndarray) -> dict:
    masks = {}
    for side in SIDES:  # hemidiaphragms: a band under each dome across the lung's width
        s = side_sign(side)
        off = np.linspace(g.medial, g.half_width, 30)
        top = dome_curve(g, side, off)
        pts = np.concatenate([np.stack([g.cx + s * off, top], 1), np.stack([g.cx + s * off[::-1], top[::-1] + 0.035], 1)])
        masks[f"{side} hemidiaphragm"] = fill(pts, S)
    for side in SIDES:  # clavicles: gently S-shaped bars from the sternal end up and out to the shoulder
        s = side_sign(side)
        t = np.linspace(0, 1, 20)
        pts = np.stack([g.cx + s * (0.05 + 0.33 * t), g.clavicle_y - 0.065 * t + 0.012 * np.sin(t * np.pi * 2)], 1)
        masks[f"clavicle {side}"] = stroke(pts, S, 0.026)
    # thoracic spine: 12 vertebral bodies from above the apices to just below the domes
    top, bot = g.apex_y - 0.04, max(g.dome_y.values()) + 0.06
    step = (bot - top) / 12
    for k in range(12):
        y0 = top + k * step
        masks[f"vertebrae T{k + 1}"] = (np.abs(xx - g.cx) < 0.032 + 0.0015 * k) & (yy >= y0 + 0.1 * step) & \
            (yy < y0 + step)
    masks["thoracic spine"] = (np.abs(xx - g.cx) < 0.05) & (yy >= top) & (yy < bot)
    return masks


def _groups(masks: dict, heart: np.ndarray) -> dict:
    """CXAS group masks where they are plain unions (names that are also class names keep the class mask)."""
    lung = masks["right lung"] | masks["left lung"]
    groups = {"lung": lung, "lung halves": lung, "lung zones": lung, "lung lobes": lung}
    for zone in ("upper zone lung", "mid zone lung", "lung base", "apical zone lung"):
        groups[zone] = masks[f"right {zone}"] | masks[f"left {zone}"]
    groups["diaphragm"] = masks["right hemidiaphragm"] | masks["left hemidiaphragm"]
    groups["clavicles"] = masks["clavicle right"] | masks["clavicle left"]
    groups["heart region"] = heart
    groups["mediastinum"] = masks["cardiomediastinum"]
    return groups


def _blur(a: np.ndarray, sigma_px: float) -> np.ndarray:
    return cv2.GaussianBlur(a.astype(np.float32), (0, 0), max(sigma_px, 0.3))


def _vessel_tree(canvas: np.ndarray, rng: np.random.Generator, start, angle: float, length: float, width: float,
                 depth: int, size: int) -> None:
    """Recursively draw a tapering branching vessel (angles in radians, image coordinates)."""
    end = (start[0] + length * np.cos(angle), start[1] + length * np.sin(angle))
    p0 = (int(start[0] * size), int(start[1] * size))
    p1 = (int(end[0] * size), int(end[1] * size))
    cv2.line(canvas, p0, p1, float(0.5 + 0.5 * width / 0.012), max(1, int(round(width * size))), cv2.LINE_AA)
    if depth == 0:
        return
    for turn in (-1, 1):
        _vessel_tree(canvas, rng, end, angle + turn * rng.uniform(0.2, 0.55), length * rng.uniform(0.6, 0.8),
                     width * 0.7, depth - 1, size)


def render_normal(anat: Anatomy, rng: np.random.Generator, size: int) -> dict:
    """Brightness layers (float32 HxW, 0 = black) of a normal frontal radiograph; pathology edits them later."""
    S, g, m = size, anat.geometry, anat.masks
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    px = S / 256.0  # blur radii are tuned at 256 px

    # torso: neck, sloping shoulders, flanks; thicker (brighter) in the middle
    body_pts = np.array([[g.cx - 0.09, 0.0], [g.cx + 0.09, 0.0], [g.cx + 0.12, 0.06], [g.cx + 0.44, 0.13],
                         [g.cx + 0.47, 0.35], [g.cx + 0.45, 1.0], [g.cx - 0.45, 1.0], [g.cx - 0.47, 0.35],
                         [g.cx - 0.44, 0.13], [g.cx - 0.12, 0.06]])
    body = _blur(fill(body_pts, S), 2.5 * px)
    img = 0.04 + body * (0.36 + 0.12 * np.clip(1 - ((xx - g.cx) / 0.46) ** 2, 0, 1))

    # abdomen under the domes is soft-tissue dense; a gastric air bubble sits under the left hemidiaphragm
    below = np.zeros((S, S), bool)
    for side in SIDES:
        s = side_sign(side)
        off = np.clip((xx - g.cx) * s, 0, None)
        below |= (off > 0) & (yy > dome_curve(g, side, np.maximum(off, g.medial)))
    img += 0.16 * _blur(below & ~m["heart"], 2 * px) * body
    bubble = ellipse(S, (g.cx + 0.17, g.dome_y["left"] + 0.06), (0.06, 0.03)) & below
    img -= 0.14 * _blur(bubble, 2 * px)

    # lungs: aerated fields, slightly less dark at the apices where soft tissue overlies them
    lung = m["lung"]
    # (soft tissue of the shoulders over the apices, breasts and diaphragm curvature over the bases)
    aeration = (0.27 + 0.06 * np.clip((yy - g.apex_y) / 0.25, 0, 1)
                - 0.05 * np.clip((yy - g.carina_y - 0.15) / 0.25, 0, 1) * np.clip(np.abs(xx - g.cx) / g.half_width, 0, 1))
    lung_soft = _blur(lung, 1.8 * px)
    img -= aeration * lung_soft

    # vessels: trees fanning out from each hilum, sparse towards the periphery
    vessels = np.zeros((S, S), np.float32)
    for side in SIDES:
        s = side_sign(side)
        hx, hy = anat.hilum[side]
        for base in np.linspace(-1.35, 1.2, 9):  # from up-and-out to down-and-out
            ang = base + rng.normal(0, 0.1)
            direction = np.arctan2(np.sin(ang), s * np.cos(ang))
            _vessel_tree(vessels, rng, (hx, hy), direction, rng.uniform(0.05, 0.07), 0.010, 4, S)
    vessels = _blur(vessels, 1.0 * px) * lung_soft
    # hila: the pulmonary arteries and bronchi bunch up beside the mediastinum
    for side in SIDES:
        hx, hy = anat.hilum[side]
        img += 0.07 * _blur(ellipse(S, (hx, hy), (0.03, 0.05)), 3 * px) * lung_soft
    # breast shadows over the lower lateral lung fields in about half of the phantoms
    if rng.random() < 0.5:
        for side in SIDES:
            c = (g.cx + side_sign(side) * 0.6 * g.half_width, g.dome_y[side] - 0.02)
            img += 0.05 * _blur(ellipse(S, c, (0.16, 0.10)), 6 * px) * body

    # ribs: posterior arcs leave the spine, rise a little and curve down along the chest wall
    ribs = np.zeros((S, S), np.float32)
    for side in SIDES:
        s = side_sign(side)
        for k in range(10):
            y0 = g.apex_y + 0.02 + (k + g.rib_phase * 0.3) * g.rib_spacing
            t = np.linspace(0, 1, 24)
            off = 0.04 + (g.half_width + 0.02) * np.sin(t * np.pi / 2)
            y = y0 - 0.02 * np.sin(t * np.pi) + 0.16 * t ** 2.2
            pts = np.stack([g.cx + s * off, y], 1)
            cv2.polylines(ribs, [_poly(pts, S)], False, 1.0, max(1, int(round(0.016 * S))), cv2.LINE_AA)
            # anterior rib: fainter, running down and in from the lateral wall
            t2 = np.linspace(0, 1, 16)
            pts2 = np.stack([g.cx + s * (g.half_width + 0.01 - 0.22 * t2), y0 + 0.05 + 0.08 * t2 + 0.03 * t2 ** 2], 1)
            cv2.polylines(ribs, [_poly(pts2, S)], False, 0.5, max(1, int(round(0.012 * S))), cv2.LINE_AA)
    ribs = _blur(ribs, 0.7 * px) * _blur(anat.fields["right"] | anat.fields["left"], 3 * px)
    ribs *= 1.0 - 0.6 * _blur(m["heart"], 2 * px)  # the dense heart washes out the ribs behind it

    # mediastinum and heart: water density; spine faintly through it; airway darker
    img += 0.07 * _blur(m["cardiomediastinum"], 1.5 * px) + 0.08 * _blur(m["heart"], 1.5 * px)
    img += 0.05 * _blur(m["aortic arch"], 1.0 * px)
    spine = np.zeros((S, S), bool)
    for k in range(1, 13):
        spine |= m[f"vertebrae T{k}"]
    img += 0.035 * _blur(spine, 1.0 * px) * body
    img -= 0.10 * _blur(m["trachea"], 1.0 * px) + 0.05 * _blur(anat.airway & ~m["trachea"], 1.0 * px)
    bones = 0.045 * ribs + 0.13 * _blur(m["clavicle right"] | m["clavicle left"], 0.8 * px)
    return {"base": img.astype(np.float32), "vessels": vessels, "bones": bones.astype(np.float32),
            "body": body, "lung_soft": lung_soft}
