"""The grounding engine and pipeline with the embedded default model (assets/model/) on phantoms."""
import numpy as np
import pytest

from model.grounding import ground_text
from model.types import VERDICTS

LEFT_LOWER = {"left lung base", "lung lower lobe left", "left hemidiaphragm"}


@pytest.fixture(scope="module")
def pipeline():
    import torch

    from model.pipeline import Pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared CPU
    yield Pipeline()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def left_effusion():
    from model.phantom import generate_case

    c = generate_case(3, findings=[{"type": "Pleural Effusion", "side": "left", "size": "large"}])
    return c, c.image.astype(np.float32) / 255.0


def test_pipeline_analyses_a_phantom_end_to_end(pipeline, left_effusion):
    _, image = left_effusion
    case = pipeline.analyse(image)
    assert case.report.report.strip() and case.report.sentences
    assert case.report.model_version.startswith("s2d-tiny")
    for s in case.report.sentences:
        assert s.verdict in VERDICTS and s.reasons and s.regions
        assert case.report.heatmaps[s.index].shape == image.shape
    assert case.timings["total_s"] > 0


def test_generation_records_the_same_rollout_as_one_teacher_forced_pass(pipeline, left_effusion):
    # generation builds the rollout one token at a time from the KV cache; the grounding of any other text
    # builds it from one pass over the whole text: the two must agree on the model's own report

    _, image = left_effusion
    gen, seg = pipeline.generator, pipeline.segment(image)
    out = gen.generate(image, seg.masks)
    assert out.token_ids, "the default wrote an empty report"
    forced = gen.teacher_force(image, seg.masks, out.report)
    assert forced.token_ids == out.token_ids
    np.testing.assert_allclose(forced.mem_attention, out.mem_attention, atol=1e-5)
    assert np.all(out.mem_attention >= 0) and np.all(out.mem_attention.sum(1) <= 1 + 1e-5)


def test_left_effusion_sentence_links_to_a_left_lower_region(pipeline, left_effusion):
    c, image = left_effusion
    out = ground_text(pipeline.generator, image, pipeline.segment(image), c.report)
    effusion = [s for s in out.sentences if s.labels.get("Pleural Effusion") == 1]
    assert effusion and all(s.regions[0].name in LEFT_LOWER for s in effusion), [s.regions for s in effusion]
    assert all(s.verdict != "ungrounded" for s in effusion), [s.reasons for s in effusion]


def test_inserted_right_pneumothorax_is_ungrounded_with_the_default(pipeline):
    from model.phantom import generate_case

    c = generate_case(4, findings=[])  # a normal phantom
    image = c.image.astype(np.float32) / 255.0
    out = ground_text(pipeline.generator, image, pipeline.segment(image), c.report + " There is a right pneumothorax.")
    inserted = out.sentences[-1]
    assert inserted.text == "There is a right pneumothorax." and inserted.verdict == "ungrounded", inserted.reasons


def test_the_review_analyser_regrounds_a_reviewers_sentence_with_the_real_model(pipeline, left_effusion):
    # The path the review service takes for an edit (review/analyser.py PipelineAnalyser.ground), on the embedded
    # model: a verdict, reasons and an evidence map for the new words; two sentences in one edit give one result.
    from review.analyser import PipelineAnalyser

    analyser = PipelineAnalyser.__new__(PipelineAnalyser)
    analyser.pipeline = pipeline
    _, image = left_effusion
    analysis = pipeline.analyse(image)
    one, heat = analyser.ground(image, analysis, "There is a large left pleural effusion.")
    assert one.verdict in VERDICTS and one.reasons and heat.shape == image.shape
    again, _ = analyser.ground(image, analysis, "There is a large left pleural effusion.")
    assert again.verdict == one.verdict and [r.name for r in again.regions] == [r.name for r in one.regions]
    two, _ = analyser.ground(image, analysis, "The heart is normal. There is a large left pleural effusion.")
    assert two.verdict in VERDICTS and two.text.count(".") == 2
