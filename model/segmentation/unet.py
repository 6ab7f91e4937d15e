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
# Below this confidence the two "lungs" are a guess: the film is refused as not a frontal chest radiograph.
# Set under the least confident real training film (docs/segmentation.md): an opacified lung lowers confidence
# and must not be refused.
MIN_CONFIDENCE = 0.55
# Below this the answer is kept but marked uncertain on screen.
LOW_CONFIDENCE = 0.85


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
    """Heart centre relative to the lungs' midline, in units of the gap between the lung centres (+ = the image's
    right, where a normally oriented film has it)."""
    heart = masks["heart"]
    if not heart.any():
        return None
    rc, lc = np.nonzero(masks["right lung"])[1].mean(), np.nonzero(masks["left lung"])[1].mean()
    return float((np.nonzero(heart)[1].mean() - (rc + lc) / 2) / max(lc - rc, 1.0))


def _predict(net, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(net(torch.from_numpy(np.ascontiguousarray(x))[:, None])).numpy()


def _orientation_problem(net, x: np.ndarray, thresholds: dict) -> str | None:
    """Called when a film fails the layout or heart-side check: does it read as a chest once flipped or turned?"""
    variants = {"mirrored left-right": np.fliplr(x), "turned 90° clockwise": np.rot90(x, 1),
                "turned 90° anticlockwise": np.rot90(x, -1)}
    probs = _predict(net, np.stack(list(variants.values())))
    for (what, _), p in zip(variants.items(), probs):
        m = postprocess(p, thresholds)
        side = _heart_side(m) if _layout_problem(m, x.shape) is None else None
        if side is not None and side > 0.1 and confidence(p, m) >= LOW_CONFIDENCE:
            return f"the film looks {what}; turn it upright (patient's right on the image's left) and open it again"
    return None


def segment_unet(image: np.ndarray, path: str = WEIGHTS_PATH):
    """image: float32 H×W in [0, 1] -> Segmentation (backend 'unet')."""
    from model.segmentation.atlas import AtlasConfig, atlas_features, check_radiograph
    from model.segmentation.output import build, upsample_mask

    net = load(path)
    thresholds = net.meta.get("thresholds", {})
    x = prepare(image, net.cfg.size)
    check_radiograph(x, AtlasConfig())
    probs = _predict(net, x[None])[0]
    masks = postprocess(probs, thresholds)
    conf = confidence(probs, masks)
    problem = _layout_problem(masks, x.shape)
    side = _heart_side(masks) if problem is None else None
    if problem is not None or (side is not None and side < -0.1):
        turned = _orientation_problem(net, x, thresholds)
        if turned:
            raise SegmentationError(turned)
    if problem is not None:
        raise SegmentationError(f"{problem}; not a frontal chest radiograph")
    if conf < MIN_CONFIDENCE:
        raise SegmentationError(f"the segmenter is not sure these are lung fields (confidence {conf:.2f} < "
                                f"{MIN_CONFIDENCE}); not a frontal chest radiograph")
    xm = prepare(image, MEASURE_SIZE)
    masks = {k: upsample_mask(v, xm.shape) for k, v in masks.items()}
    derived, landmarks = derive_regions(masks["right lung"], masks["left lung"], image=xm,
                                        heart=masks["heart"] if masks["heart"].any() else None)
    derived.update(masks)
    note = {"backend": "unet", "confidence": round(conf, 3), "uncertain": conf < LOW_CONFIDENCE,
            "learned": list(CLASSES), "derived": [n for n in DERIVED_REGIONS if n not in CLASSES],
            "weights": os.path.basename(path)}
    return build(xm, derived, image.shape, "unet", atlas_features(xm, derived),
                 extra={"segmentation": note, "landmarks_working_px": landmarks})
