"""Contact sheet of 16 phantom cases: anatomy outlines in CXAS colours, finding masks filled, findings as captions.

    python benchmarks/make_contact_sheet.py [--out docs/phantom_contact_sheet.png] [--seed 0] [--size 256]
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from model import taxonomy  # noqa: E402
from model.atomic import atomic_path  # noqa: E402
from model.phantom import generate_case  # noqa: E402
from model.phantom.store import case_seed  # noqa: E402

OUTLINED = ("right lung", "left lung", "heart", "trachea", "aortic arch", "right hemidiaphragm", "left hemidiaphragm",
            "clavicle right", "clavicle left")
FINDING_RGB = (255, 40, 40)


def overlay(case) -> np.ndarray:
    rgb = np.repeat(case.image[..., None], 3, axis=2).astype(np.float32)
    for fid, mask in case.finding_masks.items():  # translucent fill: the ground-truth extent of each finding
        rgb[mask] = 0.55 * rgb[mask] + 0.45 * np.array(FINDING_RGB)
    for name in OUTLINED:
        m = case.masks[name].astype(np.uint8)
        edge = m.astype(bool) & ~cv2.erode(m, np.ones((3, 3), np.uint8)).astype(bool)
        rgb[edge] = taxonomy.color(name)
    return rgb.clip(0, 255).astype(np.uint8)


def caption(case) -> str:
    parts = []
    for f in case.findings["findings"]:
        detail = ", ".join(str(x) for x in (f.get("side"), f.get("size") or f.get("subtype")) if x)
        parts.append(f"{f['type']} ({detail})" if detail else f["type"])
    ctr = case.findings["measurements"]["cardiothoracic_ratio"]
    return "\n".join(parts or ["no finding"]) + f"\nCTR {ctr:.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "phantom_contact_sheet.png"))
    p.add_argument("--seed", type=int, default=0, help="dataset seed (cases are those of write_dataset(seed))")
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args(argv)
    fig, axes = plt.subplots(4, 8, figsize=(16, 10.5), gridspec_kw={"height_ratios": [1] * 4})
    for i in range(16):
        case = generate_case(case_seed(args.seed, i), args.size, case_id=f"phantom_{args.seed}_{i:05d}")
        ax_raw, ax_ov = axes[i // 4, 2 * (i % 4)], axes[i // 4, 2 * (i % 4) + 1]
        ax_raw.imshow(case.image, cmap="gray", vmin=0, vmax=255)
        ax_ov.imshow(overlay(case))
        ax_raw.set_title(case.id, fontsize=7)
        ax_ov.set_title(caption(case), fontsize=6.5, loc="left")
        for ax in (ax_raw, ax_ov):
            ax.axis("off")
    fig.suptitle("GroundCXR phantoms (synthetic; patient's right = image left). Overlay: lung/heart/airway/"
                 "diaphragm/clavicle outlines in CXAS colours, finding masks in red", fontsize=9)
    fig.tight_layout()
    with atomic_path(args.out, ".png") as tmp:  # savefig infers the format from the extension
        fig.savefig(tmp, dpi=80)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
