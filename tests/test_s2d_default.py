"""The embedded default model (assets/model/) through the generate CLI and API."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from model.__main__ import main
from model.s2d.generate import DEFAULT_MODEL_DIR


def test_embedded_default_is_shipped_with_card():
    for f in ("model.safetensors", "config.json", "state.json", "tokenizer/tokenizer.json", "MODEL_CARD.md",
              "model_card.json"):
        assert os.path.isfile(os.path.join(DEFAULT_MODEL_DIR, f)), f
    assert os.path.getsize(os.path.join(DEFAULT_MODEL_DIR, "model.safetensors")) < 30 * 2 ** 20
    card = json.load(open(os.path.join(DEFAULT_MODEL_DIR, "model_card.json")))
    assert "not for clinical use" in card["intended_use"].lower()
    assert card["commands"] and card["metrics"]


@pytest.fixture(scope="module")
def phantom_png(tmp_path_factory):
    from model.phantom import generate_case

    d = tmp_path_factory.mktemp("img")
    case = generate_case(5)
    path = str(d / "case.png")
    Image.fromarray(case.image).save(path)
    np.savez(str(d / "case.npz"), **case.masks)
    return path, str(d / "case.npz"), case


def test_generate_cli_on_embedded_default(phantom_png, capsys):
    png, npz, _ = phantom_png
    assert main(["generate", "--masks", npz, npz, "--", png, png]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2 and lines[0]["image"] == png
    out = lines[0]
    assert out["report"].strip() and out["sentences"] and out["model_version"].startswith("s2d-tiny")
    assert [s["text"] for s in out["sentences"]] == [s["text"] for s in lines[1]["sentences"]]
    assert out["timings"]["total_s"] > 0


def test_generate_cli_bad_input(tmp_path, phantom_png, capsys):
    png, npz, _ = phantom_png
    with pytest.raises(SystemExit, match="2 images but 1 --masks"):
        main(["generate", "--masks", npz, "--", png, png])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["generate", str(bad), png, "--ground"]) == 1  # the bad one refused, the good one still done
    out, err = capsys.readouterr()
    assert err == f"error: {bad}: not a PNG, JPEG or DICOM image\n"
    rows = [json.loads(x) for x in out.strip().splitlines()]
    assert [r["image"] for r in rows] == [str(bad), png]
    assert rows[0]["error"] == "not a PNG, JPEG or DICOM image" and rows[1]["sentences"]


def test_embedded_default_reads_the_image():
    """The shipped model must describe what is drawn, not write one template for every film (the previous
    default wrote 3 distinct reports for 185 test phantoms)."""
    import torch

    from model.phantom import generate_case
    from model.report.labeler import label_report
    from model.s2d.generate import load_generator

    torch.set_num_threads(1)
    gen = load_generator()
    specs = {"normal": [], "effusion": [{"type": "Pleural Effusion", "side": "left", "size": "large"}],
             "cardiomegaly": [{"type": "Cardiomegaly", "size": "marked"}],
             "pneumothorax": [{"type": "Pneumothorax", "side": "right", "size": "large"}]}
    cases = {k: generate_case(11, findings=f) for k, f in specs.items()}
    outs = gen.generate_batch([c.image for c in cases.values()], [c.masks for c in cases.values()])
    reports = dict(zip(cases, (o.report for o in outs)))
    labels = {k: label_report(r).labels for k, r in reports.items()}
    assert len(set(reports.values())) == len(reports), reports
    assert labels["effusion"]["Pleural Effusion"] == 1, reports["effusion"]
    assert labels["cardiomegaly"]["Cardiomegaly"] == 1, reports["cardiomegaly"]
    assert labels["pneumothorax"]["Pneumothorax"] == 1, reports["pneumothorax"]
    assert not any(v == 1 for k, v in labels["normal"].items() if k != "No Finding"), reports["normal"]
