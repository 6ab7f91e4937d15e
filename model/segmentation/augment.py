"""Training augmentations for the learned segmenter: MONAI's dictionary transforms for geometry, exposure, blur and
noise, plus what MONAI has no transform for and real films are full of: collimation edges, lead markers and
burned-in text, tubes, lines and ECG wires, and 8-bit quantisation. Image keys only for the photometric ones; the
affine moves image and label together (never a flip: left and right are labels)."""
from __future__ import annotations

import cv2
import numpy as np
from monai.transforms import (Compose, MapTransform, RandAdjustContrastd, RandAffined, RandGaussianNoised,
                              RandGaussianSmoothd, RandHistogramShiftd, RandomizableTransform, RandScaleIntensityd,
                              RandShiftIntensityd)


class _RandImageOp(RandomizableTransform, MapTransform):
    """Applies `self.op(image[0], rng)` to the image with probability `prob`."""

    def __init__(self, prob: float):
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, ["image"])

    def __call__(self, data):
        d = dict(data)
        self.randomize(None)
        if self._do_transform:
            img = np.array(d["image"][0], dtype=np.float32, copy=True)
            d["image"] = self.op(img, self.R)[None]
        return d

    def op(self, img: np.ndarray, rng) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class RandCollimation(_RandImageOp):
    """Dark (sometimes bright) bands at the edges where the collimator or the detector ends."""

    def op(self, img, rng):
        s = img.shape[0]
        value = 0.0 if rng.random() < 0.8 else 1.0
        for side in range(4):
            if rng.random() < 0.5:
                w = int(rng.uniform(0.02, 0.09) * s)
                if side == 0:
                    img[:w] = value
                elif side == 1:
                    img[-w:] = value
                elif side == 2:
                    img[:, :w] = value
                else:
                    img[:, -w:] = value
        return img


class RandMarkers(_RandImageOp):
    """Lead side markers and burned-in annotations: small bright letters and boxes."""

    def op(self, img, rng):
        s = img.shape[0]
        for _ in range(int(rng.randint(1, 4))):
            x, y = int(rng.uniform(0, 0.85) * s), int(rng.uniform(0.03, 0.97) * s)
            text = ("L", "R", "AP", "PA", "SUPINE", "PORTABLE", "ERECT")[int(rng.randint(0, 7))]
            scale = rng.uniform(0.3, 0.9) * s / 256
            ink = np.zeros(img.shape, np.uint8)  # OpenCV draws text on 8-bit images only
            cv2.putText(ink, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, max(1, int(round(2 * scale))),
                        cv2.LINE_AA)
            img = np.maximum(img, ink.astype(np.float32) / 255 * float(rng.uniform(0.85, 1.0)))
        return img


class RandTubesAndWires(_RandImageOp):
    """Endotracheal and nasogastric tubes, central lines and ECG leads: thin bright curves and electrode discs."""

    def op(self, img, rng):
        s = img.shape[0]
        for _ in range(int(rng.randint(1, 5))):
            p = rng.uniform(0.05, 0.95, (4, 2)) * s
            t = np.linspace(0, 1, 40)[:, None]
            curve = ((1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2] + t ** 3 * p[3])
            cv2.polylines(img, [np.round(curve).astype(np.int32)], False, float(rng.uniform(0.6, 1.0)),
                          int(rng.randint(1, 4)), cv2.LINE_AA)
        for _ in range(int(rng.randint(0, 4))):
            c = (int(rng.uniform(0.1, 0.9) * s), int(rng.uniform(0.1, 0.9) * s))
            cv2.circle(img, c, int(rng.randint(3, 7) * s / 256), float(rng.uniform(0.7, 1.0)), -1, cv2.LINE_AA)
        return img


class RandQuantise(_RandImageOp):
    """8-bit (and coarser) storage: the same film arrives as 16-bit DICOM or as an 8-bit PNG."""

    def op(self, img, rng):
        levels = 2 ** int(rng.choice([5, 6, 8]))
        return np.round(np.clip(img, 0, 1) * (levels - 1)) / (levels - 1)


class ClipUnit(MapTransform):
    def __call__(self, data):
        d = dict(data)
        d["image"] = np.clip(np.asarray(d["image"], dtype=np.float32), 0, 1)
        return d


def build_augment(seed: int = 0) -> Compose:
    size_jitter = (-0.18, 0.22)  # AP magnification and supine films: the chest fills more or less of the film
    t = Compose([
        RandAffined(keys=["image", "label"], prob=0.9, rotate_range=(np.radians(12),), shear_range=(0.05, 0.05),
                    scale_range=(size_jitter, size_jitter), translate_range=(20, 20), mode=("bilinear", "nearest"),
                    padding_mode="zeros"),
        RandAdjustContrastd(keys=["image"], prob=0.5, gamma=(0.6, 1.7)),
        RandScaleIntensityd(keys=["image"], prob=0.3, factors=0.2),
        RandShiftIntensityd(keys=["image"], prob=0.3, offsets=0.1),
        RandHistogramShiftd(keys=["image"], prob=0.2, num_control_points=(5, 10)),
        RandCollimation(prob=0.3),
        RandMarkers(prob=0.4),
        RandTubesAndWires(prob=0.5),
        RandGaussianSmoothd(keys=["image"], prob=0.2, sigma_x=(0.3, 1.2), sigma_y=(0.3, 1.2)),
        RandGaussianNoised(keys=["image"], prob=0.3, std=0.03),
        ClipUnit(["image"]),
        RandQuantise(prob=0.3),
    ])
    t.set_random_state(seed=seed)
    return t
