"""`python -m model evaluate --predictions`: saved generations scored without the model."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "report")


def evaluate(*args):
    return subprocess.run([sys.executable, "-m", "model", "evaluate", "--data", FIXTURE, "--split", "test",
                           "--no-meteor", *args], cwd=ROOT, capture_output=True, text=True)


def test_evaluate_with_predictions_writes_json_markdown_and_figures(tmp_path):
    out = tmp_path / "eval"
    res = evaluate("--out", str(out), "--predictions", os.path.join(FIXTURE, "predictions.jsonl"))
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(out)) == ["confusion_matrices.png", "metrics.json", "metrics.md",
                                       "per_observation_f1.png"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_reports"] == 3 and metrics["split"] == "test"
    per = metrics["clinical_efficacy"]["per_observation"]
    # the fixture's predictions get cardiomegaly and the effusion right and miss the atelectasis
    assert per["Cardiomegaly"]["tp"] == 1 and per["Pleural Effusion"]["tp"] == 1 and per["Atelectasis"]["fn"] == 1
    assert 0 < metrics["nlg"]["BLEU_1"] < 1
    md = (out / "metrics.md").read_text()
    assert "| Atelectasis | 1 | 0.0000 | 0.0000 | 0.0000 |" in md and "CIDEr-D" in md
    for png in ("confusion_matrices.png", "per_observation_f1.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_predictions_are_named(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "phantom_a", "report": "No effusion."}) + "\n")
    res = evaluate("--out", str(tmp_path / "eval"), "--predictions", str(preds))
    assert res.returncode == 2 and "no report for 2 of the 3" in res.stderr and "phantom_b" in res.stderr
    assert not (tmp_path / "eval").exists()  # nothing half-written


@pytest.mark.parametrize("content, message", [
    ("not json\n", "preds.jsonl:1 is not JSON"),
    (json.dumps({"id": "phantom_a"}) + "\n", "needs string fields 'id' and 'report'"),
    ((json.dumps({"id": "phantom_a", "report": "x"}) + "\n") * 2, "repeats id 'phantom_a'"),
])
def test_bad_prediction_files(tmp_path, content, message):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(content)
    res = evaluate("--out", str(tmp_path / "eval"), "--predictions", str(preds))
    assert res.returncode != 0 and message in res.stderr


def test_needs_model_or_predictions_and_a_real_split(tmp_path):
    res = evaluate("--out", str(tmp_path / "eval"))
    assert res.returncode == 2 and "--model DIR" in res.stderr
    res = evaluate("--out", str(tmp_path / "eval"), "--predictions", os.path.join(FIXTURE, "predictions.jsonl"),
                   "--limit", "0")
    assert res.returncode == 2 and "--limit must be at least 1, got 0" in res.stderr
    res = subprocess.run([sys.executable, "-m", "model", "evaluate", "--data", FIXTURE, "--split", "nope",
                          "--out", str(tmp_path / "e"), "--predictions", os.path.join(FIXTURE, "predictions.jsonl")],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and "split 'nope' not in" in res.stderr


def test_generation_path_with_a_stand_in_generator(tmp_path, monkeypatch):
    """Without --predictions, evaluate loads the generator lazily, batches images and saves predictions.jsonl.
    A stand-in module replaces model.s2d.generate so the test needs no trained model (and no torch)."""
    import argparse
    import types

    import numpy as np
    from PIL import Image

    from model.report import evaluate_cli
    from model.types import ReportOutput

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    ann = json.load(open(os.path.join(FIXTURE, "annotation.json")))
    for e in ann["test"]:
        Image.fromarray(np.full((8, 8), 100, np.uint8)).save(data / e["image_path"][0])
    (data / "annotation.json").write_text(json.dumps(ann))
    calls = []

    class StandIn:
        def generate_batch(self, images, masks):
            calls.append((len(images), images[0].shape, masks))
            return [ReportOutput(report="Mild cardiomegaly.", sentences=[]) for _ in images]

    fake = types.ModuleType("model.s2d.generate")
    fake.load_generator = lambda model_dir: StandIn()
    monkeypatch.setitem(sys.modules, "model.s2d.generate", fake)
    monkeypatch.setitem(sys.modules, "model.s2d", types.ModuleType("model.s2d"))
    out = tmp_path / "eval"
    args = argparse.Namespace(model=str(tmp_path / "m"), data=str(data), annotation=None, split="test",
                              out=str(out), predictions=None, limit=None, batch_size=2, no_meteor=True)
    assert evaluate_cli.run(args) == 0
    assert calls == [(2, (8, 8), None), (1, (8, 8), None)]
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == ["phantom_a", "phantom_b", "phantom_c"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clinical_efficacy"]["per_observation"]["Cardiomegaly"]["fp"] == 2
