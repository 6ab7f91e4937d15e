"""A sentence's attention map over the radiograph, with a colour bar."""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from viewer.overlay import to_gray_uint8

CMAP = "inferno"


def _resize_heat(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if heat.shape == shape:
        return heat
    im = Image.fromarray(heat.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(im), 0.0, 1.0)


def render_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, bar_width: int = 48) -> np.ndarray:
    """Radiograph (H×W) with `heat` (h×w float in [0, 1], resized to H×W) blended at `alpha`, and a vertical
    colour bar (0 at the bottom, 1 at the top) appended on the right. Returns H×(W+bar_width)×3 uint8."""
    gray = to_gray_uint8(image)
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {heat.shape}")
    if not np.isfinite(heat).all():
        raise ValueError("heatmap contains NaN or infinite values")
    if heat.min() < 0.0 or heat.max() > 1.0:
        raise ValueError(f"heatmap must lie in [0, 1], got [{heat.min():.3g}, {heat.max():.3g}]")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    h, w = gray.shape
    heat = _resize_heat(heat, (h, w))
    cmap = colormaps[CMAP]
    coloured = cmap(heat)[..., :3] * 255.0  # H×W×3
    # Weight the blend by the heat itself so cold areas keep the radiograph readable.
    a = alpha * heat[..., None]
    base = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    blended = np.clip(np.round((1.0 - a) * base + a * coloured), 0, 255).astype(np.uint8)
    return np.concatenate([blended, colour_bar(h, bar_width)], axis=1)


def colour_bar(height: int, width: int = 48) -> np.ndarray:
    """A vertical colour bar for CMAP, labelled 1 at the top and 0 at the bottom: height×width×3 uint8."""
    strip = max(8, width // 3)
    values = np.linspace(1.0, 0.0, height, dtype=np.float32)  # top = 1
    bar = np.full((height, width, 3), 255, np.uint8)
    bar[:, :strip] = (colormaps[CMAP](values)[:, :3] * 255).astype(np.uint8)[:, None, :]
    im = Image.fromarray(bar)
    draw = ImageDraw.Draw(im)
    draw.text((strip + 3, 2), "1", fill=(0, 0, 0))
    draw.text((strip + 3, height // 2 - 6), ".5", fill=(0, 0, 0))
    draw.text((strip + 3, height - 14), "0", fill=(0, 0, 0))
    return np.asarray(im)
