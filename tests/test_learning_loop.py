"""The must-show round trip (docs/learning_loop.md): a small model trained here on a phantom world -> generations on
10 review cases stored through `python -m db generate` -> a reviewer's corrections through the store API -> sign ->
`python -m db export` -> `python -m model train --from-export` -> `python -m db register-model` -> generations of the
new version, which repeats the systematic error ("no pleural effusion" on cases with an effusion) less often."""
import json
import os
import subprocess
import sys

import pytest

from review.learning_loop import REVIEWER, LoopConfig, canonical_report, run_loop

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    return run_loop(LoopConfig(out=str(tmp_path_factory.mktemp("loop")), n_train=80, n_review=10))


def test_base_model_makes_the_systematic_error(loop):
    before = loop["before"]
    assert before["cases"] == 10 and before["with_effusion"] == 10
    # measured, not assumed: the base model denies most of the effusions
    assert before["missed"] >= 5, before
    assert loop["corrections"]["reviews"] == 10 and loop["corrections"]["edits"] >= before["missed"]


def test_new_version_makes_the_error_less_often(loop):
    assert loop["after"]["cases"] == 10
    assert loop["after"]["missed"] < loop["before"]["missed"], (loop["before"], loop["after"])
    # the new version's reports are the ones counted: every latest generation comes from it
    assert loop["reports_after"] != loop["reports_before"]


def test_export_holds_the_signed_corrections_with_provenance(loop):
    ann = json.load(open(os.path.join(loop["export_dir"], "annotation.json")))
    assert len(ann["train"]) == 10
    for e in ann["train"]:
        assert "pleural effusion" in e["report"].lower()
        assert "no pleural effusion" not in e["report"].lower(), e["report"]
        assert e["provenance"]["reviewer"] == REVIEWER and e["provenance"]["model_version"] == "loop-base"
        assert os.path.isabs(e["image_path"][0]) and os.path.isfile(e["image_path"][0])


def test_new_version_is_registered_under_its_parent(loop):
    from db.store import Store

    assert loop["new_version_parent"] == "loop-base" and loop["base_version"] == "loop-base"
    card = json.load(open(os.path.join(loop["model_dirs"]["new"], "model_card.json")))
    assert card["name"] == loop["new_version"] and card["parent"] == "loop-base"
    assert card["export"]["entries"] == 10 and card["export"]["entries_with_dataset_masks"] == 10
    assert card["export"]["from_model_versions"] == ["loop-base"]
    assert set(card["metrics"]) == {"split", "before", "after"} and card["metrics"]["after"]["n"] == 10
    store = Store(loop["db_url"])
    try:
        versions = {mv.name: mv for mv in store.model_versions()}
    finally:
        store.close()
    assert set(versions) == {"loop-base", loop["new_version"]}
    assert versions[loop["new_version"]].parent == "loop-base"
    assert versions[loop["new_version"]].path == os.path.abspath(loop["model_dirs"]["new"])
    out = subprocess.run([sys.executable, "-m", "db", "models", "--db", loop["db_url"]], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0 and loop["new_version"] in out.stdout and "loop-base" in out.stdout


def test_from_export_refuses_a_folder_without_an_export(tmp_path, loop):
    from model.__main__ import main

    with pytest.raises(SystemExit, match="annotation.json not found"):
        main(["train", "--from-export", str(tmp_path), "--init", loop["model_dirs"]["base"], "--data", loop["world"],
              "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="stage 3 only"):
        main(["train", "--from-export", loop["export_dir"], "--init", loop["model_dirs"]["base"], "--data",
              loop["world"], "--out", str(tmp_path / "out"), "--epochs", "1:2"])


def test_canonical_reports_label_as_intended():
    from model.report.labeler import NEGATIVE, POSITIVE, label_report

    assert label_report(canonical_report("left")).labels["Pleural Effusion"] == POSITIVE
    assert label_report(canonical_report(None)).labels["Pleural Effusion"] == NEGATIVE


def test_the_gate_stops_the_harmful_fine_tune(loop):
    # plain SFT on a worklist of effusions only (review cases all positive): the model learns the worklist's prior
    card = json.load(open(os.path.join(loop["model_dirs"]["new"], "model_card.json")))
    gate = card["gate"]
    assert gate["split"] == "val" and gate["cases"] == 4 and not gate["passed"], gate
    assert any(f.startswith(("false_alarm", "wrong_side")) for f in gate["failures"]), gate["failures"]
    assert "failed the promotion gate against loop-base" in loop["register_refused"]
    assert "--force" in loop["register_refused"]


def test_the_app_keeps_the_parent_unless_overridden(loop, tmp_path):
    from app_fakes import FakeAnalyser, make_service

    service = make_service(str(tmp_path))
    service.analyser = FakeAnalyser("loop-base")
    new = loop["new_version"]
    service.models = {"loop-base": loop["model_dirs"]["base"], new: loop["model_dirs"]["new"]}
    with pytest.raises(ValueError, match="failed the promotion gate against loop-base"):
        service.switch_model(new)
    assert service.analyser.model_version == "loop-base"
    assert "| cases with a false alarm |" in service.gate_markdown(new)
    assert service.switch_model(new, force=True).startswith("now using model")
    assert service.analyser.model_version != "loop-base"
