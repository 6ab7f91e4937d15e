"""Geometric derivations: from two lung fields (and optionally a heart) to zones, lobes, mediastinum, trachea,
hemidiaphragms and landmarks (docs/segmentation.md).

Shared by every backend that predicts lung fields, so zones and lobes mean the same thing whichever backend found
the lungs. Conventions (patient's right lung is on the image's LEFT):
- A lung's height runs from its apex row to its lowest row; zone and lobe cuts are fractions of that height
  (`DeriveConfig`), the usual radiological thirds with an apical cap.
- Lobes follow the phantom world's frontal projection: a horizontal fissure on the right, an oblique line from
  high laterally to low medially on both sides.
- The heart is the space between the lungs' medial borders from mid-height down to the cardiophrenic level,
  rounded at the top; cardiomediastinum is a midline band between the lungs plus the heart.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.taxonomy import SUPERCLASSES


@dataclass(frozen=True)
class DeriveConfig:
    apical_end: float = 0.12  # apical zone: the cap above the clavicles, part of the upper zone
    upper_end: float = 1 / 3  # zones are thirds of the lung's height
    mid_end: float = 2 / 3  # below is the lung base (which holds the costophrenic angle)
    horizontal_fissure: float = 0.45  # right upper lobe above it
    oblique_lateral: float = 0.45  # the oblique fissure runs from 45 % down laterally ...
    oblique_medial: float = 0.9  # ... to 90 % down medially; lower lobe below it, middle lobe / lingula above
    heart_height_fraction: float = 0.5  # heart spans the lower half of the space from apex to cardiophrenic angle
    medial_band: float = 0.2  # the medial fifth of a lung's lowest quarter gives the cardiophrenic angle row
    carina_fraction: float = 0.33  # carina sits about a third of the way down the lung fields
    trachea_width: float = 0.065  # of the thoracic width (≈2 cm of ≈30 cm)
    diaphragm_thickness: float = 0.035  # of the image height
    heart_shadow_level: float = 0.35  # a heart border inside a lung field: this far from lung to heart brightness
    heart_shadow_max: float = 0.10  # ... and at most this fraction of the image width lateral of the lung's edge


def _rows(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask.any(axis=1))


def _row_band(mask: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The part of `mask` whose relative row position (0 = its top row, 1 = its bottom row) is in [lo, hi)."""
    rows = _rows(mask)
    out = np.zeros_like(mask)
    if rows.size == 0:
        return out
    top, bottom = rows[0], rows[-1]
    height = max(bottom - top, 1)
    r0 = top + int(round(lo * height))
    r1 = top + int(round(hi * height)) if hi < 1.0 else bottom + 1
    out[r0:r1] = mask[r0:r1]
    return out


def _below_oblique(lung: np.ndarray, medial_is_right: bool, cfg: "DeriveConfig") -> np.ndarray:
    """Pixels below the projected oblique fissure: a line from `oblique_lateral` of the lung's height at its
    lateral border down to `oblique_medial` at its medial border."""
    rows, cols = _rows(lung), np.flatnonzero(lung.any(axis=0))
    top, height = rows[0], max(rows[-1] + 1 - rows[0], 1)
    xx = np.arange(lung.shape[1], dtype=np.float32)
    rel = (xx - cols[0]) / max(cols[-1] - cols[0], 1)  # 0 at the image-left border of this lung
    medialness = rel if medial_is_right else 1 - rel
    line = top + height * (cfg.oblique_lateral + (cfg.oblique_medial - cfg.oblique_lateral) * medialness)
    yy = np.arange(lung.shape[0], dtype=np.float32)[:, None]
    return lung & (yy >= line[None, :])


def _bottom_contour(mask: np.ndarray) -> np.ndarray:
    """For each column, the lowest lung row (-1 where the column has no lung)."""
    h = mask.shape[0]
    any_col = mask.any(axis=0)
    last = h - 1 - np.argmax(mask[::-1], axis=0)
    return np.where(any_col, last, -1)


def cardiophrenic_row(lung: np.ndarray, medial_is_right: bool, band: float) -> int:
    """Row where the lung meets the diaphragm at its medial side (the heart's lower border on that side).
    Only the lung's lowest quarter counts: higher up, the medial columns end where the heart begins."""
    rows = _rows(lung)
    lung = lung.copy()
    lung[: rows[0] + 3 * (rows[-1] - rows[0]) // 4] = False
    cols = np.flatnonzero(lung.any(axis=0))
    n = max(1, int(round(band * cols.size)))
    medial = cols[-n:] if medial_is_right else cols[:n]
    bottom = _bottom_contour(lung)[medial]
    return int(np.median(bottom[bottom >= 0]))


def medial_edges(right: np.ndarray, left: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the right lung's most medial column and the left lung's (carried over rows where one is absent)."""
    w = right.shape[1]
    r_any, l_any = right.any(axis=1), left.any(axis=1)
    r_edge = np.where(r_any, w - 1 - np.argmax(right[:, ::-1], axis=1), -1)
    l_edge = np.where(l_any, np.argmax(left, axis=1), -1)
    re, le = r_edge[rows].astype(float), l_edge[rows].astype(float)
    for arr in (re, le):  # carry the last seen edge so a row with one lung missing keeps the border it had
        valid = arr >= 0
        if valid.any():
            idx = np.where(valid, np.arange(arr.size), 0)
            np.maximum.accumulate(idx, out=idx)
            first = np.argmax(valid)
            idx[:first] = first
            arr[:] = arr[idx]
    return re, le


def _fit_heart(re: np.ndarray, le: np.ndarray, rows: np.ndarray, heart_top: int, heart_bottom: int,
               shape: tuple[int, int], lungs: np.ndarray, widest_fraction: float = 0.8) -> np.ndarray:
    """The space between the lungs' medial borders from `heart_top` to `heart_bottom`, with two corrections:
    below the heart's widest part (`widest_fraction` of its height) a border may not move outwards (there the
    lung is curving away over its dome, not the heart widening), and the top is rounded (the heart's upper
    border is convex, not a horizontal cut). The heart is widest low, near the cardiophrenic angles (right atrium,
    left ventricle): a clamp from 60 % cut off its lower borders on real films and on phantoms alike (phantom
    heart Dice on tuning seeds 0-59: 0.820 at 0.6, 0.832 at 0.7, 0.837 at 0.8, 0.835 at 0.9, 0.832 at 1.0)."""
    h, w = shape
    re, le = re.copy(), le.copy()
    start = np.searchsorted(rows, heart_top + widest_fraction * (heart_bottom - heart_top))
    if start < rows.size:
        re[start:] = np.maximum.accumulate(re[start:])
        le[start:] = np.minimum.accumulate(le[start:])
    heart = np.zeros(shape, bool)
    cols = np.arange(w)[None, :]
    sel = (rows >= heart_top) & (rows <= heart_bottom)
    heart[rows[sel]] = (cols > re[sel, None]) & (cols < le[sel, None])
    ys, xs = np.nonzero(heart)
    if ys.size:
        cx, half_w = (xs.min() + xs.max()) / 2, max((xs.max() - xs.min()) / 2, 1)
        half_h = max(heart_bottom - heart_top, 1) * 0.6
        yy, xx = np.mgrid[0:h, 0:w]
        cap = (yy < heart_top + half_h) & (((xx - cx) / half_w) ** 2 + ((yy - heart_top - half_h) / half_h) ** 2 > 1)
        heart &= ~cap
    return heart & ~lungs


def _heart_borders(image: np.ndarray, right: np.ndarray, left: np.ndarray, re: np.ndarray, le: np.ndarray,
                   rows: np.ndarray, heart_top: int, cfg: "DeriveConfig") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The heart's lateral borders, which on a real film lie inside the lung fields: the aerated lung behind the
    heart keeps the field dark enough to be segmented as lung, so a lung's medial edge runs medial of the faint
    heart border. Per heart row, each border moves from the lung's medial edge outwards while the image
    stays closer to the heart's brightness than to the lung's (`heart_shadow_level` of the way from the lung
    median to the median between the lungs), at most `heart_shadow_max` of the image width, and only on rows where
    that lung is present (below a lung's base the bright tissue is diaphragm, not heart). Returns the moved
    borders and the lung pixels they cover (heart shadow over the lung field). On phantoms, whose heart borders are
    sharp, it moves little (heart Dice on tuning seeds 0-59: 0.837 without it, 0.831 with it); on real films it
    finds the faint borders the lung masks run over (IU CXR7: CTR 0.33 without it, 0.40 with it)."""
    h, w = image.shape
    g = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 2.0)
    sel = rows >= heart_top
    cols = np.arange(w)[None, :]
    between = (cols > re[sel, None]) & (cols < le[sel, None])
    inner = g[rows[sel]][between]
    lungs = right | left
    if inner.size == 0 or not lungs.any():
        return re, le, np.zeros((h, w), bool)
    lung_level, heart_level = float(np.median(g[lungs])), float(np.median(inner))
    if heart_level <= lung_level:
        return re, le, np.zeros((h, w), bool)
    def local_threshold(lung_row: np.ndarray, g_row: np.ndarray) -> float:
        # the lung's own brightness on this row (lung fields are paler at the bases and behind ribs)
        level = min(float(np.median(g_row[lung_row])), heart_level) if lung_row.any() else lung_level
        return level + cfg.heart_shadow_level * (heart_level - level)

    cap = int(round(cfg.heart_shadow_max * w))
    out_r, out_l = np.zeros(rows.size), np.zeros(rows.size)  # how far each border moves outwards, per row
    for i in np.flatnonzero(sel):
        y = rows[i]
        if right[y].any() and re[i] >= 0:
            t, x = local_threshold(right[y], g[y]), int(re[i])
            while re[i] - x < cap and x >= 0 and right[y, x] and g[y, x] >= t:
                x -= 1
            out_r[i] = re[i] - x
        if left[y].any() and le[i] >= 0:
            t, x = local_threshold(left[y], g[y]), int(le[i])
            while x - le[i] < cap and x < w and left[y, x] and g[y, x] >= t:
                x += 1
            out_l[i] = x - le[i]
    # A heart border is smooth: a single row reaching further along a vessel or a rib is not the heart.
    k = 5
    out_r = np.array([np.median(out_r[max(0, i - k // 2):i + k // 2 + 1]) for i in range(rows.size)])
    out_l = np.array([np.median(out_l[max(0, i - k // 2):i + k // 2 + 1]) for i in range(rows.size)])
    new_re, new_le = re - np.round(out_r), le + np.round(out_l)
    shadow = np.zeros((h, w), bool)
    cols = np.arange(w)
    for i in np.flatnonzero(sel):
        shadow[rows[i]] = ((cols > new_re[i]) & (cols <= re[i])) | ((cols >= le[i]) & (cols < new_le[i]))
    re, le = new_re, new_le
    shadow &= right | left
    return re, le, shadow


def derive_regions(right: np.ndarray, left: np.ndarray, image: np.ndarray | None = None,
                   heart: np.ndarray | None = None, cfg: DeriveConfig = DeriveConfig()) -> tuple[dict, dict]:
    """right, left: bool H×W lung fields (patient's right = image left). image: float32 H×W in [0, 1] (for the
    trachea; without it the trachea is centred on the mediastinum). heart: bool H×W from a backend that predicts
    it, else derived. Returns (masks by CXAS name, landmarks in pixel coordinates)."""
    if right.shape != left.shape:
        raise ValueError(f"lung masks differ in shape: right {right.shape}, left {left.shape}")
    if not right.any() or not left.any():
        raise ValueError("both lung fields must be non-empty to derive regions")
    masks: dict[str, np.ndarray] = {"right lung": right, "left lung": left}
    masks.update(_zones_and_lobes(right, left, cfg))
    mediastinum, marks = _heart_and_mediastinum(right, left, image, heart, cfg)
    masks.update(mediastinum)
    masks.update(_airway(right, left, image, marks, cfg))
    masks.update(_hemidiaphragms(right, left, cfg))
    landmarks = {"lung_top_row": marks["top"], "heart_top_row": marks["heart_top"],
                 "heart_bottom_row": marks["heart_bottom"],
                 "cardiophrenic_rows": {"right": marks["cp_right"], "left": marks["cp_left"]},
                 "carina_row": marks["carina"], "thoracic_width_px": marks["thorax_w"]}
    return masks, landmarks


def _zones_and_lobes(right: np.ndarray, left: np.ndarray, cfg: DeriveConfig) -> dict[str, np.ndarray]:
    """Zones as fractions of each lung's height; lobes by the projected fissures."""
    masks = {}
    for side, lung in (("right", right), ("left", left)):
        masks[f"{side} apical zone lung"] = _row_band(lung, 0.0, cfg.apical_end)
        masks[f"{side} upper zone lung"] = _row_band(lung, 0.0, cfg.upper_end)
        masks[f"{side} mid zone lung"] = _row_band(lung, cfg.upper_end, cfg.mid_end)
        masks[f"{side} lung base"] = _row_band(lung, cfg.mid_end, 1.0)
    below_oblique_r = _below_oblique(right, True, cfg)
    below_oblique_l = _below_oblique(left, False, cfg)
    below_horizontal = right & ~_row_band(right, 0.0, cfg.horizontal_fissure)
    masks["lung upper lobe right"] = right & ~below_horizontal
    masks["lung middle lobe right"] = below_horizontal & ~below_oblique_r
    masks["lung lower lobe right"] = below_horizontal & below_oblique_r
    masks["lung upper lobe left"] = left & ~below_oblique_l
    masks["lung lower lobe left"] = below_oblique_l
    return masks


def _heart_and_mediastinum(right: np.ndarray, left: np.ndarray, image: np.ndarray | None, heart: np.ndarray | None,
                           cfg: DeriveConfig) -> tuple[dict[str, np.ndarray], dict]:
    """The heart (given, or the space between the lungs' medial borders), the cardiomediastinum split at the carina,
    and the landmarks the airway needs."""
    h, w = right.shape
    r_rows, l_rows = _rows(right), _rows(left)
    top = int(min(r_rows[0], l_rows[0]))
    cp_right = cardiophrenic_row(right, True, cfg.medial_band)
    cp_left = cardiophrenic_row(left, False, cfg.medial_band)
    heart_bottom = max(cp_right, cp_left)
    rows = np.arange(top, heart_bottom + 1)
    re, le = medial_edges(right, left, rows)
    cols = np.arange(w)[None, :]
    cardiomed = np.zeros((h, w), bool)
    cardiomed[rows] = (cols > re[:, None]) & (cols < le[:, None])
    heart_top = int(round(heart_bottom - cfg.heart_height_fraction * (heart_bottom - top)))
    if heart is None:
        hre, hle, shadow = re, le, np.zeros((h, w), bool)
        if image is not None:
            hre, hle, shadow = _heart_borders(image, right, left, re, le, rows, heart_top, cfg)
        heart = _fit_heart(hre, hle, rows, heart_top, heart_bottom, (h, w), (right | left) & ~shadow)
    # The mediastinum proper is a band about the midline: wider gaps between apices and domes are chest wall.
    mid_rows = (rows >= heart_top - (heart_bottom - heart_top) // 2) & (rows < heart_top)
    centre_x = float(np.median(((re + le) / 2)[mid_rows])) if mid_rows.any() else float(np.median((re + le) / 2))
    half = 0.5 * float(np.median((le - re)[mid_rows])) + 0.02 * w if mid_rows.any() else 0.1 * w
    cardiomed &= np.abs(np.arange(w) - centre_x)[None, :] <= half
    carina = int(round(top + cfg.carina_fraction * (heart_bottom - top)))
    cardiomed |= heart
    upper, lower = cardiomed.copy(), cardiomed.copy()
    upper[carina:] = False
    lower[:carina] = False
    # Thoracic width from the lungs' outer borders (inner rib margins).
    r_outer = np.where(right.any(axis=1), np.argmax(right, axis=1), w)
    l_outer = np.where(left.any(axis=1), w - 1 - np.argmax(left[:, ::-1], axis=1), -1)
    thorax_w = float(np.max(l_outer - r_outer)) if (l_outer >= 0).any() else float(w)
    marks = {"top": top, "heart_top": heart_top, "heart_bottom": heart_bottom, "cp_right": cp_right,
             "cp_left": cp_left, "carina": carina, "thorax_w": thorax_w, "centre_x": centre_x}
    return {"heart": heart, "cardiomediastinum": cardiomed, "upper mediastinum": upper,
            "lower mediastinum": lower}, marks


def _airway(right: np.ndarray, left: np.ndarray, image: np.ndarray | None, marks: dict,
            cfg: DeriveConfig) -> dict[str, np.ndarray]:
    """Trachea (the darkest trachea-wide column near the mediastinal centre, from the top to the carina) and the
    tracheal bifurcation around the carina."""
    h, w = right.shape
    carina, thorax_w, c_default = marks["carina"], marks["thorax_w"], marks["centre_x"]
    lung_h = marks["heart_bottom"] - marks["top"]
    tw = max(2, int(round(cfg.trachea_width * thorax_w)))
    trachea = np.zeros((h, w), bool)
    t_rows = np.arange(0, carina + 1)  # the trachea runs up through the neck, out of the lung fields' rows
    if image is not None:
        # The trachea is an air column: per row, the darkest trachea-wide window near the mediastinal centre
        # (lung fields excluded: they are darker still).
        box = cv2.blur(np.where(right | left, 1.0, image).astype(np.float32), (tw, 3))
        half_search = max(tw, int(0.06 * thorax_w))
        centres = []
        for r in t_rows:
            lo, hi = max(int(c_default - half_search), 0), min(int(c_default + half_search) + 1, w)
            centres.append(lo + int(np.argmin(box[r, lo:hi])))
        centres = np.asarray(centres, float)
        k = max(3, (len(centres) // 4) | 1)
        pad = np.pad(centres, k // 2, mode="edge")
        centres = np.array([np.median(pad[i:i + k]) for i in range(len(centres))])  # a trachea is straight-ish
    else:
        centres = np.full(len(t_rows), c_default)
    for r, c in zip(t_rows, centres):
        trachea[r, max(0, int(c - tw / 2)):int(c + tw / 2) + 1] = True
    bif = np.zeros((h, w), bool)
    c_bif = int(centres[-1]) if len(centres) else int(c_default)
    dy = max(2, int(0.04 * lung_h))
    bif[max(0, carina - dy):carina + dy + 1, max(0, c_bif - tw):c_bif + tw + 1] = True
    return {"trachea": trachea, "tracheal bifurcation": bif}


def _hemidiaphragms(right: np.ndarray, left: np.ndarray, cfg: DeriveConfig) -> dict[str, np.ndarray]:
    """A band under each lung's lower border, where it ends in its lowest quarter (higher column ends are the heart
    border, the lung's lower medial edge, not diaphragm)."""
    h, _ = right.shape
    thick = max(2, int(round(cfg.diaphragm_thickness * h)))
    masks = {}
    for side, lung in (("right", right), ("left", left)):
        dia = np.zeros(lung.shape, bool)
        bottom = _bottom_contour(lung)
        lrows = _rows(lung)
        dome_level = lrows[0] + 0.75 * (lrows[-1] - lrows[0])
        for x in np.flatnonzero(bottom >= dome_level):
            dia[bottom[x] + 1:min(h, bottom[x] + 1 + thick), x] = True
        masks[f"{side} hemidiaphragm"] = dia
    masks["diaphragm"] = masks["right hemidiaphragm"] | masks["left hemidiaphragm"]
    return masks


def add_superclasses(masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Union masks for every CXAS superclass with at least one member present (a class keeps its own mask when a
    superclass shares its name, e.g. 'trachea')."""
    out = dict(masks)
    for sc, members in SUPERCLASSES.items():
        present = [masks[m] for m in members if m in masks]
        if present and sc not in masks:
            out[sc] = np.logical_or.reduce(present)
    return out


# Every class `derive_regions` returns, in a fixed order (the atlas feature channels follow it).
DERIVED_REGIONS: tuple[str, ...] = (
    "right lung", "left lung",
    "right apical zone lung", "right upper zone lung", "right mid zone lung", "right lung base",
    "left apical zone lung", "left upper zone lung", "left mid zone lung", "left lung base",
    "lung upper lobe right", "lung middle lobe right", "lung lower lobe right", "lung upper lobe left",
    "lung lower lobe left", "heart", "cardiomediastinum", "upper mediastinum", "lower mediastinum", "trachea",
    "tracheal bifurcation", "right hemidiaphragm", "left hemidiaphragm", "diaphragm",
)
