import numpy as np
import pytest
from matplotlib import colormaps

from viewer.heatmap import CMAP, colour_bar, render_heatmap


def test_heatmap_appends_colour_bar_and_colours_hot_region():
    img = np.full((32, 32), 0.5, np.float32)
    heat = np.zeros((32, 32), np.float32)
    heat[8:16, 8:16] = 1.0
    out = render_heatmap(img, heat, alpha=1.0, bar_width=40)
    assert out.shape == (32, 72, 3) and out.dtype == np.uint8
    hot = np.round(np.array(colormaps[CMAP](1.0)[:3]) * 255)
    assert np.abs(out[10, 10].astype(int) - hot).max() <= 1
    assert (out[0, 0] == 128).all()  # zero heat leaves the radiograph untouched


def test_heatmap_is_resized_to_image():
    out = render_heatmap(np.zeros((40, 20)), np.ones((10, 5), np.float32), bar_width=30)
    assert out.shape == (40, 50, 3)


def test_colour_bar_runs_hot_at_top_to_cold_at_bottom():
    bar = colour_bar(100, 30)
    top, bottom = bar[0, 2].astype(int), bar[-1, 2].astype(int)
    assert top.sum() > bottom.sum()


def test_heatmap_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        render_heatmap(np.zeros((4, 4)), np.full((4, 4), 1.5))
    with pytest.raises(ValueError, match="2-D"):
        render_heatmap(np.zeros((4, 4)), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        render_heatmap(np.zeros((4, 4)), np.full((4, 4), np.nan))
