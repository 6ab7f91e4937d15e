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


def test_generate_cli_bad_input(tmp_path, phantom_png):
    png, npz, _ = phantom_png
    with pytest.raises(SystemExit, match="2 images but 1 --masks"):
        main(["generate", "--masks", npz, "--", png, png])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(Exception, match="(?i)image|identify|decode"):
        main(["generate", str(bad)])
