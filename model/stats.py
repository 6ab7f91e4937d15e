"""Small statistics shared by the model's stages (no torch): the vision pretraining's tag AUROC and the grounding
harness's hallucination-detection AUROC are the same number."""
from __future__ import annotations

import numpy as np


def auroc(scores, labels) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half); nan when a class is missing."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
