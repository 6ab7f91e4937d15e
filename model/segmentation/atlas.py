"""Atlas backend: lung fields from intensity and morphology, everything else by geometry (`derive.py`).

No learned weights. Works at `AtlasConfig.size` internally (masks are upsampled to the image's resolution), so
a 1024×1024 radiograph costs about as much as a 256×256 one. Refuses what it cannot read as a frontal chest
radiograph (blank, noise, lateral view) with a `SegmentationError` naming the failed check.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.segmentation.derive import DERIVED_REGIONS, derive_regions
from model.segmentation.errors import SegmentationError
from model.segmentation.output import build, pool_features
from model.types import Segmentation


@dataclass(frozen=True)
class AtlasConfig:
    size: int = 256  # internal working resolution (square)
    blur_sigma: float = 2.0
    min_contrast: float = 0.04  # std of the normalised image below this: blank
    max_noise_ratio: float = 0.45  # fine-detail energy / total: above this the image is noise, not anatomy
    outside_level: float = 0.15  # air outside the body is darker than this (after the 1-99 % stretch)
    skin_margin: int = 5  # px at `size`: the skin line next to outside air is dark but is not lung
    open_radius: int = 4  # breaks thin dark bridges between a lung and the neck or shoulders
    seed_erosion: int = 6  # px at `size`
    min_seed_fraction: float = 0.01  # an eroded lung core is at least this fraction of the image
    grow_steps: int = 3  # px at `size` the lung may grow from its dark core into paler tissue
    min_lung_fraction: float = 0.02  # each lung field at least this fraction of the image
    min_lung_balance: float = 0.15  # smaller lung / larger lung area (a large effusion can shrink one a lot)
    min_vertical_overlap: float = 0.5  # two lungs of a frontal view lie side by side
    min_gap_fraction: float = 0.03  # mediastinum between the lungs at mid-height, of the image width


def _normalise(image: np.ndarray, size: int) -> np.ndarray:
    small = cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    lo, hi = np.percentile(small, [1, 99])
    if hi - lo < 1e-6:
        return np.zeros_like(small)
    return np.clip((small - lo) / (hi - lo), 0, 1).astype(np.float32)


def check_radiograph(x: np.ndarray, cfg: AtlasConfig) -> None:
    """Blank and noise refusals, on the normalised small image x [S, S]."""
    if float(x.std()) < cfg.min_contrast:
        raise SegmentationError(f"image is blank (contrast {x.std():.3f} < {cfg.min_contrast}); "
                                "not a chest radiograph")
    fine = x - cv2.GaussianBlur(x, (0, 0), 2.0)
    ratio = float(fine.std() / (x.std() + 1e-6))
    if ratio > cfg.max_noise_ratio:
        raise SegmentationError(f"image looks like noise (fine-detail ratio {ratio:.2f} > {cfg.max_noise_ratio}); "
                                "not a chest radiograph")


def _otsu(values: np.ndarray) -> float:
    t, _ = cv2.threshold((values * 255).astype(np.uint8).reshape(-1, 1), 0, 255,
                         cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return t / 255.0


def _body(g: np.ndarray, cfg: AtlasConfig) -> np.ndarray:
    """Everything but the air outside the patient (very dark and connected to the border), with a margin for
    the skin line."""
    bg = (g < cfg.outside_level).astype(np.uint8)
    _, lab = cv2.connectedComponents(bg, connectivity=4)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    outside = np.isin(lab, border[border > 0]).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cfg.skin_margin + 1,) * 2)
    return cv2.dilate(outside, k) == 0


def _dark_candidates(g: np.ndarray, cfg: AtlasConfig) -> tuple[np.ndarray, np.ndarray]:
    """(core, extent): core = clearly aerated pixels (opened), extent = the looser mask lungs may grow into.
    Two-level Otsu inside the body: the first split separates bone/mediastinum from the rest, the second
    separates aerated lung from soft tissue (shoulders, neck), which would otherwise join the lung fields."""
    s = g.shape[0]
    body = _body(g, cfg)
    c0, c1 = int(0.15 * s), int(0.85 * s)
    v = g[c0:c1, c0:c1][body[c0:c1, c0:c1]]
    if v.size < 0.1 * (c1 - c0) ** 2:
        raise SegmentationError("no body found in the image centre; not a chest radiograph")
    t1 = _otsu(v)
    low = v[v < t1]
    t2 = _otsu(low) if low.size else t1
    core = ((g < (t1 + t2) / 2) & body).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cfg.open_radius + 1,) * 2)
    core = cv2.morphologyEx(core, cv2.MORPH_OPEN, k)
    extent = (g < t1) & body
    return core, extent


def _grow(seed: np.ndarray, extent: np.ndarray, steps: int) -> np.ndarray:
    """Geodesic dilation of `seed` inside `extent`, at most `steps` pixels: recovers the lung's paler rim
    (costophrenic angles, behind ribs) without leaking into soft tissue far away."""
    m = seed.astype(np.uint8)
    ext = extent.astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    for _ in range(steps):
        m = cv2.dilate(m, k) & ext
    return m.astype(bool) | seed


def _split_merged(comp: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Two lungs joined across the midline (over the trachea or a thin mediastinum): cut at the narrowest
    column in the central third. Returns None if the blob has no waist (a lateral view's single lung field)."""
    s = comp.shape[1]
    counts = comp.sum(axis=0).astype(float)
    lo, hi = int(s / 3), int(2 * s / 3)
    cut = lo + int(np.argmin(counts[lo:hi]))
    if counts[cut] > 0.35 * counts.max():
        return None
    right, left = comp.copy(), comp.copy()
    right[:, cut:] = False
    left[:, :cut + 1] = False
    return right, left


def find_lungs(x: np.ndarray, cfg: AtlasConfig) -> tuple[np.ndarray, np.ndarray]:
    """Right (image-left) and left lung fields, bool [S, S], or SegmentationError saying which check failed."""
    s = x.shape[0]
    g = cv2.GaussianBlur(x, (0, 0), cfg.blur_sigma)
    dark, extent = _dark_candidates(g, cfg)
    # Seeds: the dark core eroded, so a lung joined to the neck or a shoulder through a narrow apex comes apart.
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cfg.seed_erosion + 1,) * 2)
    seeds = cv2.erode(dark, k)
    n, labels, stats, cents = cv2.connectedComponentsWithStats(seeds, connectivity=4)
    min_area = cfg.min_seed_fraction * s * s
    cands = []
    for i in range(1, n):
        x0, y0, bw, bh, area = stats[i]
        touches = x0 == 0 or y0 == 0 or x0 + bw == s or y0 + bh == s
        if area >= min_area and not touches:
            cands.append(i)
    if not cands:
        raise SegmentationError("no lung field found (no large dark region inside the body); "
                                "not a frontal chest radiograph")
    halves = {"right": [i for i in cands if cents[i][0] < s / 2], "left": [i for i in cands if cents[i][0] >= s / 2]}
    if halves["right"] and halves["left"]:
        pick = {k: max(v, key=lambda i: stats[i][4]) for k, v in halves.items()}
        right, left = labels == pick["right"], labels == pick["left"]
    else:
        big = labels == max(cands, key=lambda i: stats[i][4])
        split = _split_merged(big)
        if split is None:
            raise SegmentationError("found one lung field, not two side by side; a lateral view or not a frontal "
                                    "chest radiograph")
        right, left = split
    # Undo the erosion inside the core, then grow into the paler rim; the lungs may not grow into each other.
    grow = cfg.seed_erosion + 1
    right, left = _grow(right, dark > 0, grow), _grow(left, dark > 0, grow)
    right = _tidy(_grow(right, extent & ~_grow(left, extent, 1), cfg.grow_steps))
    left = _tidy(_grow(left, extent & ~right, cfg.grow_steps))
    right, left = _tidy(_trim_apex(right)), _tidy(_trim_apex(left))
    if not right.any() or not left.any():
        raise SegmentationError("a lung field vanished after clean-up; not a frontal chest radiograph")
    _check_pair(right, left, cfg)
    return right, left


def _tidy(mask: np.ndarray) -> np.ndarray:
    """Largest component, holes filled (vessels and nodules are bright spots inside a lung field), smoothed."""
    m = mask.astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=4)
    if n > 2:
        m = (labels == 1 + int(np.argmax(stats[1:, 4]))).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, k)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(m)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def _trim_apex(mask: np.ndarray, ratio: float = 1.3, min_px: int = 8) -> np.ndarray:
    """A lung narrows from mid-height to its apex. Walking up from mid-height, if the width grows again by
    `ratio` (and `min_px`) over the narrowest row so far, the mask has leaked into a shoulder or the neck: cut
    it above that waist."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return mask
    widths = mask[rows].sum(axis=1)
    waist = rows.size // 2
    for i in range(rows.size // 2, -1, -1):
        if widths[i] < widths[waist]:
            waist = i
        elif widths[i] > ratio * widths[waist] and widths[i] > widths[waist] + min_px:
            mask = mask.copy()
            mask[: rows[waist]] = False
            break
    return mask


def _check_pair(right: np.ndarray, left: np.ndarray, cfg: AtlasConfig) -> None:
    s = right.shape[0]
    ar, al = int(right.sum()), int(left.sum())
    if min(ar, al) < cfg.min_lung_fraction * s * s:
        raise SegmentationError(f"a lung field is too small ({min(ar, al) / s / s:.1%} of the image, need "
                                f"{cfg.min_lung_fraction:.0%}); not a frontal chest radiograph")
    if min(ar, al) / max(ar, al) < cfg.min_lung_balance:
        raise SegmentationError(f"lung fields are too unequal (area ratio {min(ar, al) / max(ar, al):.2f} < "
                                f"{cfg.min_lung_balance}); a lateral view or not a frontal chest radiograph")
    rr, lr = np.flatnonzero(right.any(1)), np.flatnonzero(left.any(1))
    overlap = min(rr[-1], lr[-1]) - max(rr[0], lr[0])
    if overlap < cfg.min_vertical_overlap * min(rr[-1] - rr[0], lr[-1] - lr[0]):
        raise SegmentationError("the two dark regions are not side by side; not a frontal chest radiograph")
    rows = np.arange(max(rr[0], lr[0]), min(rr[-1], lr[-1]) + 1)
    mid = rows[len(rows) // 3: 2 * len(rows) // 3]
    r_med = (s - 1 - np.argmax(right[mid, ::-1], axis=1))
    l_med = np.argmax(left[mid], axis=1)
    gap = float(np.median(l_med - r_med)) / s
    if gap < cfg.min_gap_fraction:
        raise SegmentationError(f"no mediastinum between the lung fields (gap {gap:.1%} of the width); "
                                "not a frontal chest radiograph")


def atlas_features(x: np.ndarray, masks: dict[str, np.ndarray]) -> np.ndarray:
    """[2 + len(DERIVED_REGIONS), 32, 32]: the image, its fine detail (lung markings), then each region's
    coverage per cell (0..1)."""
    fine = np.abs(x - cv2.GaussianBlur(x, (0, 0), 1.5))
    chans = [x, fine / (fine.max() + 1e-6)] + [masks[name].astype(np.float32) for name in DERIVED_REGIONS]
    return pool_features(np.stack(chans))


def segment_atlas(image: np.ndarray, cfg: AtlasConfig = AtlasConfig()) -> Segmentation:
    """image: float32 H×W in [0, 1]."""
    x = _normalise(image, cfg.size)
    check_radiograph(x, cfg)
    right, left = find_lungs(x, cfg)
    masks, landmarks = derive_regions(right, left, image=x)
    return build(x, masks, image.shape, "atlas", atlas_features(x, masks),
                 extra={"landmarks_working_px": landmarks})
