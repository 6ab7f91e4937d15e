"""Real frontal films with expert lung masks (`../shared/data/real-films/covid-lungs`, read its README): loading,
and the per-side split of the expert masks, which draw both lungs in one image.

Each expert mask is split into the patient's right lung (image left) and left lung by connected components, each
component going to the per-lung box (CC BY 4.0, a second annotator) it overlaps most; a component that spans both
boxes (lungs touching over the mediastinum) is cut at the midline between the two boxes. A film whose split leaves
one side empty is reported, not guessed.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass

import cv2
import numpy as np

from model import PROJECT_ROOT

DEFAULT_ROOT = os.path.join(os.path.dirname(PROJECT_ROOT), "shared", "data", "real-films", "covid-lungs")
# No-derivatives images are left out of training: weights fitted to them would be a derivative (assets/LICENSES.md).
TRAINABLE_LICENCES = ("CC BY 3.0", "CC BY 4.0", "CC BY-NC-SA", "CC BY-NC-SA 4.0")


@dataclass
class RealFilm:
    id: str
    image_path: str
    mask_path: str
    split: str
    patient: str
    view: str
    licence: str
    boxes: dict  # side -> (x, y, w, h) in the image's pixels
    source: str = ""  # where the image comes from (URL, DOI): its attribution wherever it is shown

    def load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image float32 H×W in [0, 1], right lung bool H×W, left lung bool H×W)."""
        img = cv2.imread(self.image_path, cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(self.mask_path, cv2.IMREAD_GRAYSCALE)
        if img is None or mask is None:
            raise ValueError(f"{self.id}: unreadable image or mask")
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        scale = float(np.iinfo(img.dtype).max) if img.dtype.kind in "ui" else 1.0
        img = img.astype(np.float32) / scale
        if mask.shape != img.shape:
            mask = cv2.resize(mask, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
        right, left = split_lungs(mask > 127, self.boxes)
        return img, right, left


def read_films(root: str = DEFAULT_ROOT, split: str | None = None) -> list[RealFilm]:
    path = os.path.join(root, "films.csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: the real films live in ../shared/data/real-films/covid-lungs")
    films = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if split is not None and row["split"] != split:
                continue
            films.append(RealFilm(
                id=os.path.splitext(os.path.basename(row["image"]))[0], image_path=os.path.join(root, row["image"]),
                mask_path=os.path.join(root, row["lung_mask"]), split=row["split"], patient=row["patientid"],
                view=row["view"], licence=row["image_licence"],
                boxes={"right": tuple(json.loads(row["right_lung_box_xywh"])),
                       "left": tuple(json.loads(row["left_lung_box_xywh"]))},
                source=" ".join(x for x in (row.get("source_url", ""), row.get("doi", "")) if x)))
    return films


def _box_mask(shape: tuple[int, int], box) -> np.ndarray:
    x, y, w, h = box
    out = np.zeros(shape, bool)
    out[max(0, int(y)):int(np.ceil(y + h)), max(0, int(x)):int(np.ceil(x + w))] = True
    return out


def split_lungs(mask: np.ndarray, boxes: dict) -> tuple[np.ndarray, np.ndarray]:
    """Both-lungs mask -> (right lung, left lung); see the module docstring. Raises ValueError when a side is empty."""
    shape = mask.shape
    rbox, lbox = _box_mask(shape, boxes["right"]), _box_mask(shape, boxes["left"])
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    right, left = np.zeros(shape, bool), np.zeros(shape, bool)
    rx = boxes["right"][0] + boxes["right"][2] / 2
    lx = boxes["left"][0] + boxes["left"][2] / 2
    cut = int(round((boxes["right"][0] + boxes["right"][2] + boxes["left"][0]) / 2)) if rx < lx else shape[1] // 2
    for k in range(1, n):
        comp = labels == k
        in_r, in_l = int((comp & rbox).sum()), int((comp & lbox).sum())
        size = int(comp.sum())
        if in_r > 0.8 * size and in_r >= in_l:
            right |= comp
        elif in_l > 0.8 * size and in_l > in_r:
            left |= comp
        else:  # spans both boxes (or neither): cut at the midline between them
            right |= comp & (np.arange(shape[1])[None, :] < cut)
            left |= comp & (np.arange(shape[1])[None, :] >= cut)
    if not right.any() or not left.any():
        raise ValueError(f"lung mask cannot be split per side (right {int(right.sum())} px, left {int(left.sum())} px)")
    return right, left


def patient_holdout(films: list[RealFilm], fraction: float = 0.15, seed: int = 0) -> tuple[list, list]:
    """Split films by patient (no patient on both sides): (fit, select). `select` chooses epochs and thresholds."""
    patients = sorted({f.patient for f in films})
    rng = np.random.default_rng(seed)
    rng.shuffle(patients)
    chosen = set(patients[:max(1, int(round(fraction * len(patients))))])
    return [f for f in films if f.patient not in chosen], [f for f in films if f.patient in chosen]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum() + b.sum())
    return 1.0 if s == 0 else 2 * int((a & b).sum()) / s


def _box_iou(mask: np.ndarray, box) -> float:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0.0
    px0, py0, px1, py1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    bx0, by0, bx1, by1 = box[0], box[1], box[0] + box[2], box[1] + box[3]
    iw, ih = max(0.0, min(px1, bx1) - max(px0, bx0)), max(0.0, min(py1, by1) - max(py0, by0))
    inter = iw * ih
    union = (px1 - px0) * (py1 - py0) + box[2] * box[3] - inter
    return float(inter / union) if union > 0 else 0.0


def score_film(masks: dict, right: np.ndarray, left: np.ndarray, boxes: dict) -> dict:
    """Lung Dice against the expert mask (both lungs pooled, and per side) and per-lung box IoU against the boxes."""
    pr, pl = masks["right lung"], masks["left lung"]
    return {"lung_dice": _dice(pr | pl, right | left), "right_dice": _dice(pr, right), "left_dice": _dice(pl, left),
            "right_box_iou": _box_iou(pr, boxes["right"]), "left_box_iou": _box_iou(pl, boxes["left"])}
