"""Segmentation: derivations on hand-made lung masks, the atlas on a drawn chest, refusals, CLI, measurements."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT
from model.segmentation import FEATURE_CHANNELS, FEATURE_SIZE, SegmentationError, segment
from model.segmentation.derive import DERIVED_REGIONS, add_superclasses, derive_regions
from model.segmentation.measure import cardiothoracic_ratio, costophrenic, measure
from model.taxonomy import is_valid_name

S = 128


def _lungs(size=S, heart_half_width=0.16):
    """Two lung fields (ellipses) with a heart-shaped notch carved from their lower medial sides."""
    right = np.zeros((size, size), np.uint8)
    left = np.zeros((size, size), np.uint8)
    cv2.ellipse(right, (int(0.3 * size), int(0.48 * size)), (int(0.16 * size), int(0.34 * size)), 0, 0, 360, 1, -1)
    cv2.ellipse(left, (int(0.7 * size), int(0.48 * size)), (int(0.16 * size), int(0.34 * size)), 0, 0, 360, 1, -1)
    heart = np.zeros((size, size), np.uint8)
    cv2.ellipse(heart, (int(0.52 * size), int(0.68 * size)), (int(heart_half_width * size), int(0.14 * size)),
                0, 0, 360, 1, -1)
    return right.astype(bool) & ~heart.astype(bool), left.astype(bool) & ~heart.astype(bool), heart.astype(bool)


def _chest(size=256, heart_half_width=0.16, rng_seed=0):
    """A drawn frontal chest: dark outside, bright body, dark lung fields, bright heart, textured lungs."""
    right, left, _ = _lungs(size, heart_half_width)
    img = np.zeros((size, size), np.float32)
    body = np.zeros((size, size), np.uint8)
    cv2.ellipse(body, (size // 2, size // 2), (int(0.47 * size), int(0.6 * size)), 0, 0, 360, 1, -1)
    img[body.astype(bool)] = 0.75
    img[right | left] = 0.3
    rng = np.random.default_rng(rng_seed)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.0), 0, 1), right, left


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_zones_partition_each_lung_top_to_bottom():
    right, left, _ = _lungs()
    masks, _ = derive_regions(right, left)
    for side, lung in (("right", right), ("left", left)):
        up, mid, base = (masks[f"{side} {z}"] for z in ("upper zone lung", "mid zone lung", "lung base"))
        assert not (up & mid).any() and not (mid & base).any() and not (up & base).any()
        np.testing.assert_array_equal(up | mid | base, lung)
        rows = lambda m: np.flatnonzero(m.any(1))  # noqa: E731
        assert rows(up).max() < rows(mid).min() and rows(mid).max() < rows(base).min()
        apical = masks[f"{side} apical zone lung"]
        assert apical.any() and not (apical & ~up).any()  # the apex is the top of the upper zone
        assert rows(apical).min() == rows(lung).min()


def test_lobes_cover_lungs_and_follow_the_fissures():
    right, left, _ = _lungs()
    m, _ = derive_regions(right, left)
    np.testing.assert_array_equal(m["lung upper lobe right"] | m["lung middle lobe right"]
                                  | m["lung lower lobe right"], right)
    np.testing.assert_array_equal(m["lung upper lobe left"] | m["lung lower lobe left"], left)
    # Middle lobe is medial and below the horizontal fissure; the lower lobe holds the lateral base.
    ys, xs = np.nonzero(m["lung middle lobe right"])
    ly, lx = np.nonzero(m["lung lower lobe right"])
    assert xs.mean() > lx.mean() and ys.min() > np.nonzero(m["lung upper lobe right"])[0].mean()


def test_heart_lies_between_lungs_and_matches_the_carved_notch():
    right, left, heart = _lungs()
    m, lm = derive_regions(right, left)
    assert _dice(m["heart"], heart & ~right & ~left) > 0.75
    assert not (m["heart"] & (right | left)).any()
    assert m["cardiomediastinum"][m["heart"]].all()
    assert not (m["upper mediastinum"] & m["lower mediastinum"]).any()
    hy = np.nonzero(m["heart"])[0].mean()
    assert lm["carina_row"] < hy


def test_trachea_above_carina_and_hemidiaphragms_under_each_lung():
    right, left, _ = _lungs()
    m, lm = derive_regions(right, left)
    ty, tx = np.nonzero(m["trachea"])
    assert ty.max() <= lm["carina_row"] and abs(tx.mean() - S / 2) < 0.1 * S
    for side, lung in (("right", right), ("left", left)):
        dy, dx = np.nonzero(m[f"{side} hemidiaphragm"])
        ly, lx = np.nonzero(lung)
        assert not (m[f"{side} hemidiaphragm"] & lung).any()
        assert dy.mean() > ly.mean() and abs(dx.mean() - lx.mean()) < 0.1 * S


def test_derive_refuses_mismatched_or_empty_lungs():
    right, left, _ = _lungs()
    with pytest.raises(ValueError, match="differ in shape"):
        derive_regions(right, left[:-1])
    with pytest.raises(ValueError, match="non-empty"):
        derive_regions(right, np.zeros_like(left))


def test_superclasses_are_unions_with_valid_names():
    right, left, _ = _lungs()
    m = add_superclasses(derive_regions(right, left)[0])
    assert all(is_valid_name(k) for k in m)
    np.testing.assert_array_equal(m["lung halves"], right | left)
    np.testing.assert_array_equal(m["diaphragm"], m["right hemidiaphragm"] | m["left hemidiaphragm"])


def test_cardiothoracic_ratio_and_costophrenic_sharpness():
    right, left, heart = _lungs()
    ctr = cardiothoracic_ratio(heart, right, left)
    hx = np.flatnonzero(heart.any(0))
    lx = np.flatnonzero((right | left).any(0))
    assert ctr == pytest.approx((hx[-1] - hx[0] + 1) / (lx[-1] - lx[0] + 1), abs=0.02)
    # A right lung whose lateral wall meets a rising dome in a deep recess, then the same with the recess
    # filled by a meniscus of fluid (the corner cut off).
    sharp = np.zeros((S, S), np.uint8)
    cv2.fillPoly(sharp, [np.array([[50, 10], [60, 10], [60, 90], [12, 115], [22, 20]], np.int32)], 1)
    blunt = sharp.copy()
    cv2.fillPoly(blunt, [np.array([[0, 127], [0, 85], [45, 127]], np.int32)], 0)
    a = costophrenic(sharp.astype(bool), lateral_is_left=True)
    b = costophrenic(blunt.astype(bool), lateral_is_left=True)
    assert a["angle_deg"] < 70 and b["angle_deg"] > a["angle_deg"] + 20
    assert a["sharpness"] > b["sharpness"]


def test_apex_texture_drops_without_markings():
    img, right, left = _chest()
    m = add_superclasses(derive_regions(right, left)[0])
    rng = np.random.default_rng(1)
    textured = img + rng.normal(0, 0.05, img.shape).astype(np.float32) * (right | left)
    flat_apex = textured.copy()
    flat_apex[m["right apical zone lung"]] = 0.3  # no markings at the right apex (pneumothorax-like)
    assert measure(flat_apex, m)["apex_texture"]["right"] < 0.5 * measure(textured, m)["apex_texture"]["right"]


def test_measure_refuses_mismatched_shapes():
    right, left, _ = _lungs()
    with pytest.raises(ValueError, match="mask 'right lung'"):
        measure(np.zeros((S + 1, S), np.float32), {"right lung": right})


def test_atlas_segments_a_drawn_chest_at_any_size_and_bit_depth():
    img, right, left = _chest(256)
    seg = segment(img, backend="atlas")
    assert seg.backend == "atlas" and seg.shape == (256, 256)
    assert _dice(seg.masks["right lung"], right) > 0.85 and _dice(seg.masks["left lung"], left) > 0.85
    assert seg.features.shape == (FEATURE_CHANNELS["atlas"], FEATURE_SIZE, FEATURE_SIZE)
    assert seg.features.dtype == np.float32
    assert all(is_valid_name(k) for k in seg.masks) and set(DERIVED_REGIONS) <= set(seg.masks)
    assert 0.2 < seg.measurements["cardiothoracic_ratio"] < 0.7
    # 16-bit RGB at another size: masks come back at that size, lungs in the same place.
    big = cv2.resize(img, (300, 360))
    rgb16 = np.dstack([(big * 65535).astype(np.uint16)] * 3)
    seg2 = segment(rgb16, backend="atlas")
    assert seg2.shape == (360, 300)
    small_r = cv2.resize(seg2.masks["right lung"].astype(np.uint8), (256, 256), interpolation=cv2.INTER_NEAREST)
    assert _dice(small_r.astype(bool), right) > 0.8


def test_larger_heart_gives_larger_ctr():
    ctrs = [segment(_chest(256, hw)[0], backend="atlas").measurements["cardiothoracic_ratio"] for hw in (0.12, 0.2)]
    assert ctrs[1] > ctrs[0] + 0.05


@pytest.mark.parametrize("image,needle", [
    (np.full((128, 128), 0.5, np.float32), "blank"),
    (np.random.default_rng(0).random((128, 128)).astype(np.float32), "noise"),
])
@pytest.mark.parametrize("backend", ["atlas", "unet"])
def test_non_radiographs_are_refused(image, needle, backend):
    from model.segmentation import unet
    if backend == "unet" and not unet.weights_available():
        pytest.skip("no unet weights shipped")
    with pytest.raises(SegmentationError, match=needle):
        segment(image, backend=backend)


def test_atlas_refuses_a_single_lung_field():
    img, right, left = _chest()
    lateral_like = img.copy()
    lateral_like[left] = 0.75  # only one dark field: the shape of a lateral view
    with pytest.raises(SegmentationError, match="not a frontal|lateral"):
        segment(lateral_like, backend="atlas")


def test_unknown_backend_and_missing_cxas_are_clear():
    img, _, _ = _chest()
    with pytest.raises(ValueError, match="unknown segmentation backend"):
        segment(img, backend="magic")
    import importlib.util
    if importlib.util.find_spec("cxas") is None:
        with pytest.raises(SegmentationError, match="cxas"):
            segment(img, backend="cxas")


def test_auto_without_unet_weights_is_the_atlas(monkeypatch):
    from model.segmentation import unet
    monkeypatch.setattr(unet, "weights_available", lambda path=unet.WEIGHTS_PATH: False)
    seg = segment(_chest()[0], backend="auto")
    assert seg.backend == "atlas" and seg.measurements["auto"]["chosen"] == "atlas"


def test_auto_is_the_unet_when_its_weights_are_there(monkeypatch):
    from model.segmentation import unet
    from model.segmentation.atlas import segment_atlas
    monkeypatch.setattr(unet, "weights_available", lambda path=unet.WEIGHTS_PATH: True)

    def fake_unet(x, path=None):
        seg = segment_atlas(x)
        seg.backend = "unet"
        return seg
    monkeypatch.setattr(unet, "segment_unet", fake_unet)
    seg = segment(_chest()[0], backend="auto")
    assert seg.backend == "unet" and seg.measurements["auto"]["chosen"] == "unet"


def test_cli_writes_masks_overlay_and_json(tmp_path):
    from PIL import Image
    img, _, _ = _chest()
    path = tmp_path / "chest.png"
    Image.fromarray((img * 255).astype(np.uint8)).save(path)
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "model", "segment", str(path), "--backend", "atlas", "--out",
                          str(out)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["backend"] == "atlas" and 0.2 < report["cardiothoracic_ratio"] < 0.7
    assert report["area_fraction"]["right lung"] > 0.05
    with np.load(out / "masks.npz") as npz:
        assert npz["right lung"].dtype == bool and npz["right lung"].shape == (256, 256)
    assert Image.open(out / "overlay.png").size == (256, 256)
    assert sorted(os.listdir(out)) == ["masks.npz", "overlay.png"]  # no temp file left behind


def test_cli_reports_bad_input_without_writing(tmp_path):
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "model", "segment", str(bad), "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 1 and "empty" in res.stderr and not out.exists()


def test_real_frontals_plausible_and_laterals_refused(shared_data):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from bench_segmentation import FRONTAL, LATERAL
    for rel in FRONTAL:
        seg = segment(os.path.join(shared_data, rel))
        m = seg.masks
        w = seg.shape[1]
        assert np.nonzero(m["right lung"])[1].mean() < w / 2 < np.nonzero(m["left lung"])[1].mean(), rel
        assert 0.15 <= (m["right lung"] | m["left lung"]).mean() <= 0.5, rel
    for rel in LATERAL:
        with pytest.raises(SegmentationError):
            segment(os.path.join(shared_data, rel))
