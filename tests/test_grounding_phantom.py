"""Grounding on phantom radiographs (truth known) through the real segmenter and image checks."""
import numpy as np
import pytest

from model.grounding import understand
from model.grounding.regions import score_regions
from model.grounding.image_checks import image_checks
from model.grounding.verdict import Thresholds, judge
from model.phantom import generate_case
from model.segmentation import segment


@pytest.fixture(scope="module")
def left_effusion():
    case = generate_case(3, findings=[{"type": "Pleural Effusion", "side": "left", "size": "large"}])
    image = case.image.astype(np.float32) / 255.0
    return case, image, segment(image)


def _judge_text(text, image, seg, heat=None):
    masks = {n: m for n, m in seg.masks.items()}
    labels, anatomy = understand(text)
    heat = np.ones(image.shape) if heat is None else heat
    meas = {**seg.measurements, **image_checks(image, masks)}
    return judge(text, labels, anatomy, score_regions(heat, masks), masks, meas, Thresholds.load())


def test_inserted_right_pneumothorax_is_ungrounded_by_the_image():
    case = generate_case(4, findings=[])  # a normal phantom
    image = case.image.astype(np.float32) / 255.0
    seg = segment(image)
    assert not any(f["type"] == "Pneumothorax" for f in case.findings["findings"])
    # Even with attention exactly on the right apex, the image shows no air at the lung edge: unsupported.
    heat = np.full(image.shape, 0.01)
    heat[seg.masks["right apical zone lung"]] = 1.0
    j = _judge_text("There is a right pneumothorax.", image, seg, heat)
    assert j.verdict == "ungrounded", j.reasons
    assert any("lateral lung lucency" in r for r in j.reasons)


def test_true_left_effusion_passes_the_costophrenic_check_and_its_denial_fails(left_effusion):
    case, image, seg = left_effusion
    heat = np.full(image.shape, 0.01)
    heat[case.finding_masks["f0"]] = 1.0  # attention on the true effusion
    true = _judge_text("Large left pleural effusion.", image, seg, heat)
    assert true.verdict in ("grounded", "weak"), true.reasons
    assert true.regions[0].name in ("left lung base", "lung lower lobe left", "left hemidiaphragm")
    denial = _judge_text("No pleural effusion.", image, seg)
    assert denial.verdict == "ungrounded", denial.reasons
    assert denial.score > true.score
