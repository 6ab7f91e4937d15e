"""The grounding engine through a real (micro, untrained) S2D-ALIGN generator: every method end to end, the
pipeline and the generate CLI. Untrained weights say nothing about anatomy; these tests check the plumbing and
the invariants (shapes, ranges, captum's pass counts), the embedded default's behaviour is in
test_grounding_default.py."""
import json

import numpy as np
import pytest

from _s2d import micro_model, micro_tokenizer

from model.grounding import DEFAULT_METHOD, METHODS, ground, ground_detailed, ground_text, region_links
from model.types import VERDICTS

TEXT = ("FINDINGS: Heart size is normal. There is a small left pleural effusion. No pneumothorax. "
        "IMPRESSION: Small left pleural effusion.")


@pytest.fixture(scope="module")
def gen():
    import torch

    from model.s2d.generate import Generator

    # One thread: the micro model's ops are tiny, and on a shared CPU extra threads only oversubscribe it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Generator(micro_model(), micro_tokenizer(), "micro", {"stage": 1}, max_new_tokens=12)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def case():
    from model.phantom import generate_case
    from model.segmentation import segment

    c = generate_case(3, findings=[{"type": "Pleural Effusion", "side": "left", "size": "large"}])
    image = c.image.astype(np.float32) / 255.0
    return image, segment(image)


def test_teacher_forced_pass_matches_the_text_and_the_layout(gen, case):
    image, seg = case
    forced = gen.teacher_force(image, seg.masks, TEXT)
    assert forced.report == TEXT
    assert [s.text for s in forced.sentences] == ["Heart size is normal.", "There is a small left pleural effusion.",
                                                 "No pneumothorax.", "Small left pleural effusion."]
    n_mem = gen.cfg.sma.n_mem
    assert forced.mem_attention.shape == (len(forced.token_ids), n_mem)
    assert forced.cross_attention.shape == (n_mem, forced.key_layout.n_keys)
    np.testing.assert_allclose(forced.cross_attention.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_grounds_every_sentence(gen, case, method):
    image, seg = case
    out = ground_text(gen, image, seg, TEXT, method, ig_steps=2)
    assert out.grounding_method == method and len(out.sentences) == 4
    for s in out.sentences:
        assert s.verdict in VERDICTS and s.reasons
        assert all(0.0 <= r.score <= 1.0 for r in s.regions)
        heat = out.heatmaps[s.index]
        assert heat.shape == image.shape and heat.dtype == np.float32
        assert 0.0 <= heat.min() and heat.max() <= 1.0
    assert out.sentences[1].labels == {"Pleural Effusion": 1} and out.sentences[1].anatomy
    # a plain dict round trip (db / viewer) keeps regions and verdicts
    d = json.loads(json.dumps(out.to_dict()))
    assert d["sentences"][1]["verdict"] == out.sentences[1].verdict


def test_ablation_calls_the_scorer_once_per_region_plus_one(gen, case, monkeypatch):
    image, seg = case
    forced = gen.teacher_force(image, seg.masks, TEXT)
    calls = []
    real = gen.score_sentences
    monkeypatch.setattr(gen, "score_sentences", lambda *a, **k: calls.append(k.get("key_mask")) or real(*a, **k))
    from dataclasses import replace

    from model.grounding.specificity import phantom_bank
    from model.grounding.verdict import Thresholds

    regions = ["left lung base", "heart", "right lung"]
    ground(gen, image, seg, forced, "ablation", replace(Thresholds.load(), pmi_weight=0.0), ablation_regions=regions)
    assert len(calls) == 4 and calls[0] is None
    assert all(km is not None and not km.all() for km in calls[1:])
    # with image specificity on: one more pass on this image and one per reference film, none ablated
    calls.clear()
    ground(gen, image, seg, forced, "ablation", replace(Thresholds.load(), pmi_weight=0.5), ablation_regions=regions)
    assert len(calls) == 4 + 1 + len(phantom_bank()) and all(km is None for km in calls[4:])


def test_ground_on_a_generated_report_and_region_links(gen, case):
    image, seg = case
    g = gen.generate(image, masks=seg.masks)
    out, judgements = ground_detailed(gen, image, seg, g)
    assert len(out.sentences) == len(g.sentences) == len(judgements)
    links = region_links(out)
    for name, idx in links.items():
        assert all(any(r.name == name for r in out.sentences[i].regions) for i in idx)


def test_bad_input_is_refused_with_a_clear_message(gen, case):
    image, seg = case
    with pytest.raises(ValueError, match="unknown grounding method 'gradcam'"):
        ground_text(gen, image, seg, TEXT, "gradcam")
    with pytest.raises(ValueError, match="empty"):
        ground_text(gen, image, seg, "   ")
    with pytest.raises(ValueError, match=r"shape .* but the image is \(100, 100\)"):
        ground_text(gen, np.zeros((100, 100), np.float32), seg, TEXT)


def test_pipeline_analyses_a_batch(gen, case):
    from model.pipeline import Pipeline

    image, _ = case
    p = Pipeline(generator=gen)
    out = p.analyse_batch([image, (image * 255).astype(np.uint8)])
    assert len(out) == 2
    for a in out:
        assert a.segmentation.masks and a.report.grounding_method == DEFAULT_METHOD == "ig-fast"
        assert set(a.timings) == {"segment_s", "generate_s", "domain_s", "ground_s", "total_s"}
        assert all(s.verdict in VERDICTS for s in a.report.sentences)
    with pytest.raises(ValueError, match="unknown grounding method"):
        Pipeline(method="nope")
    with pytest.raises(ValueError, match="grayscale"):
        p.analyse(np.zeros((4, 4, 4, 4)))


LEFT_LOWER = {"left lung base", "lung lower lobe left", "left hemidiaphragm"}


def test_left_effusion_sentence_links_first_to_a_left_lower_region(gen, case):
    image, seg = case  # a phantom with a large left pleural effusion
    out = ground_text(gen, image, seg, TEXT)
    effusion = out.sentences[1]
    assert effusion.labels == {"Pleural Effusion": 1}
    assert effusion.regions[0].name in LEFT_LOWER, effusion.regions
    assert effusion.verdict != "ungrounded", effusion.reasons  # the blunted left angle agrees


def test_inserted_right_pneumothorax_is_ungrounded(gen):
    from model.phantom import generate_case
    from model.segmentation import segment

    c = generate_case(4, findings=[])  # a normal phantom: no pneumothorax
    image = c.image.astype(np.float32) / 255.0
    seg = segment(image)
    out = ground_text(gen, image, seg, c.report + " There is a right pneumothorax.")
    inserted = out.sentences[-1]
    assert inserted.text == "There is a right pneumothorax."
    assert inserted.verdict == "ungrounded"
    assert any("lateral lung lucency" in r for r in inserted.reasons)
    assert all(s.verdict != "ungrounded" or "pneumothorax" not in s.text.lower() for s in out.sentences[:-1])


def test_generate_cli_grounds_and_writes_heatmaps(tmp_path, capsys):
    from PIL import Image

    from model.__main__ import main
    from model.phantom import generate_case
    from model.s2d.modeling import save_model

    model_dir = str(tmp_path / "micro")
    save_model(micro_model(), model_dir, micro_tokenizer(), {"stage": 1})
    png = str(tmp_path / "case.png")
    Image.fromarray(generate_case(6).image).save(png)
    out_dir = str(tmp_path / "heat")
    assert main(["generate", "--model", model_dir, "--max-new-tokens", "12", "--ground", "--method", "rollout",
                 "--out", out_dir, png]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["image"] == png and result["grounding_method"] == "rollout"
    for s in result["sentences"]:
        assert s["verdict"] in VERDICTS and isinstance(s["regions"], list)
    assert len(result["heatmaps"]) == len(result["sentences"])
    for path in result["heatmaps"].values():
        assert Image.open(path).size == (256, 256)


@pytest.mark.parametrize("method", METHODS)
def test_an_empty_generated_report_grounds_to_nothing(gen, case, method):
    image, seg = case
    g = gen.generate(image, masks=seg.masks)
    g.report, g.sentences = "", []
    out = ground(gen, image, seg, g, method)
    assert out.sentences == [] and out.heatmaps == {}


@pytest.mark.parametrize("n_steps", [1, 2, 3])
def test_fast_integrated_gradients_equal_captums(gen, case, n_steps):
    # ig-fast batches every sentence's backward pass into one; it must be the same attribution captum gives
    from model.grounding import attribution

    image, seg = case
    layout = gen.model.key_layout()
    ref = attribution.integrated_gradients(gen, image, seg, TEXT, layout, n_steps, image.shape)
    fast = attribution.fast_integrated_gradients(gen, image, seg, TEXT, layout, image.shape, n_steps=n_steps)
    assert sorted(fast) == sorted(ref) == [0, 1, 2, 3]
    for i in ref:
        assert ref[i].max() > 0
        np.testing.assert_allclose(fast[i], ref[i], rtol=1e-4, atol=1e-6 * ref[i].max())
    assert attribution.fast_integrated_gradients(gen, image, seg, TEXT, layout, image.shape,
                                                 sentence_indices=[]) == {}


def test_pipeline_reads_the_view_from_the_acquisition_tags(gen, case):
    from model.pipeline import Pipeline, acquisition_view

    image, _ = case
    a = Pipeline(generator=gen).analyse(image, acquisition={"view_position": "ap", "pixel_spacing": [0.14, 0.14]})
    assert a.segmentation.measurements["acquisition"] == {"view": "AP", "pixel_spacing_known": True}
    assert acquisition_view(None) == {"view": None, "pixel_spacing_known": False}
    assert acquisition_view({"view_position": "LL"})["view"] is None  # a lateral is no frontal view
