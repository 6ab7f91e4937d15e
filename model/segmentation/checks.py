"""Plausibility of a frontal-chest segmentation: the checks benchmarks/bench_segmentation.py applies to the real
sanity radiographs (lungs on their sides, lung share of the film, heart between the lungs, CTR range)."""
from __future__ import annotations

import numpy as np

LUNG_FRACTION = (0.15, 0.50)
CTR_RANGE = (0.35, 0.65)


def plausibility(masks: dict[str, np.ndarray], ctr: float | None, check_ctr: bool = True) -> list[str]:
    """Failed checks, each a sentence (empty when plausible): both lungs on the correct sides (patient's right =
    image left), lung fields 15-50 % of the image, heart between the lungs, CTR in 0.35-0.65."""
    fails = []
    right, left, heart = masks.get("right lung"), masks.get("left lung"), masks.get("heart")
    if right is None or left is None or not right.any() or not left.any():
        return ["a lung field is missing"]
    w = right.shape[1]
    cx_r, cx_l = np.nonzero(right)[1].mean(), np.nonzero(left)[1].mean()
    if not cx_r < w / 2 < cx_l:
        fails.append(f"lungs on the wrong sides (right lung centre x={cx_r:.0f}, left {cx_l:.0f}, width {w})")
    frac = float((right | left).mean())
    if not LUNG_FRACTION[0] <= frac <= LUNG_FRACTION[1]:
        fails.append(f"lung fields cover {frac:.1%} of the image (expected 15-50 %)")
    hx = np.nonzero(heart)[1].mean() if heart is not None and heart.any() else -1.0
    if not cx_r < hx < cx_l:
        fails.append(f"heart centre x={hx:.0f} not between the lungs ({cx_r:.0f}..{cx_l:.0f})")
    if check_ctr and (ctr is None or not CTR_RANGE[0] <= ctr <= CTR_RANGE[1]):
        fails.append(f"CTR {ctr} outside 0.35-0.65")
    return fails
