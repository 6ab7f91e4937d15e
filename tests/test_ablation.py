"""The ablation driver (model/s2d/ablation.py, behind benchmarks/run_ablation.py) end to end on a 9-case phantom set with a micro preset: three variants (the full
curriculum, a reordered one, and one with a different adapter architecture) train from the shared stage 0, follow
their own plans, are evaluated, land in the JSON as each finishes and in the doc rebuilt from it, and a rerun skips
them; the pilot gate; the paired comparison. (Every variant's plan and architecture is covered by
tests/test_s2d_model.py and tests/test_s2d_train.py.)"""
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
            "--size", "128", "--doc", str(doc), "--json", str(tmp / "ablation.json")]
    assert drv.main(argv + ["--no-pilot-check"]) == 0
    return drv, tmp, argv + ["--no-pilot-check"]


def test_every_variant_is_trained_evaluated_and_reported(study):
    drv, tmp, _ = study
    data = json.loads((tmp / "ablation.json").read_text())
    assert sorted(data["aggregate"]) == sorted(VARIANTS)
    assert len(data["runs"]) == len(VARIANTS) and data["format"] == 2
    for r in data["runs"]:
        assert 1 <= r["distinct_reports"] <= 3
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
    from model.s2d import ablation_report as drv
    assert drv._rank([3.0, 1.0, 3.0, 2.0]) == [1.5, 4.0, 1.5, 3.0]
    assert drv.spearman([0.1, 0.2, 0.3], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert drv.spearman([0.1, 0.2, 0.3], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert drv.spearman([0.5, 0.5, 0.5], [1.0, 2.0, 3.0]) is None  # every variant tied: no ordering to compare
    assert drv.spearman([0.1, 0.2], [1.0, 2.0]) is None


def _json(path):
    return json.loads(path.read_text())


def test_each_run_is_recorded_when_it_finishes(study, monkeypatch):
    drv, tmp, argv = study
    calls = []
    real = drv.run_one

    def run_then_stop(*a, **kw):
        if calls:
            raise KeyboardInterrupt  # the driver is stopped while the second run trains
        calls.append(a[1])
        return real(*a, **kw)

    monkeypatch.setattr(drv, "run_one", run_then_stop)
    fresh = tmp / "fresh.json"
    with pytest.raises(KeyboardInterrupt):
        drv.main(argv + ["--json", str(fresh), "--doc", str(tmp / "fresh.md")])
    runs = _json(fresh)["runs"]
    assert [(r["variant"], r["seed"]) for r in runs] == [(calls[0], 0)]  # the finished run is in, and only it
    assert f"| {drv.LABELS[calls[0]]} | 0 |" in (tmp / "fresh.md").read_text()


def test_the_json_is_the_record(study):
    import shutil

    drv, tmp, argv = study
    before = _json(tmp / "ablation.json")["runs"]
    shutil.rmtree(tmp / "runs" / "seed0" / "reversed")  # a run directory lost between sessions
    assert drv.main(argv) == 0
    assert not (tmp / "runs" / "seed0" / "reversed").exists()  # not retrained
    assert _json(tmp / "ablation.json")["runs"] == before
    (tmp / "ablation.md").write_text(f"intro\n{drv.BEGIN}\n{drv.END}\n")
    assert drv.main(argv + ["--report-only"]) == 0
    assert f"| {drv.LABELS['reversed']} | 0 |" in (tmp / "ablation.md").read_text()


def test_pilot_gates_the_study(study, tmp_path):
    drv, tmp, argv = study
    argv = [a for a in argv if a != "--no-pilot-check"] + ["--json", str(tmp_path / "a.json"), "--doc",
                                                           str(tmp_path / "a.md")]
    with pytest.raises(SystemExit, match="no pilot for this preset yet"):
        drv.main(argv)
    # the micro model writes at most 3 distinct reports for 3 test cases: the default gate (>= 50) fails
    assert drv.main(argv + ["--pilot"]) == 1
    pilot = _json(tmp_path / "a.json")["pilot"]
    assert not pilot["passed"] and pilot["distinct_reports"] <= 3 and pilot["min_distinct"] == 50
    with pytest.raises(SystemExit, match="the pilot failed"):
        drv.main(argv)
    # the pilot reuses the study's own full-curriculum run: lowering the bar passes it without retraining
    assert drv.main(argv + ["--pilot", "--pilot-min-distinct", "1", "--pilot-min-margin", "-1"]) == 0
    assert _json(tmp_path / "a.json")["pilot"]["passed"]
    assert drv.main(argv) == 0
    assert "**passed**" in (tmp_path / "a.md").read_text()


def test_first_study_is_kept_as_the_collapsed_budget(study, tmp_path):
    drv, tmp, argv = study
    old = json.loads(open(os.path.join(ROOT, "docs", "ablation.json")).read())
    old = old.get("collapsed_budget", old)
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert drv.main(argv + ["--json", str(tmp_path / "old.json"), "--doc", str(tmp_path / "old.md")]) == 0
    data = _json(tmp_path / "old.json")
    assert data["collapsed_budget"] == old and len(data["runs"]) == len(VARIANTS)
    text = (tmp_path / "old.md").read_text()
    assert "### Collapsed budget" in text and "### Study" in text


def test_a_json_of_another_preset_is_not_mixed_in(study, tmp_path):
    drv, tmp, argv = study
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"base": "tiny", **MICRO, "sma": {**MICRO["sma"], "n_mem": 2}}))
    with pytest.raises(SystemExit, match="holds a study of preset"):
        drv.main(argv + ["--preset", str(other)])


def test_paired_comparison_against_the_full_curriculum():
    drv = _driver()
    full = [0.50, 0.60, 0.70]
    rows = [{"variant": "none", "seed": s, "x": v} for s, v in enumerate(full)]
    rows += [{"variant": "joint", "seed": s, "x": v + d} for s, (v, d) in enumerate(zip(full, (-0.10, -0.12, -0.08)))]
    rows += [{"variant": "reversed", "seed": s, "x": v + d} for s, (v, d) in enumerate(zip(full, (0.1, -0.1, 0.05)))]
    p = drv.paired(rows, key="x")
    assert p["joint"]["mean"] == pytest.approx(-0.10) and p["joint"]["std"] == pytest.approx(0.02)
    assert p["joint"]["t"] == pytest.approx(-0.10 / (0.02 / 3 ** 0.5)) and p["joint"]["separated"]
    assert p["joint"]["worse"] == 3 and p["reversed"]["separated"] is False
    assert "none" not in p and "mlp-projector" not in p
