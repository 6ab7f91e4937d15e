"""Key phrases: observation + polarity + anatomy + modifiers; the optional RadGraph backend."""
import subprocess
import sys

import pytest

from conftest import ROOT
from model.report.keyphrases import extract_key_phrases, radgraph_phrases


@pytest.mark.parametrize("text, expected", [
    ("Small left pleural effusion. No pneumothorax.", ["small left pleural effusion", "no pneumothorax"]),
    ("No focal consolidation, effusion or pneumothorax.",
     ["no focal consolidation", "no effusion", "no pneumothorax"]),
    ("Heart size is normal.", ["normal heart size"]),
    ("The heart is mildly enlarged.", ["mildly enlarged heart"]),
    ("Patchy opacity in the right lower lobe may represent pneumonia.",
     ["patchy opacity in the right lower lobe", "possible pneumonia"]),
    ("Calcified granuloma in the left upper lobe.", ["calcified granuloma in the left upper lobe"]),
    ("Interval removal of the chest tube.", ["no chest tube"]),
    ("Mild scoliosis. No emphysema.", ["mild scoliosis"]),
    ("Stable small left effusion. Stable small left effusion.", ["stable small left effusion"]),
    ("The lungs are clear.", ["lungs are clear"]),
    ("Heart normal.", ["normal heart size"]),
])
def test_rules_backend(text, expected):
    assert extract_key_phrases(text) == expected


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown key-phrase backend 'bert'"):
        extract_key_phrases("No effusion.", backend="bert")


def test_radgraph_backend_says_what_is_missing():
    try:
        import radgraph  # noqa: F401
        pytest.skip("radgraph is installed here")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="radgraph"):
        extract_key_phrases("No effusion.", backend="radgraph")


def test_radgraph_output_conversion():
    annotation = {"0": {"text": "small left pleural effusion . no pneumothorax", "entities": {
        "1": {"tokens": "small", "label": "Observation::definitely present", "start_ix": 0, "end_ix": 0,
              "relations": [["modify", "4"]]},
        "2": {"tokens": "left", "label": "Anatomy::definitely present", "start_ix": 1, "end_ix": 1,
              "relations": [["modify", "3"]]},
        "3": {"tokens": "pleural", "label": "Anatomy::definitely present", "start_ix": 2, "end_ix": 2,
              "relations": []},
        "4": {"tokens": "effusion", "label": "Observation::definitely present", "start_ix": 3, "end_ix": 3,
              "relations": [["located_at", "3"]]},
        "5": {"tokens": "pneumothorax", "label": "OBS-DA", "start_ix": 5, "end_ix": 5, "relations": []},
        "6": {"tokens": "atelectasis", "label": "OBS-U", "start_ix": 7, "end_ix": 7, "relations": []}}}}
    assert radgraph_phrases(annotation) == ["small left pleural effusion", "no pneumothorax",
                                         "possible atelectasis"]


def test_report_package_stays_torch_free():
    code = ("import sys, model.report.keyphrases, model.report.label_cli, model.report.metrics, "
            "model.report.evaluate_cli; assert 'torch' not in sys.modules, 'model.report pulled torch'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
