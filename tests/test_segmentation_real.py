"""The default segmenter on real films with expert lung masks (../shared/data/real-films; skipped without it): a
regression guard on a handful of val films, not the measurement (that is benchmarks/eval_segmentation.py --real)."""
import os

import numpy as np
import pytest

from model.segmentation import segment
from model.segmentation.realfilms import read_films, score_film


@pytest.fixture(scope="module")
def val_films(shared_data):
    root = os.path.join(shared_data, "real-films", "covid-lungs")
    if not os.path.isdir(root):
        pytest.skip("the covid-lungs films are not in ../shared/data")
    films = read_films(root, "val")
    return [films[i] for i in np.linspace(0, len(films) - 1, 6).astype(int)]  # spread over the split


def test_real_val_films_are_segmented_not_refused_and_match_the_experts(val_films):
    dice = []
    for f in val_films:
        image, right, left = f.load()
        seg = segment(image)  # the default backend; a refusal would raise here
        dice.append(score_film(seg.masks, right, left, f.boxes)["lung_dice"])
        note = seg.measurements["segmentation"]
        assert 0 < note["confidence"] <= 1 and note["heart"] != "learned", f.id  # a real film's heart is estimated
    assert min(dice) > 0.85 and np.mean(dice) > 0.92, dice
