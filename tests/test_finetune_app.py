"""The app's fine-tune job (review/finetune.py) around the trainer: cancel stops the child and leaves no version;
the trainer's model card (its gate) survives the app's naming. The real trainer runs in
tests/test_finetune_browser.py."""
import json
import os
import sys
import threading
import time

import pytest

from app_fakes import make_service, sign_case_as_is
from review.finetune import FineTuneCancelled, run_finetune


def _sleeping_trainer(**kw):
    return [sys.executable, "-c", "import time; time.sleep(60)"]


def test_cancel_stops_the_trainer_and_leaves_no_version(tmp_path):
    models = tmp_path / "models"
    polls = []
    t0 = time.monotonic()
    with pytest.raises(FineTuneCancelled, match="cancelled"):
        run_finetune(str(tmp_path), 1, "init", "parent", "data", str(models), lambda ev: None, _sleeping_trainer,
                     cancelled=lambda: polls.append(1) or len(polls) > 2)
    assert time.monotonic() - t0 < 30
    assert os.listdir(models) == []


def test_the_service_cancels_a_running_fine_tune(tmp_path):
    service = make_service(str(tmp_path))
    service.finetune_data, service.models["fake-0"] = str(tmp_path), str(tmp_path)
    service.finetune_cmd = _sleeping_trainer
    service.open("demo-0")
    sign_case_as_is(service.store, "demo-0", "dr.a")
    errors = []

    def run():
        try:
            service.fine_tune(lambda f, d: None)
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.0)
    assert "cancelling" in service.cancel_fine_tune()
    t.join(30)
    assert not t.is_alive() and isinstance(errors[0], FineTuneCancelled)
    assert sorted(service.models) == ["fake-0", "fake-1"]


def test_the_trainers_card_keeps_its_gate_under_the_apps_name(tmp_path):
    gate = {"passed": False, "failures": ["false_alarm: up to +9.0 pp (margin 2 pp)"]}
    code = ("import json, os, sys; from model.progress import ProgressEvent, ProgressWriter;"
            "ck = os.path.join(sys.argv[1], 'stage3'); os.makedirs(ck);"
            f"json.dump({{'name': 'x-ft', 'parent': 'x', 'gate': {gate!r}}}, open(ck + '/model_card.json', 'w'));"
            "ProgressWriter(sys.argv[2]).write(ProgressEvent('done', checkpoint=ck))")
    r = run_finetune(str(tmp_path), 3, "init", "fake-0", "data", str(tmp_path / "models"), lambda ev: None,
                     lambda **kw: [sys.executable, "-c", code, kw["out"], kw["progress"]])
    card = json.load(open(os.path.join(r.checkpoint, "model_card.json")))
    assert card["name"] == r.name and card["parent"] == "fake-0" and card["gate"] == gate
