"""The labeler, anatomy and key phrases against the phantom world's own ground truth (model/phantom/understanding.py
at a small size): phantom reports are what the embedded model learns to write, so they must be understood."""
from model.phantom.understanding import evaluate


def test_phantom_reports_are_understood():
    res = evaluate(n=60, seed=1)
    for obs, m in res["observations"].items():
        if obs == "Lung Opacity":
            # the phantom's edema sentences say "perihilar opacities", which CheXpert reading labels Lung Opacity
            assert m["recall"] == 1.0, (obs, m)
        elif m["support"]:
            assert m["f1"] == 1.0, (obs, m)
    assert res["region_hit_rate"] == 1.0
    assert res["key_phrase_recall"] > 0.9
