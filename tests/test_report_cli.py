"""`python -m model label` and `python -m model metrics` round trips."""
import json
import os
import subprocess
import sys

from conftest import ROOT

from model.report.labeler import OBSERVATIONS


def run_model(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "model", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True)


def test_label_stdin_round_trip():
    reports = "Small left pleural effusion. No pneumothorax.\n\nFINDINGS: Heart size is normal.\n"
    out = run_model("label", stdin=reports)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) == 3  # one record per input line, blank lines included, in order
    first = records[0]
    assert list(first["labels"]) == list(OBSERVATIONS)
    assert first["labels"]["Pleural Effusion"] == 1 and first["labels"]["Pneumothorax"] == 0
    assert [s["text"] for s in first["sentences"]] == ["Small left pleural effusion.", "No pneumothorax."]
    assert first["sentences"][0]["anatomy"] == ["left lung base"]
    assert first["sentences"][1]["labels"]["Pneumothorax"] == 0
    assert first["key_phrases"] == ["small left pleural effusion", "no pneumothorax"]
    assert all(v is None for v in records[1]["labels"].values()) and records[1]["sentences"] == []
    assert records[2]["labels"]["Cardiomegaly"] == 0 and records[2]["sentences"][0]["anatomy"] == ["heart"]


def test_label_input_and_output_files(tmp_path):
    src, dst = tmp_path / "reports.txt", tmp_path / "out" / "labels.jsonl"
    src.write_text("Mild cardiomegaly.\nNo acute disease.\n", encoding="utf-8")
    out = run_model("label", "--input", str(src), "--output", str(dst))
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["labels"]["Cardiomegaly"] for r in records] == [1, None]
    assert os.listdir(dst.parent) == ["labels.jsonl"]  # no temp file left behind


def test_label_missing_and_non_utf8_input(tmp_path):
    out = run_model("label", "--input", str(tmp_path / "nope.txt"))
    assert out.returncode != 0 and "input file not found" in out.stderr
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Pleural effusion \xe9.\n".encode("latin-1"))
    out = run_model("label", "--input", str(bad))
    assert out.returncode != 0 and "is not UTF-8" in out.stderr


def test_metrics_cli(tmp_path):
    refs, hyps = tmp_path / "refs.txt", tmp_path / "hyps.txt"
    refs.write_text("No pleural effusion. Mild cardiomegaly.\nThe lungs are clear.\n")
    hyps.write_text("No effusion. Mild cardiomegaly.\nThe lungs are clear.\n")
    out = run_model("metrics", "--refs", str(refs), "--hyps", str(hyps), "--no-meteor")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["n_reports"] == 2
    nlg = result["nlg"]
    assert 0 < nlg["BLEU_4"] < nlg["BLEU_1"] < 1 and 0 < nlg["ROUGE_L"] < 1 and nlg["CIDEr_D"] > 0
    assert nlg["METEOR"] is None
    ce = result["clinical_efficacy"]
    assert ce["five_micro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert ce["per_observation"]["Cardiomegaly"]["tp"] == 1


def test_metrics_cli_line_count_mismatch(tmp_path):
    refs, hyps = tmp_path / "refs.txt", tmp_path / "hyps.txt"
    refs.write_text("a.\nb.\n")
    hyps.write_text("a.\n")
    out = run_model("metrics", "--refs", str(refs), "--hyps", str(hyps), "--no-meteor")
    assert out.returncode == 2 and "has 2 lines" in out.stderr and "has 1" in out.stderr


def test_label_radgraph_backend_missing_is_reported():
    import importlib.util
    if importlib.util.find_spec("radgraph") is not None:
        import pytest
        pytest.skip("radgraph is installed here")
    out = run_model("label", "--key-phrases", "radgraph", stdin="No effusion.\n")
    assert out.returncode == 1 and "radgraph" in out.stderr and out.stdout == ""
