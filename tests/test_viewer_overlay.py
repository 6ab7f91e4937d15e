import numpy as np
import pytest

from model import taxonomy
from viewer.overlay import compose_overlay, expand_selection, legend_html, to_gray_uint8, zoom


def _case():
    img = np.full((20, 30), 0.5, np.float32)
    heart = np.zeros((20, 30), bool)
    heart[5:15, 10:20] = True
    lung = np.zeros((20, 30), bool)
    lung[:, :8] = True
    return img, {"heart": heart, "right lung": lung}


def test_unselected_overlay_is_plain_gray():
    img, masks = _case()
    out = compose_overlay(img, masks, selected=[], opacity=0.5)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert (out == 128).all()


def test_selected_class_tinted_with_its_taxonomy_colour_only_inside_mask():
    img, masks = _case()
    out = compose_overlay(img, masks, selected=["heart"], opacity=1.0)
    assert tuple(out[10, 15]) == taxonomy.color("heart")
    assert tuple(out[0, 25]) == (128, 128, 128)
    assert tuple(out[10, 2]) == (128, 128, 128)  # right lung not selected


def test_superclass_selection_expands_to_members():
    img, masks = _case()
    group = next(sc for sc, members in taxonomy.SUPERCLASSES.items() if "right lung" in members)
    assert expand_selection([group], masks) == ["right lung"]
    out = compose_overlay(img, masks, selected=[group], opacity=1.0)
    assert tuple(out[10, 2]) == taxonomy.color("right lung")


def test_opacity_blends_linearly():
    img, masks = _case()
    out = compose_overlay(img, masks, selected=["heart"], opacity=0.5)
    expected = np.round(0.5 * 128 + 0.5 * np.array(taxonomy.color("heart")))
    assert np.abs(out[10, 15].astype(int) - expected).max() <= 1


def test_highlight_outlines_region_in_yellow():
    img, masks = _case()
    out = compose_overlay(img, masks, selected=[], highlight=["heart"], opacity=0.2)
    assert tuple(out[5, 12]) == (255, 255, 0)  # border pixel
    assert tuple(out[10, 15]) != (255, 255, 0)  # interior tinted, not outlined


def test_bad_inputs_raise_clear_errors():
    img, masks = _case()
    with pytest.raises(ValueError, match="not CXAS"):
        compose_overlay(img, masks, selected=["hart"])
    with pytest.raises(ValueError, match="opacity"):
        compose_overlay(img, masks, opacity=1.5)
    with pytest.raises(ValueError, match=r"mask 'heart' has shape \(5, 5\) but the image is \(20, 30\)"):
        compose_overlay(img, {"heart": np.zeros((5, 5), bool)})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_gray_uint8(np.full((4, 4), 2.0))


def test_legend_lists_names_with_colours_and_escapes():
    h = legend_html(["heart", "right lung"], highlight=["heart"])
    r, g, b = taxonomy.color("heart")
    assert f"rgb({r},{g},{b})" in h and "<b>heart</b>" in h and "right lung" in h
    with pytest.raises(ValueError):
        legend_html(["<script>"])
    assert "No overlay" in legend_html([])


def test_zoom_magnifies_center():
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[15:25, 15:25] = 255
    z = zoom(rgb, 4.0)
    assert z.shape == rgb.shape
    assert z[20, 20].min() > 200 and z.mean() > rgb.mean() * 3
    assert zoom(rgb, 1.0) is rgb
    with pytest.raises(ValueError, match="zoom"):
        zoom(rgb, 0.5)


def test_small_highlighted_region_is_drawn_over_a_large_one():
    img = np.full((20, 20), 0.5, np.float32)
    big = np.ones((20, 20), bool)
    small = np.zeros((20, 20), bool)
    small[8:12, 8:12] = True
    out = compose_overlay(img, {"heart": small, "cardiomediastinum": big}, highlight=["heart", "cardiomediastinum"],
                          opacity=1.0)
    assert tuple(out[10, 10]) == taxonomy.color("heart")


def test_legend_marks_estimated_classes_and_names_who_drew_them():
    from model.types import Segmentation
    from viewer.overlay import segmentation_legend_info
    m = np.zeros((8, 8), bool)
    seg = Segmentation(masks={"heart": m, "right lung base": m}, backend="unet",
                       measurements={"segmentation": {"confidence": 0.71, "uncertain": True,
                                                      "derived": ["right lung base"]}})
    estimated, source = segmentation_legend_info(seg)
    h = legend_html(["heart", "right lung base"], estimated=estimated, source=source)
    assert h.count("(estimated)") == 1 and "learned segmenter" in h and "0.71" in h and "low" in h
    atlas = Segmentation(masks={"heart": m}, backend="atlas")
    assert "atlas" in segmentation_legend_info(atlas)[1] and segmentation_legend_info(atlas)[0] == ["heart"]
