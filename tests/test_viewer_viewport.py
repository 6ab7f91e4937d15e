"""The reading viewport: window / level on the stored full-depth pixels, zoom into full-resolution pixels, pan by
click, and opacity 0 hiding every outline."""
import numpy as np
import pytest

from viewer.overlay import compose_overlay
from viewer.viewport import Viewport, click_to_center, render_viewport, window_box, window_level


def _masks(side=64):
    m = np.zeros((side, side), bool)
    m[side // 4:side // 2, side // 4:side // 2] = True
    return {"heart": m}


def test_window_level_reads_the_full_depth_pixels_not_an_8_bit_preview():
    # 12-bit detail inside one 8-bit grey level: a preview would show a flat image
    full = (30000 + np.tile(np.arange(128, dtype=np.uint16), (128, 1)) // 2).astype(np.uint16)
    assert len(np.unique(np.round(full / 65535 * 255))) == 1
    level = float(full.mean()) / 65535
    rgb, _ = render_viewport(full, _masks(), Viewport(level=level, width=64 / 65535), opacity=0.0)
    assert len(np.unique(rgb[..., 0])) > 30
    plain, _ = render_viewport(full, _masks(), Viewport(), opacity=0.0)
    assert len(np.unique(plain[..., 0])) <= 2


def test_invert_reverses_the_window():
    px = np.linspace(0, 1, 11, dtype=np.float32)
    assert np.allclose(window_level(px, 0.5, 1.0, invert=True), 1 - px)
    with pytest.raises(ValueError, match="window width"):
        window_level(px, 0.5, 0.0)


def test_zoom_shows_the_full_resolution_pixels_of_the_window():
    rng = np.random.default_rng(0)
    full = rng.integers(0, 65535, (1024, 1024), dtype=np.uint16)  # stored at 1024, analysed at 64
    rgb, box = render_viewport(full, _masks(), Viewport(zoom=4.0, center=(0.25, 0.75)), opacity=0.0)
    top, left, h, w = window_box(full.shape, Viewport(zoom=4.0, center=(0.25, 0.75)))
    assert (h, w) == (256, 256) and box == (top / 1024, left / 1024, 0.25, 0.25)
    expect = np.round(full[top:top + h, left:left + w] / 65535 * 255).astype(np.uint8)
    assert np.array_equal(rgb[::2, ::2, 0], expect)  # shown at 512: each stored pixel a 2×2 block


def test_a_click_centres_the_view_where_it_landed():
    box = (0.5, 0.25, 0.25, 0.25)
    assert click_to_center(box, (512, 512), (256, 0)) == (0.5, 0.375)


def test_opacity_zero_hides_every_outline_even_the_selected_sentences():
    img = np.full((64, 64), 0.5, np.float32)
    out = compose_overlay(img, _masks(), selected=["heart"], opacity=0.0, highlight=["heart"])
    assert np.array_equal(out[..., 0], np.full((64, 64), 128, np.uint8)) and (out == out[..., :1]).all()
    lit = compose_overlay(img, _masks(), selected=[], opacity=0.05, highlight=["heart"])
    assert (lit != 128).any()
