"""Evaluation harness shared by calibration (phantom validation split) and the benchmark (phantom test split):
hallucination insertion, sentence <-> finding matching, pointing game, AUROC.

Hallucinated reports are built from a phantom's own report and findings record (truth known):
- insert: a sentence asserting a finding the image does not have (type and side absent from the record), e.g.
  "There is a right pneumothorax." on a phantom without one;
- drop: a present finding's sentence replaced by its denial ("No pleural effusion."), i.e. the report drops a
  finding the image shows and claims its absence.
Every original sentence is a negative example (label 0), every inserted / denying sentence a positive (label 1).
"""
from __future__ import annotations

import random

import numpy as np

from model.stats import auroc  # noqa: F401  (re-exported: benchmarks and tests import it here)

# Templates for absent findings: (CheXpert type, side or None, text). Sides are the patient's.
INSERTS = (
    ("Pneumothorax", "right", "There is a right pneumothorax."),
    ("Pneumothorax", "left", "Small left apical pneumothorax."),
    ("Pleural Effusion", "right", "Small right pleural effusion with blunting of the right costophrenic angle."),
    ("Pleural Effusion", "left", "There is a left pleural effusion."),
    ("Cardiomegaly", None, "The heart is enlarged."),
    ("Consolidation", "right", "Consolidation in the right lower lobe."),
    ("Consolidation", "left", "Left upper lobe consolidation."),
    ("Lung Lesion", "right", "A nodule is seen in the right mid zone."),
)
DENIALS = {
    "Pneumothorax": "No pneumothorax.",
    "Pleural Effusion": "No pleural effusion.",
    "Cardiomegaly": "The heart size is normal.",
    "Consolidation": "No focal consolidation.",
    "Lung Opacity": "The lungs are clear.",
    "Lung Lesion": "No nodules or masses.",
    "Atelectasis": "No atelectasis.",
    "Edema": "No pulmonary edema.",
}


def present(findings: list[dict], ftype: str, side: str | None) -> bool:
    """Whether the record has a finding of this type (on this side, or on either when side is None)."""
    for f in findings:
        if f.get("type") != ftype:
            continue
        fs = (f.get("side") or "").lower()
        if side is None or fs in (side, "bilateral", "both", ""):
            return True
    return False


def hallucinate(sentences: list[str], findings: list[dict], rng: random.Random, n_insert: int = 1,
                n_drop: int = 1, sentence_types=None) -> tuple[list[str], list[int]]:
    """A perturbed report as (sentences, labels): labels 1 for inserted / denying sentences, 0 for originals.

    sentence_types(text) -> set of CheXpert types the sentence asserts (positive); used to find the sentence of
    a present finding to replace by its denial."""
    out = list(sentences)
    labels = [0] * len(out)
    if sentence_types is not None and n_drop:
        droppable = [i for i, s in enumerate(out)
                     if (t := sentence_types(s)) and any(x in DENIALS for x in t)]
        for i in rng.sample(droppable, min(n_drop, len(droppable))):
            ftype = next(x for x in sorted(sentence_types(out[i])) if x in DENIALS)
            out[i], labels[i] = DENIALS[ftype], 1
    absent = [t for t in INSERTS if not present(findings, t[0], t[1])]
    for ftype, side, text in rng.sample(absent, min(n_insert, len(absent))):
        at = rng.randint(0, len(out))
        out.insert(at, text)
        labels.insert(at, 1)
    return out, labels


def precision_recall(pred, labels) -> tuple[float, float]:
    p = np.asarray(pred, dtype=bool)
    y = np.asarray(labels, dtype=bool)
    tp = (p & y).sum()
    precision = tp / p.sum() if p.sum() else float("nan")
    recall = tp / y.sum() if y.sum() else float("nan")
    return float(precision), float(recall)


def peak_point(heatmap: np.ndarray) -> tuple[int, int]:
    """The pixel a heatmap points at: among its maximal pixels, the one nearest their centroid.

    Attribution maps here are constant over each vision patch (32 x 32 pixels on a 256-pixel phantom), so the
    maximum is a whole cell; `np.argmax` would take the cell's top-left corner, which sits on the cell's border
    with its neighbours and lands inside or outside a finding's mask by where the grid happens to fall. The
    cell's centre is the point the map actually makes, for every method alike."""
    h = np.asarray(heatmap, dtype=np.float64)
    top = h.max()
    rows, cols = np.nonzero(h >= top - 1e-9 * max(abs(top), 1e-300))
    cr, cc = rows.mean(), cols.mean()
    k = int(np.argmin((rows - cr) ** 2 + (cols - cc) ** 2))
    return int(rows[k]), int(cols[k])


def pointing_hit(heatmap: np.ndarray, truth: np.ndarray, tolerance: int = 0) -> bool:
    """Pointing game: the heatmap's peak (`peak_point`) lies inside the true mask (dilated by `tolerance`
    pixels)."""
    r, c = peak_point(heatmap)
    r0, r1 = max(0, r - tolerance), r + tolerance + 1
    c0, c1 = max(0, c - tolerance), c + tolerance + 1
    return bool(truth[r0:r1, c0:c1].any())


def best_youden(pos, neg, higher_means_positive: bool = True) -> float:
    """Threshold maximising TPR - FPR between two samples (midpoint between neighbouring values)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not higher_means_positive:
        pos, neg = -pos, -neg
    values = np.unique(np.concatenate([pos, neg]))
    if len(values) < 2:
        return float(values[0]) * (1 if higher_means_positive else -1) if len(values) else float("nan")
    cuts = (values[:-1] + values[1:]) / 2
    j = [(pos > c).mean() - (neg > c).mean() for c in cuts]
    best = float(cuts[int(np.argmax(j))])
    return best if higher_means_positive else -best


# --- running the engine over a phantom split ---------------------------------------------------------------------
def load_split(data_dir: str, split: str, limit: int | None = None) -> list[dict]:
    """Entries of DIR/annotation.json's `split` (as written by `python -m model phantom`)."""
    import json
    import os

    path = os.path.join(data_dir, "annotation.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: write a phantom dataset with `python -m model phantom --out "
                                f"{data_dir} --n N --seed S`")
    with open(path, encoding="utf-8") as fh:
        ann = json.load(fh)
    if split not in ann:
        raise KeyError(f"{path} has no '{split}' split (has {sorted(ann)})")
    return ann[split][:limit] if limit else ann[split]


def read_case(data_dir: str, entry: dict):
    """-> (image float32 H x W in [0, 1], anatomy masks, finding masks, findings list, report)."""
    import os

    from model.imageio import read_radiograph
    from model.phantom import load_masks

    image = read_radiograph(os.path.join(data_dir, entry["image_path"][0]))
    anatomy, finding_masks = load_masks(os.path.join(data_dir, entry["masks"]))
    findings = entry.get("findings") or {}
    findings = findings.get("findings", []) if isinstance(findings, dict) else findings
    return image, anatomy, finding_masks, findings, entry["report"]


def sentence_positive_types(text: str) -> set[str]:
    from model.grounding import understand

    return {o for o, v in understand(text)[0].items() if v in (1, -1)}


def finding_sentence(sentences: list[str], finding: dict) -> int | None:
    """Index of the first sentence asserting this finding's type on its side (None when the report has none)."""
    from model.grounding import understand
    from model.grounding.verdict import side_of

    for i, text in enumerate(sentences):
        labels, anatomy = understand(text)
        if labels.get(finding.get("type")) not in (1, -1):
            continue
        side = side_of(text, anatomy)
        fs = finding.get("side")
        if side is None or fs in (None, "bilateral") or side == fs:
            return i
    return None
