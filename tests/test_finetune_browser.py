"""The app's fine-tune end to end in Debian chromium with the real trainer at tiny size: a signed review with a flag
-> Model tab -> "Fine-tune from corrections" (`python -m model train --from-export`, the command line's code path)
-> progress -> the new version with the promotion gate's comparison -> the model switch obeys the gate.

The model is the S2D-ALIGN architecture at CPU-seconds size (review/learning_loop.py's SMALL), trained here for one
epoch per stage on 12 phantoms; the analyser in the app stays the test double (the fine-tune needs only the model
directory it starts from, not its reports)."""
import functools
import json
import os

import pytest

from app_fakes import make_service, sign_case_as_is
from ui import launch
from conftest import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TINY = ("--epochs", "3:1", "--replay", "4", "--stop-split", "val", "--stop-limit", "4", "--gate-split", "val",
        "--gate-limit", "4")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from review.learning_loop import LoopConfig, build_world, train_base

    # half effusions: stage 0's vision pretraining needs a tag in at least two training reports
    cfg = LoopConfig(out=str(tmp_path_factory.mktemp("tiny")), n_train=12, effusion_share=0.5, n_review=2, n_val=4,
                     base_epochs="0:1,1:1,2:1,3:1")
    world = build_world(cfg)
    return train_base(cfg, world), world


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_model):
    from review.finetune import finetune_command

    base, world = tiny_model
    service = make_service(str(tmp_path_factory.mktemp("app")), n_cases=2)
    service.models["fake-0"] = base
    service.finetune_data = world
    service.finetune_cmd = functools.partial(finetune_command, options=TINY)
    service.open("demo-0")
    service.store.correct("demo-0", "dr.a", "flag", index=2, reason="not_in_image")
    sign_case_as_is(service.store, "demo-0", "dr.a")
    port = free_port()
    demo = launch(service, port=port, block=False)
    yield service, f"http://127.0.0.1:{port}/"
    demo.close()


def test_fine_tune_in_the_app_trains_gates_and_offers_the_new_version(page, app):
    service, url = app
    page.goto(url)
    page.get_by_role("tab", name="Model").click()
    page.locator("#gcxr-finetune").click()
    page.wait_for_function("document.querySelector('#gcxr-status').innerText.includes('is ready')",
                           timeout=240_000)
    status = page.locator("#gcxr-status").inner_text()
    assert "promotion gate" in status, status
    page.wait_for_function("document.querySelector('#gcxr-gate').innerText.includes('Promotion gate')",
                           timeout=30_000)
    assert "errors per case" in page.locator("#gcxr-gate").inner_text()
    name = next(v for v in service.models if v.startswith("ft-"))
    card = json.load(open(os.path.join(service.models[name], "model_card.json")))
    # the trainer's card, under the app's name for the version: the gate and the objective travel with it
    assert card["parent"] == "fake-0" and card["stage3"]["objective"] == "corrections"
    assert card["stage3"]["preference"]["pairs_by_kind"]["flagged"] == 1 and card["gate"]["cases"] == 4
    page.locator("#gcxr-model input").fill(name)
    page.get_by_role("option", name=name).click()
    page.get_by_role("button", name="Use this model").click()
    if card["gate"]["passed"]:
        page.wait_for_function("document.querySelector('#gcxr-status').innerText.includes('now using')",
                               timeout=30_000)
        assert service.analyser.model_version != "fake-0"  # the test double names itself by its directory
    else:
        page.wait_for_function("document.querySelector('#gcxr-status').innerText.includes('promotion gate')",
                               timeout=30_000)
        assert service.analyser.model_version == "fake-0"
