"""`python -m model generate [--model DIR] IMAGE...`: one JSON object per image on stdout."""
from __future__ import annotations

import argparse
import json
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="radiographs (PNG/JPEG/DICOM)")
    p.add_argument("--model", default=None, help="checkpoint directory (default: the embedded assets/model/)")
    p.add_argument("--masks", nargs="*", default=None, help="one .npz of CXAS name -> bool masks per image "
                                                            "(default: the segmenter's, when available)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--ground", action="store_true", help="ground every sentence (needs model.grounding)")
    p.add_argument("--method", default="ig-fast", choices=("ig-fast", "rollout", "saliency", "ablation", "ig"))
    p.add_argument("--out", default=None, help="with --ground: directory for heatmaps")


def _read_image(path: str):
    try:
        from model.imageio import read_radiograph
    except ModuleNotFoundError:
        import numpy as np
        from PIL import Image

        return np.asarray(Image.open(path).convert("L"))
    img = read_radiograph(path)
    return getattr(img, "pixels", img)


def _masks_for(image, mask_path: str | None):
    import numpy as np

    if mask_path:
        with np.load(mask_path) as z:
            return {k: z[k].astype(bool) for k in z.files}
    try:
        from model.segmentation import segment
    except ModuleNotFoundError:
        return None  # no segmenter in this build: regions count as missing (docs/model.md)
    return segment(image)


def run(args: argparse.Namespace) -> int:
    from model.s2d.generate import load_generator

    if args.masks is not None and len(args.masks) != len(args.images):
        raise SystemExit(f"error: {len(args.images)} images but {len(args.masks)} --masks files")
    for path in args.images:
        if not os.path.isfile(path):
            raise SystemExit(f"error: image not found: {path}")
    pipeline = None
    gen = load_generator(args.model, max_new_tokens=args.max_new_tokens)
    if args.ground:
        from model.pipeline import Pipeline

        pipeline = Pipeline(model_dir=args.model, method=args.method, generator=gen)
    for i, path in enumerate(args.images):
        image = _read_image(path)
        masks = _masks_for(image, args.masks[i] if args.masks else None)
        if pipeline is not None:
            payload = _grounded(pipeline, image, masks, path, args.out)
        else:
            payload = gen.generate(image, masks).to_report_output().to_dict()
        print(json.dumps({**payload, "image": path}))
        sys.stdout.flush()
    return 0


def _grounded(pipeline, image, masks, path: str, out_dir: str | None) -> dict:
    """segment (or the --masks given) -> generate -> ground, through model.pipeline as the app does."""
    from model.grounding import save_heatmaps
    from model.types import Segmentation

    if masks is None:
        raise SystemExit("error: --ground needs a segmentation: pass --masks or install the segmenter")
    if not isinstance(masks, Segmentation):  # --masks npz: measure them on this image
        from model.segmentation.measure import measure

        masks = Segmentation(masks=masks, backend="file", measurements=measure(image, masks))
    result = pipeline.analyse(image, segmentation=masks).report
    payload = result.to_dict()
    if out_dir:
        stem = os.path.splitext(os.path.basename(path))[0]
        payload["heatmaps"] = {str(k): v for k, v in save_heatmaps(result, out_dir, stem).items()}
    return payload
