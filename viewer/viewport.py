"""The radiograph as a reader looks at it: a window of the full-resolution, full-depth pixels (zoom and pan), with
window / level and invert applied to those pixels (not to an 8-bit preview), and the anatomy overlays on top.

    vp = Viewport(zoom=2.0, center=(0.4, 0.6), level=0.45, width=0.5, invert=False)
    rgb, box = render_viewport(full, masks, vp, shown=["lung halves"], opacity=0.35, highlight=["heart"])

`full`: H×W (float in [0, 1], or uint16) at the stored resolution and bit depth; `masks`: at the analysis size (any size with
the same aspect); `box` is the window shown, (top, left, height, width) as fractions of the image, which is what
turns a click on the picture into a new centre (`click_to_center`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from viewer.overlay import compose_overlay

MIN_SIDE = 512  # a small film (phantoms are 256 px) is enlarged pixel-exact to at least this
MAX_SIDE = 1024  # a large window is reduced to this; zoom in to see its own pixels


@dataclass(frozen=True)
class Viewport:
    zoom: float = 1.0  # 1 = the whole film; k = 1/k of each side
    center: tuple[float, float] | None = None  # (row, column) as fractions; None = the image centre
    level: float = 0.5  # window centre, in the stored pixels' [0, 1] range
    width: float = 1.0  # window width; (0.5, 1.0) = the pixels as stored
    invert: bool = False


def window_level(pixels: np.ndarray, level: float, width: float, invert: bool = False) -> np.ndarray:
    """Pixels (float in [0, 1], or uint16 / uint8 full scale) through a window: level - width/2 -> black,
    level + width/2 -> white (inverted: reversed); float32 in [0, 1]."""
    if not 0.0 < width <= 2.0:
        raise ValueError(f"window width must be in (0, 2], got {width}")
    scale = {np.dtype(np.uint16): 65535.0, np.dtype(np.uint8): 255.0}.get(pixels.dtype, 1.0)
    out = np.clip((pixels.astype(np.float32) / scale - (level - width / 2.0)) / width, 0.0, 1.0)
    return 1.0 - out if invert else out


def window_box(shape: tuple[int, int], vp: Viewport) -> tuple[int, int, int, int]:
    """(top, left, height, width) in pixels of `shape` that the viewport shows, kept inside the image."""
    if vp.zoom < 1.0:
        raise ValueError(f"zoom must be >= 1, got {vp.zoom}")
    h, w = shape
    ch, cw = max(1, round(h / vp.zoom)), max(1, round(w / vp.zoom))
    cy, cx = vp.center or (0.5, 0.5)
    top = int(np.clip(round(cy * h - ch / 2), 0, h - ch))
    left = int(np.clip(round(cx * w - cw / 2), 0, w - cw))
    return top, left, ch, cw


def display_shape(ch: int, cw: int) -> tuple[int, int]:
    if max(ch, cw) > MAX_SIDE:
        k = MAX_SIDE / max(ch, cw)
        return max(1, round(ch * k)), max(1, round(cw * k))
    k = max(1, -(-MIN_SIDE // min(ch, cw)))  # integer, so small films stay pixel-exact
    return ch * k, cw * k


def _resize(a: np.ndarray, shape: tuple[int, int], nearest: bool) -> np.ndarray:
    if a.shape == shape:
        return a
    h, w = shape
    if nearest:
        rows = (np.arange(h) * a.shape[0] // h).clip(0, a.shape[0] - 1)
        cols = (np.arange(w) * a.shape[1] // w).clip(0, a.shape[1] - 1)
        return a[rows][:, cols]
    step = max(1, min(a.shape) // (2 * min(shape)))  # a large reduction: stride first, then filter the rest
    img = Image.fromarray(np.ascontiguousarray(a[::step, ::step], dtype=np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def render_viewport(full: np.ndarray, masks: Mapping[str, np.ndarray], vp: Viewport, shown: Iterable[str] = (),
                    opacity: float = 0.35, highlight: Iterable[str] = ()
                    ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The window of `full` the viewport shows, windowed and overlaid -> (H'×W'×3 uint8, box as fractions)."""
    h, w = full.shape
    top, left, ch, cw = window_box((h, w), vp)
    shape = display_shape(ch, cw)
    crop = window_level(full[top:top + ch, left:left + cw], vp.level, vp.width, vp.invert)
    gray = _resize(crop, shape, nearest=ch <= shape[0])
    box = (top / h, left / w, ch / h, cw / w)
    shown_masks = {}
    for name, m in masks.items():
        mh, mw = m.shape
        r0, c0 = int(round(box[0] * mh)), int(round(box[1] * mw))
        r1, c1 = max(r0 + 1, int(round((box[0] + box[2]) * mh))), max(c0 + 1, int(round((box[1] + box[3]) * mw)))
        shown_masks[name] = _resize(np.asarray(m, bool)[r0:r1, c0:c1], shape, nearest=True)
    rgb = compose_overlay(np.clip(gray, 0.0, 1.0), shown_masks, selected=shown, opacity=opacity,
                          highlight=highlight)
    return rgb, box


def click_to_center(box: tuple[float, float, float, float], shown_shape: tuple[int, int],
                    xy: tuple[float, float]) -> tuple[float, float]:
    """A click at pixel (x, y) of the picture shown for `box` -> that point as the new centre (fractions)."""
    x, y = xy
    return (float(np.clip(box[0] + box[2] * y / shown_shape[0], 0.0, 1.0)),
            float(np.clip(box[1] + box[3] * x / shown_shape[1], 0.0, 1.0)))


def center_of(masks: Mapping[str, np.ndarray], names: Iterable[str]) -> tuple[float, float] | None:
    """The centroid of the named masks as fractions, None when they cover nothing."""
    lit = [np.asarray(masks[n], bool) for n in names if n in masks]
    if not lit:
        return None
    ys, xs = np.nonzero(np.any(lit, axis=0))
    if len(ys) == 0:
        return None
    return float(ys.mean()) / lit[0].shape[0], float(xs.mean()) / lit[0].shape[1]
