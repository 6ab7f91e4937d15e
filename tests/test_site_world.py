"""benchmarks/site_world.py: a second site's copy of a phantom world (issue 18's site benchmark)."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import site_world  # noqa: E402


def test_gamma_lookup_keeps_black_and_white_and_brightens_mid_tones():
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(site_world.apply_gamma(ramp, 1.0), ramp)
    out = site_world.apply_gamma(ramp, 0.7).ravel().astype(int)
    assert out[0] == 0 and out[255] == 255
    assert np.all(np.diff(out) >= 0)
    assert out[128] > 128 + 20  # 0.5**0.7 = 0.616
    assert site_world.apply_gamma(ramp, 1.6).ravel()[128] < 128


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from model.phantom import write_dataset

    root = str(tmp_path_factory.mktemp("world"))
    write_dataset(root, n=4, seed=5, size=64, workers=1, fractions=(0.5, 0.25, 0.25))
    return root


def test_site_copy_changes_only_the_films(world, tmp_path):
    import cv2

    dst = str(tmp_path / "site")
    assert site_world.main([world, dst, "--gamma", "0.7"]) == 0
    src_ann = json.load(open(os.path.join(world, "annotation.json")))
    ann = json.load(open(os.path.join(dst, "annotation.json")))
    assert {k: len(v) for k, v in ann.items()} == {k: len(v) for k, v in src_ann.items()}
    for split, entries in ann.items():
        for e, s in zip(entries, src_ann[split]):
            assert e["site"] == {"gamma": 0.7}
            assert {k: v for k, v in e.items() if k != "site"} == s
            a = cv2.imread(os.path.join(world, e["image_path"][0]), cv2.IMREAD_GRAYSCALE)
            b = cv2.imread(os.path.join(dst, e["image_path"][0]), cv2.IMREAD_GRAYSCALE)
            np.testing.assert_array_equal(b, site_world.apply_gamma(a, 0.7))
            assert not np.array_equal(a, b)
            with open(os.path.join(world, e["masks"]), "rb") as f1, open(os.path.join(dst, e["masks"]), "rb") as f2:
                assert f1.read() == f2.read()
    assert json.load(open(os.path.join(dst, "site.json")))["gamma"] == 0.7
    assert not [f for _, _, fs in os.walk(dst) for f in fs if f.endswith(".tmp")]


def test_refuses_to_overwrite_a_world_or_an_absurd_gamma(world, tmp_path, capsys):
    with pytest.raises(SystemExit):
        site_world.main([world, world, "--gamma", "0.7"])
    assert "already holds a world" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        site_world.main([world, str(tmp_path / "x"), "--gamma", "9"])
    assert "outside 0.2..5" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")
