"""`python -m model segment IMAGE [--backend atlas|unet|cxas|auto] --out DIR`.

Writes DIR/masks.npz (CXAS name -> bool H×W), DIR/overlay.png (colours from model.taxonomy.color) and prints
JSON: backend, cardiothoracic ratio, each region's area fraction, the costophrenic and apex measurements.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from model.atomic import atomic_path
from model.imageio import ImageReadError
from model.segmentation import BACKENDS, DEFAULT_BACKEND

# Drawn in this order, so the heart sits on top of the mediastinum and the trachea on top of both.
OVERLAY_DEFAULT = ("right lung", "left lung", "upper mediastinum", "heart", "trachea", "tracheal bifurcation",
                   "right hemidiaphragm", "left hemidiaphragm", "clavicle left", "clavicle right", "aortic arch")


def add_arguments(parser) -> None:
    parser.add_argument("image", help="PNG, JPEG or DICOM radiograph (frontal view)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS)
    parser.add_argument("--out", required=True, help="output directory (created if missing)")


def _atomic_write(path: str, write) -> None:
    with atomic_path(path, os.path.splitext(path)[1]) as tmp:  # keep the extension: savez and PIL read it
        write(tmp)


def overlay(image: np.ndarray, masks: dict[str, np.ndarray], names=None, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8: the image with each named region tinted and outlined in its taxonomy colour."""
    import cv2

    from model.taxonomy import color

    rgb = np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    if names is None:
        names = [n for n in OVERLAY_DEFAULT if n in masks]
    thick = max(1, image.shape[0] // 256)
    for name in names:
        m = masks[name]
        c = np.array(color(name), np.float32)
        rgb[m] = ((1 - alpha) * rgb[m] + alpha * c).astype(np.uint8)
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, tuple(int(v) for v in c), thick)
    return rgb


def run(args) -> int:
    from PIL import Image

    from model.segmentation import SegmentationError, load_image, segment

    try:
        image = load_image(args.image)
        seg = segment(image, backend=args.backend)
    except (ImageReadError, SegmentationError, ValueError) as exc:  # one line naming the file, never a traceback
        why = " ".join(str(exc).split())
        print(f"error: {why if why.startswith(args.image) else f'{args.image}: {why}'}", file=sys.stderr)
        return 1
    try:
        os.makedirs(args.out, exist_ok=True)
        _atomic_write(os.path.join(args.out, "masks.npz"),
                      lambda p: np.savez_compressed(p, **{k: v.astype(bool) for k, v in seg.masks.items()}))
        _atomic_write(os.path.join(args.out, "overlay.png"),
                      lambda p: Image.fromarray(overlay(image, seg.masks)).save(p, format="PNG"))
    except OSError as exc:
        print(f"error: --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    m = seg.measurements
    report = {"backend": seg.backend, "image_size": list(seg.shape),
              "cardiothoracic_ratio": m.get("cardiothoracic_ratio"), "area_fraction": m["area_fraction"],
              "costophrenic": m["costophrenic"], "apex_texture": m["apex_texture"], "seconds": m["seconds"]}
    print(json.dumps(report, indent=1))
    return 0
