"""The learned backend (default): a MONAI UNet that finds both lungs and the heart, trained on phantoms and real
films together (train.py, docs/segmentation.md); everything else is derived from its lungs and heart (derive.py).

Lungs follow CXAS and the expert masks of real films: the *anatomical* lungs, which pass behind the heart and
overlap it. Inference runs at `SegNetConfig.size` (the film squeezed to a square with a 1-99 % stretch) and masks
are upsampled to the film.

Each result carries `measurements["segmentation"]`: the segmenter's confidence in its own lungs (the soft Dice
between its probabilities and its mask, 1 = certain), the learned and the derived classes, and the orientation
check. A film is refused only when it is not a frontal chest radiograph (no two lung fields side by side), and a
film that looks mirrored left-right or turned by 90° is refused with that reason (rotate or flip it back).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from model import ASSETS_DIR
from model.atomic import atomic_path
from model.segmentation.derive import DERIVED_REGIONS, derive_regions
from model.segmentation.errors import SegmentationError

WEIGHTS_PATH = os.path.join(ASSETS_DIR, "segmentation", "unet.pt")
CLASSES: tuple[str, ...] = ("right lung", "left lung", "heart")
MEASURE_SIZE = 256
# A lung field smaller than this share of the film is not a lung field.
MIN_LUNG_FRACTION = 0.02
# Under this confidence the two "lungs" are a guess whatever else holds: not a chest radiograph.
MIN_CONFIDENCE = 0.6
# The frontal-film rule's defaults when the weights do not carry their own (`frontal_floor` in their meta, set by
# train.py from the real training films): a film is refused as not frontal when BOTH its confidence is under every
# real training film's AND the band between its lungs is no brighter than the lungs (a lateral view's two "lungs"
# are halves of one dark field). Either alone would refuse frontal films: opacified lungs lower the contrast,
# white-out lungs the confidence.
FRONTAL_FLOOR = {"confidence": 0.93, "mediastinum_contrast": 0.5}
# Below this the answer is kept but marked uncertain on screen.
LOW_CONFIDENCE = 0.85
# A learned heart whose cardiothoracic ratio falls outside this range is not trusted: the heart channel learned
# from phantoms only (real films have no heart label), and on real films it finds too little of the heart. The
# heart is then derived from the lungs' aerated parts (derive.py), as the atlas does, and marked estimated.
LEARNED_HEART_CTR = (0.3, 0.75)
# ... and the heart channel must be as sure of itself as on phantoms (soft Dice of its probabilities with its mask:
# 0.98-0.99 on phantoms, at most 0.88 on 40 real training films): a real film's heart is then derived.
LEARNED_HEART_CONFIDENCE = 0.9


@dataclass(frozen=True)
class SegNetConfig:
    size: int = 256
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    res_units: int = 2


def build_net(cfg: SegNetConfig) -> torch.nn.Module:
    from monai.networks.nets import UNet
    # instance norm: each film is normalised on its own, so a batch of phantoms does not set a real film's scale
    return UNet(spatial_dims=2, in_channels=1, out_channels=len(CLASSES), channels=cfg.channels,
                strides=cfg.strides, num_res_units=cfg.res_units, norm="instance")


def prepare(image: np.ndarray, size: int) -> np.ndarray:
    """float32 H×W [0, 1] -> [size, size] with a 1-99 % stretch (the same for training and inference)."""
    small = cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    lo, hi = np.percentile(small, [1, 99])
    if hi - lo < 1e-6:
        return np.zeros_like(small)
    return np.clip((small - lo) / (hi - lo), 0, 1).astype(np.float32)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.5


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros_like(m)
    cv2.drawContours(out, contours, -1, 1, thickness=-1)
    return out.astype(bool)


def _main_parts(mask: np.ndarray, keep_share: float) -> np.ndarray:
    """Components at least `keep_share` of the largest (an opacity can split a lung in two; specks are noise)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= keep_share * areas.max())
    return np.isin(labels, keep)


def postprocess(probs: np.ndarray, thresholds: dict | None = None) -> dict[str, np.ndarray]:
    """probs [K, S, S] -> bool masks by class: thresholded, specks dropped, holes filled."""
    thresholds = thresholds or {}
    masks = {}
    for k, name in enumerate(CLASSES):
        m = probs[k] > thresholds.get(name, 0.5)
        m = _main_parts(m, 1.0 if name == "heart" else 0.25)
        masks[name] = _fill_holes(m) if m.any() else m
    return masks


def dice_per_class(pred: dict, truth: dict) -> dict:
    out = {}
    for name, t in truth.items():
        p = pred[name]
        s = int(p.sum() + t.sum())
        out[name] = 1.0 if s == 0 else 2 * int((p & t).sum()) / s
    return out


def confidence(probs: np.ndarray, masks: dict) -> float:
    """Mean over both lungs of the soft Dice between the probabilities and the mask: 1 when every pixel is sure."""
    vals = []
    for k, name in enumerate(CLASSES[:2]):
        p, m = probs[k], masks[name]
        s = float(p.sum() + m.sum())
        vals.append(2 * float((p * m).sum()) / s if s else 0.0)
    return float(np.mean(vals))


# ---------------------------------------------------------------------------------------------- weights

_CACHE: dict[str, torch.nn.Module] = {}


def weights_available(path: str = WEIGHTS_PATH) -> bool:
    return os.path.isfile(path)


def save(net: torch.nn.Module, path: str, meta: dict | None = None, cfg: SegNetConfig | None = None) -> None:
    """float16 weights + config + meta, written atomically."""
    cfg = cfg or SegNetConfig()
    blob = {"state_dict": {k: v.half() for k, v in net.state_dict().items()},
            "config": {"size": cfg.size, "channels": list(cfg.channels), "strides": list(cfg.strides),
                       "res_units": cfg.res_units, "classes": list(CLASSES)},
            "meta": meta or {}}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load(path: str = WEIGHTS_PATH) -> torch.nn.Module:
    if path in _CACHE:
        return _CACHE[path]
    if not os.path.isfile(path):
        raise SegmentationError(f"the 'unet' backend has no weights at {path}; train them with "
                                "`python -m model.segmentation.train --out DIR` or use --backend atlas")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    c = blob["config"]
    if tuple(c.get("classes", ())) != CLASSES:
        raise SegmentationError(f"{path} predicts {c.get('classes')}, this code expects {list(CLASSES)}: "
                                "weights from an older version; retrain with `python -m model.segmentation.train`")
    cfg = SegNetConfig(size=int(c["size"]), channels=tuple(c["channels"]), strides=tuple(c["strides"]),
                       res_units=int(c["res_units"]))
    net = build_net(cfg)
    net.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    net.cfg, net.meta = cfg, dict(blob.get("meta", {}))
    net.eval()
    _CACHE[path] = net
    return net


# ---------------------------------------------------------------------------------------------- inference

def _layout_problem(masks: dict, shape: tuple[int, int]) -> str | None:
    """Why these masks are not two lung fields side by side (None when they are)."""
    right, left = masks["right lung"], masks["left lung"]
    area = shape[0] * shape[1]
    for name, m in (("right", right), ("left", left)):
        if m.sum() < MIN_LUNG_FRACTION * area:
            return f"no {name} lung field found ({m.sum() / area:.1%} of the image)"
    ry, rx = np.nonzero(right)
    ly, lx = np.nonzero(left)
    if not rx.mean() < lx.mean():
        return "the lung fields are not side by side"
    overlap = min(ry.max(), ly.max()) - max(ry.min(), ly.min())
    if overlap < 0.5 * min(ry.max() - ry.min(), ly.max() - ly.min()):
        return "the lung fields lie one above the other, not side by side"
    return None


def _heart_side(masks: dict) -> float | None:
    """The share of the heart lying on the image's right of the lungs' midline, minus a half: about +0.15 on a
    normally oriented film (the left ventricle reaches further from the midline than the right atrium), negative
    on a mirrored one."""
    heart = masks["heart"]
    if heart is None or not heart.any():
        return None
    rc, lc = np.nonzero(masks["right lung"])[1].mean(), np.nonzero(masks["left lung"])[1].mean()
    return float((np.nonzero(heart)[1] > (rc + lc) / 2).mean() - 0.5)


def _predict(net, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(net(torch.from_numpy(np.ascontiguousarray(x))[:, None])).numpy()


def _orientation_problem(net, x: np.ndarray, thresholds: dict, floor: dict, mirror: bool) -> str | None:
    """Called when a film fails the layout or heart-side check: does it read as a chest once flipped or turned, as
    confidently as the real training films do (`floor`)?"""
    variants = {"mirrored left-right": np.fliplr(x), "turned 90° clockwise": np.rot90(x, 1),
                "turned 90° anticlockwise": np.rot90(x, -1)}
    probs = _predict(net, np.stack([np.ascontiguousarray(v) for v in variants.values()]))
    for (what, v), p in zip(variants.items(), probs):
        m = postprocess(p, thresholds)
        if (_layout_problem(m, x.shape) is not None or confidence(p, m) < floor["confidence"]
                or mediastinum_contrast(v, m) < floor["mediastinum_contrast"]):
            continue
        heart, source = _heart(np.ascontiguousarray(v), m, heart_confidence(p, m) >= LEARNED_HEART_CONFIDENCE)
        # Mirroring is judged only where the film's own heart is the network's (`mirror`) and so is the mirrored
        # film's: on real films the heart channel is unreliable, and judging them by it refused 5 of the 38 real val
        # films as mirrored. Mirrored real films are therefore not detected (docs/segmentation.md).
        if what.startswith("mirrored") and (not mirror or source != "learned"):
            continue
        side = _heart_side({**m, "heart": heart}) if heart is not None else None
        if side is not None and side > 0.05:
            return f"the film looks {what}; turn it upright (patient's right on the image's left) and open it again"
    return None


def mediastinum_contrast(x: np.ndarray, masks: dict) -> float:
    """How much brighter the band between the two lungs is than the lungs (in lung-intensity spreads), over the
    upper 60 % of the rows both lungs share; -9 when the lungs touch on every such row."""
    right, left = masks["right lung"], masks["left lung"]
    g = cv2.GaussianBlur(x.astype(np.float32), (0, 0), 2.0)
    rows = np.flatnonzero(right.any(1) & left.any(1))
    rows = rows[: max(1, int(0.6 * rows.size))]
    vals = []
    for y in rows:
        r_edge, l_edge = np.flatnonzero(right[y]).max(), np.flatnonzero(left[y]).min()
        if l_edge - r_edge > 1:
            vals.append(float(g[y, r_edge + 1:l_edge].mean()))
    lungs = right | left
    if not vals or not lungs.any():
        return -9.0
    return float((np.median(vals) - np.median(g[lungs])) / (g[lungs].std() + 1e-6))


def aerated_fields(x: np.ndarray, masks: dict) -> dict:
    """The dark (aerated) part of each anatomical lung: the visible lung field the atlas's heart derivation needs."""
    lungs = masks["right lung"] | masks["left lung"]
    g = cv2.GaussianBlur(x.astype(np.float32), (0, 0), 1.5)
    t, _ = cv2.threshold((np.clip(g[lungs], 0, 1) * 255).astype(np.uint8).reshape(-1, 1), 0, 255,
                         cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = g < t / 255.0
    out = {}
    for name in ("right lung", "left lung"):
        v = cv2.morphologyEx((masks[name] & dark).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        out[name] = _main_parts(v.astype(bool), 1.0)
    return out


def heart_confidence(probs: np.ndarray, masks: dict) -> float:
    p, m = probs[CLASSES.index("heart")], masks["heart"]
    s = float(p.sum() + m.sum())
    return 2 * float((p * m).sum()) / s if s else 0.0


def _heart(xm: np.ndarray, masks: dict, sure: bool, fields: dict | None = None) -> tuple[np.ndarray | None, str]:
    """The learned heart where the network is `sure` of it and its CTR is plausible, else one derived from the
    aerated lung fields; None when neither can be found (white-out lungs): the CTR is then not measured rather
    than guessed."""
    from model.segmentation.measure import cardiothoracic_ratio

    learned = masks["heart"]
    ctr = cardiothoracic_ratio(learned, masks["right lung"], masks["left lung"]) if learned.any() and sure else None
    if ctr is not None and LEARNED_HEART_CTR[0] <= ctr <= LEARNED_HEART_CTR[1]:
        return learned, "learned"
    fields = fields if fields is not None else aerated_fields(xm, masks)
    if not fields["right lung"].any() or not fields["left lung"].any():
        return None, "not found"
    try:
        derived, _ = derive_regions(fields["right lung"], fields["left lung"], image=xm)
    except ValueError:
        return None, "not found"
    heart = derived["heart"]
    ctr = cardiothoracic_ratio(heart, masks["right lung"], masks["left lung"]) if heart.any() else None
    if ctr is None or not LEARNED_HEART_CTR[0] <= ctr <= LEARNED_HEART_CTR[1]:
        return None, "not found"
    return heart, "derived from the aerated lung fields"


def segment_unet(image: np.ndarray, path: str = WEIGHTS_PATH):
    """image: float32 H×W in [0, 1] -> Segmentation (backend 'unet')."""
    from model.segmentation.atlas import AtlasConfig, atlas_features, check_radiograph
    from model.segmentation.output import build, upsample_mask

    net = load(path)
    thresholds = net.meta.get("thresholds", {})
    floor = {**FRONTAL_FLOOR, **net.meta.get("frontal_floor", {})}
    x = prepare(image, net.cfg.size)
    check_radiograph(x, AtlasConfig())
    probs = _predict(net, x[None])[0]
    masks = postprocess(probs, thresholds)
    conf = confidence(probs, masks)
    problem = _layout_problem(masks, x.shape)
    if problem is None and conf < MIN_CONFIDENCE:
        problem = f"the segmenter is not sure these are lung fields (confidence {conf:.2f} < {MIN_CONFIDENCE})"
    contrast = mediastinum_contrast(x, masks) if problem is None else None
    if problem is None and conf < floor["confidence"] and contrast < floor["mediastinum_contrast"]:
        # the shape of a lateral view: not a film to turn round, so no orientation search
        raise SegmentationError(f"no mediastinum between the two lung fields and low confidence ({conf:.2f}): "
                                "not a frontal chest radiograph (a lateral view, or not a chest film)")
    xm = prepare(image, MEASURE_SIZE)
    masks = {k: upsample_mask(v, xm.shape) for k, v in masks.items()}
    sure = heart_confidence(probs, masks) >= LEARNED_HEART_CONFIDENCE
    fields = None if problem else aerated_fields(xm, masks)  # the heart search and the costophrenic angles share it
    heart, heart_source = (None, "not found") if problem else _heart(xm, masks, sure, fields)
    side = _heart_side({**masks, "heart": heart}) if heart is not None else None
    if problem is not None or (side is not None and side < 0):
        turned = _orientation_problem(net, x, thresholds, floor, mirror=heart_source == "learned")
        if turned:
            raise SegmentationError(turned)
    if problem is not None:
        raise SegmentationError(f"{problem}; not a frontal chest radiograph")
    lungs = {"right lung": masks["right lung"], "left lung": masks["left lung"]}
    derived, landmarks = derive_regions(lungs["right lung"], lungs["left lung"], image=xm, heart=heart)
    derived.update(lungs)
    if heart is None:
        derived.pop("heart", None)
    learned = ["right lung", "left lung"] + (["heart"] if heart_source == "learned" else [])
    note = {"backend": "unet", "confidence": round(conf, 3), "uncertain": conf < LOW_CONFIDENCE,
            "mediastinum_contrast": round(contrast, 2), "heart": heart_source, "learned": learned,
            "derived": [n for n in DERIVED_REGIONS if n not in learned and n in derived],
            "weights": os.path.basename(path)}
    seg = build(xm, derived, image.shape, "unet", atlas_features(xm, {**derived, "heart": derived.get(
        "heart", np.zeros(xm.shape, bool))}), extra={"segmentation": note, "landmarks_working_px": landmarks})
    seg.measurements["costophrenic"] = _aerated_costophrenic(xm, lungs, fields, image.shape)
    return seg


def _aerated_costophrenic(xm: np.ndarray, lungs: dict, fields: dict, shape: tuple[int, int]) -> dict:
    """The costophrenic angles of the *aerated* lung: the anatomical lung runs down to the recess whether or not fluid
    fills it, so its own angle would stay sharp over an effusion. A side with too little aerated lung left to judge
    (under a fifth of the lung) gets no angle rather than a guess."""
    from model.segmentation.measure import costophrenic

    sy, sx = shape[0] / xm.shape[0], shape[1] / xm.shape[1]
    out = {}
    for side in ("right", "left"):
        field, lung = fields[f"{side} lung"], lungs[f"{side} lung"]
        if field.sum() < 0.2 * lung.sum() or field.sum() < 16:
            continue
        cp = costophrenic(field, lateral_is_left=(side == "right"))
        cp["point"] = [int(round((cp["point"][0] + 0.5) * sy)), int(round((cp["point"][1] + 0.5) * sx))]
        out[side] = cp
    return out
