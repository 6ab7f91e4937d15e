"""Optional CXAS backend: the third-party `cxas` package (Seibold C. et al., 159 PAX-Ray++ classes).

Never required and never in our requirements: it pulls torchvision and fetches its own weights (to ~/weights/),
and its licence is CC BY-NC-SA 4.0 (non-commercial). Imported lazily; when it is absent or its weights cannot be
loaded offline, a SegmentationError says so. Its class order is the taxonomy's (assets/cxas/ comes from it).
"""
from __future__ import annotations

import importlib.util
import os
import tempfile

import cv2
import numpy as np

from model.segmentation.errors import SegmentationError

MODEL_NAME = "UNet_ResNet50_default"
ABSENT = ("the 'cxas' backend needs the third-party `cxas` package and its model weights (licence CC BY-NC-SA "
          "4.0, non-commercial); install them yourself (pip install cxas, then run it once online to fetch the "
          "weights) or use --backend atlas")


def available() -> bool:
    return importlib.util.find_spec("cxas") is not None


def segment_cxas(image: np.ndarray, working_size: int = 256):
    """image: float32 H×W in [0, 1]. Features: the 159 masks pooled to 32×32 (FEATURE_CHANNELS['cxas'])."""
    if not available():
        raise SegmentationError(ABSENT)
    from PIL import Image

    from model.segmentation.output import build, pool_features
    from model.taxonomy import CLASS_NAMES

    try:
        from cxas import CXAS

        net = CXAS(model_name=MODEL_NAME, gpus="")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "image.png")
            Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)
            pred = net.process_file(path, do_store=False, output_directory=tmp)
            stack = net.resize_to_numpy(pred["segmentation_preds"][0], (working_size, working_size))  # [159, S, S]
    except Exception as exc:  # no weights offline, a broken torchvision, an API change: all the user's to fix
        raise SegmentationError(f"the `cxas` package failed ({type(exc).__name__}: {exc}); {ABSENT}") from None
    if stack.shape[0] != len(CLASS_NAMES):
        raise SegmentationError(f"`cxas` returned {stack.shape[0]} classes, the taxonomy has {len(CLASS_NAMES)}")
    x = cv2.resize(image.astype(np.float32), (working_size, working_size), interpolation=cv2.INTER_AREA)
    masks = {name: stack[i].astype(bool) for i, name in enumerate(CLASS_NAMES)}
    return build(x, masks, image.shape, "cxas", pool_features(stack.astype(np.float32)),
                 extra={"licence": "CXAS weights: CC BY-NC-SA 4.0 (non-commercial)"})
