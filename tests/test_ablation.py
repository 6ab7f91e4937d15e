"""The ablation driver (model/s2d/ablation.py, behind benchmarks/run_ablation.py) end to end on a 9-case phantom set with a micro preset: three variants (the full
curriculum, a reordered one, and one with a different adapter architecture) train from the shared stage 0, follow
their own plans, are evaluated, land in the JSON and the doc, and a rerun skips them. (Every variant's plan and
architecture is covered by tests/test_s2d_model.py and tests/test_s2d_train.py.)"""
from __future__ import annotations

import json
import os

import pytest
import yaml

from tests._s2d import MICRO

VARIANTS = ("none", "reversed", "mlp-projector")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _driver():
    from model.s2d import ablation
    return ablation


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ablation")
    preset = tmp / "micro.yaml"
    preset.write_text(yaml.safe_dump({"base": "tiny", **MICRO}))
    doc = tmp / "ablation.md"
    drv = _driver()
    doc.write_text(f"# Ablation\n\nhand-written intro\n\n{drv.BEGIN}\nold table\n{drv.END}\n\n"
                   "hand-written discussion\n")
    argv = ["--data", str(tmp / "data"), "--out", str(tmp / "runs"), "--preset", str(preset), "--seeds", "0",
            "--train", "4", "--val", "2", "--test", "3", "--variants", ",".join(VARIANTS), "--iu", "none",
            "--doc", str(doc), "--json", str(tmp / "ablation.json")]
    assert drv.main(argv) == 0
    return drv, tmp, argv


def test_every_variant_is_trained_evaluated_and_reported(study):
    drv, tmp, _ = study
    data = json.loads((tmp / "ablation.json").read_text())
    assert sorted(data["aggregate"]) == sorted(VARIANTS)
    assert len(data["runs"]) == len(VARIANTS)
    for r in data["runs"]:
        for key in ("ce14_micro_f1", "ce5_micro_f1", "bleu4"):
            assert 0.0 <= r[key] <= 1.0, (r["variant"], key, r[key])
        preds = (tmp / "runs" / "seed0" / r["variant"] / "eval" / "predictions.jsonl").read_text().splitlines()
        assert len(preds) == 3  # every test case generated
    text = (tmp / "ablation.md").read_text()
    assert "hand-written intro" in text and "hand-written discussion" in text and "old table" not in text
    for v in VARIANTS:
        assert f"| {drv.LABELS[v]} | 0 |" in text


def test_variants_share_stage0_and_follow_their_plans(study):
    from safetensors.torch import load_file

    _, tmp, _ = study
    runs = tmp / "runs" / "seed0"
    shared = load_file(runs / "shared" / "stage0" / "model.safetensors")
    shared_dec = {k: v for k, v in shared.items() if k.startswith(("decoder.", "vision."))}
    assert any(k.startswith("vision.") for k in shared_dec)
    finals = {"none": "stage3", "reversed": "stage2", "mlp-projector": "stage3"}
    for variant in VARIANTS:
        own = load_file(runs / variant / "stage0" / "model.safetensors")
        for k, v in shared_dec.items():
            assert (own[k] == v).all(), (variant, k)  # the shared stage-0 decoder and encoder, bit for bit
        rows = [json.loads(line) for line in (runs / variant / "loss_log.jsonl").read_text().splitlines()]
        assert rows and all(r["stage"] != 0 for r in rows), variant  # stage 0 was not retrained per variant
        result = json.loads((runs / variant / "result.json").read_text())
        assert os.path.basename(result["checkpoint"]) == finals[variant], variant
    reversed_states = {s: json.loads((runs / "reversed" / s / "state.json").read_text())["aux"]
                       for s in ("stage1", "stage3", "stage2")}
    assert reversed_states == {"stage1": [], "stage3": ["p"], "stage2": ["p", "t"]}  # key phrases first


def test_rerun_skips_finished_runs(study):
    drv, tmp, argv = study
    path = tmp / "runs" / "seed0" / "none" / "result.json"
    before = (path.stat().st_mtime_ns, path.read_text())
    assert drv.main(argv) == 0
    assert (path.stat().st_mtime_ns, path.read_text()) == before


def test_unknown_variant_is_named(study):
    drv, tmp, argv = study
    with pytest.raises(SystemExit, match="unknown variant.*'nope'"):
        drv.main(argv + ["--variants", "none,nope"])


def test_spearman_handles_ties_and_degenerate_input():
    drv = _driver()
    assert drv._rank([3.0, 1.0, 3.0, 2.0]) == [1.5, 4.0, 1.5, 3.0]
    assert drv.spearman([0.1, 0.2, 0.3], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert drv.spearman([0.1, 0.2, 0.3], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert drv.spearman([0.5, 0.5, 0.5], [1.0, 2.0, 3.0]) is None  # every variant tied: no ordering to compare
    assert drv.spearman([0.1, 0.2], [1.0, 2.0]) is None
