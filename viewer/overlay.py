"""CXAS overlays: radiograph + named masks -> RGB, with a legend, highlighting and zoom."""
from __future__ import annotations

import html
from collections.abc import Iterable, Mapping

import numpy as np
from PIL import Image

from model import taxonomy


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """A radiograph as H×W uint8. Accepts float in [0, 1] or uint8, H×W or H×W×{1,3,4} (first channel)."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = img[..., 0]
    if img.ndim != 2:
        raise ValueError(f"expected an H×W (or H×W×C) radiograph, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float32)
    if not np.isfinite(img).all():
        raise ValueError("radiograph contains NaN or infinite values")
    if img.min() < 0.0 or img.max() > 1.0:
        raise ValueError(f"float radiograph must lie in [0, 1], got [{img.min():.3g}, {img.max():.3g}]")
    return np.round(img * 255.0).astype(np.uint8)


def expand_selection(selected: Iterable[str], available: Iterable[str]) -> list[str]:
    """Selected CXAS class and superclass names -> the available class names they cover, in a stable order.

    A superclass stands for all of its member classes; names not in the taxonomy raise (a typo would otherwise
    silently show nothing)."""
    selected = list(selected)
    taxonomy.validate_names(selected)
    available = list(available)
    wanted: set[str] = set()
    for name in selected:
        wanted.update(taxonomy.SUPERCLASSES.get(name, (name,)))
    return [n for n in available if n in wanted]


def _edge(mask: np.ndarray) -> np.ndarray:
    # A 1-pixel inner outline: mask pixels with at least one 4-neighbour outside the mask.
    m = mask.astype(bool)
    p = np.pad(m, 1, constant_values=False)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def compose_overlay(image: np.ndarray, masks: Mapping[str, np.ndarray], selected: Iterable[str] = (),
                    opacity: float = 0.4, highlight: Iterable[str] = ()) -> np.ndarray:
    """Blend the selected CXAS masks over the radiograph.

    image: H×W float [0, 1] or uint8. masks: CXAS name -> bool H×W. selected: class or superclass names shown
    at `opacity`; highlight: names drawn on top, stronger and outlined (the regions of the selected sentence).
    Opacity 0 draws nothing at all. Returns H×W×3 uint8.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    gray = to_gray_uint8(image)
    h, w = gray.shape
    for name, m in masks.items():
        if m.shape != (h, w):
            raise ValueError(f"mask '{name}' has shape {m.shape} but the image is {(h, w)}")
    out = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)  # H×W×3
    if opacity == 0.0:  # "hide the overlays" hides every one, the selected sentence's outline included
        return np.repeat(gray[..., None], 3, axis=2)
    shown = expand_selection(selected, masks)
    # Largest first, so a small structure inside a large one (heart in cardiomediastinum) stays visible on top.
    lit = sorted(expand_selection(highlight, masks), key=lambda n: -int(masks[n].sum()))
    for name in shown:
        m = masks[name].astype(bool)
        out[m] = (1.0 - opacity) * out[m] + opacity * np.array(taxonomy.color(name), np.float32)
    strong = max(opacity, 0.6)
    for name in lit:
        m = masks[name].astype(bool)
        c = np.array(taxonomy.color(name), np.float32)
        out[m] = (1.0 - strong) * out[m] + strong * c
        out[_edge(m)] = (255.0, 255.0, 0.0)  # yellow outline: visible on every class colour
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def legend_html(names: Iterable[str], highlight: Iterable[str] = (), estimated: Iterable[str] = (),
                source: str | None = None) -> str:
    """One swatch per CXAS name, grouped by display superclass; highlighted names in bold. `estimated`: names drawn
    by geometry from the learned masks rather than learned themselves (marked so); `source`: who drew the masks
    and how sure it is, shown under the swatches."""
    names = list(dict.fromkeys(names))
    taxonomy.validate_names(names)
    lit, guessed = set(highlight), set(estimated)
    if not names:
        return '<div class="gcxr-legend"><em>No overlay selected.</em></div>'
    by_group: dict[str, list[str]] = {}
    for n in names:
        by_group.setdefault(taxonomy.DISPLAY_GROUP.get(n, n), []).append(n)
    parts = ['<div class="gcxr-legend">']
    for group, members in by_group.items():
        parts.append(f'<div class="gcxr-legend-group"><span class="gcxr-legend-title" style="margin-right:0.6em;color:#57606a">{html.escape(group)}:</span>')
        for n in members:
            r, g, b = taxonomy.color(n)
            label = f"<b>{html.escape(n)}</b>" if n in lit else html.escape(n)
            if n in guessed:
                label += ' <span class="gcxr-estimated" title="a geometric estimate from the learned lungs and heart, ' \
                         'not segmented itself" style="color:#57606a">(estimated)</span>'
            parts.append(f'<span class="gcxr-legend-item" data-region="{html.escape(n, quote=True)}">'
                         f'<span class="gcxr-swatch" style="display:inline-block;width:0.9em;height:0.9em;'
                         f'background:rgb({r},{g},{b});margin-right:0.3em"></span>{label}</span>&ensp;')
        parts.append("</div>")
    if source:
        parts.append(f'<div class="gcxr-legend-source" style="color:#57606a">{html.escape(source)}</div>')
    parts.append("</div>")
    return "".join(parts)


def zoom(rgb: np.ndarray, factor: float, center: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """Crop a 1/factor window around `center` (fractions of height, width) and scale it back to full size."""
    if factor < 1.0:
        raise ValueError(f"zoom factor must be >= 1, got {factor}")
    if factor == 1.0:
        return rgb
    h, w = rgb.shape[:2]
    ch, cw = max(1, round(h / factor)), max(1, round(w / factor))
    top = int(np.clip(round(center[0] * h - ch / 2), 0, h - ch))
    left = int(np.clip(round(center[1] * w - cw / 2), 0, w - cw))
    crop = rgb[top:top + ch, left:left + cw]
    return np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.LANCZOS))


def segmentation_legend_info(segmentation) -> tuple[list[str], str]:
    """(names drawn by geometry rather than learned, a plain line naming who drew the outlines and how sure it is)
    for a `model.types.Segmentation`."""
    note = (segmentation.measurements or {}).get("segmentation") or {}
    if segmentation.backend == "unet":
        conf = note.get("confidence")
        sure = "" if conf is None else (f"; confidence {conf:.2f}" + (" (low: check the outlines)"
                                                                       if note.get("uncertain") else ""))
        return list(note.get("derived", [])), f"Outlines: learned segmenter (lungs, heart){sure}"
    if segmentation.backend == "atlas":
        return [n for n in segmentation.masks], "Outlines: atlas (image processing, no learned weights): all estimates"
    return [], f"Outlines: {segmentation.backend} segmenter"
