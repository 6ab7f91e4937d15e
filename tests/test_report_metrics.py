"""Metrics: BLEU / ROUGE-L / CIDEr-D equal pycocoevalcap's scorers; METEOR through the jar; CE conventions."""
import shutil

import pytest

from model.report.metrics import (bleu, cider_d, clinical_efficacy, compute_all, meteor_scores, normalise_report,
                                  rouge_l)

REFS = ["The heart is normal in size. The lungs are clear. No pleural effusion or pneumothorax.",
        "Mild cardiomegaly. Small left pleural effusion. XXXX opacity in the left lower lobe.",
        "No acute cardiopulmonary abnormality.",
        "1. Stable mild cardiomegaly. 2. Hyperexpanded but clear lungs.",
        "Right PICC line tip in the SVC. Mild pulmonary edema."]
HYPS = ["the heart size is normal . the lungs are clear . no effusion .",
        "Cardiomegaly with a small left effusion. Left lower lobe atelectasis.",
        "No acute disease.",
        "Mild cardiomegaly. Lungs are hyperexpanded and clear. No pneumothorax.",
        "Mild pulmonary edema, possibly with a small effusion."]


def coco_inputs():
    r = [normalise_report(x) for x in REFS]
    h = [normalise_report(x) for x in HYPS]
    return r, h, {i: [x] for i, x in enumerate(r)}, {i: [x] for i, x in enumerate(h)}


def test_normalisation_is_r2gen_style():
    assert normalise_report("FINDINGS: 1. Heart size, normal! 2. No XXXX-effusion.") == \
        "heart size normal . no xxxx effusion ."
    assert normalise_report("") == "" and normalise_report(" . ") == ""


def test_bleu_equals_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu
    r, h, gts, res = coco_inputs()
    expected, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert [round(x, 4) for x in bleu(r, h)] == [round(x, 4) for x in expected]
    assert bleu(r, r)[3] == pytest.approx(1.0)


def test_rouge_l_equals_pycocoevalcap():
    from pycocoevalcap.rouge.rouge import Rouge
    r, h, gts, res = coco_inputs()
    assert round(rouge_l(r, h), 4) == round(float(Rouge().compute_score(gts, res)[0]), 4)


def test_cider_d_equals_pycocoevalcap():
    from pycocoevalcap.cider.cider import Cider
    r, h, gts, res = coco_inputs()
    assert round(cider_d(r, h), 4) == round(float(Cider().compute_score(gts, res)[0]), 4)
    assert cider_d(r, h) > 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java")
def test_meteor_jar_ranks_identical_above_different():
    corpus, per_report = meteor_scores(["no pleural effusion .", "mild cardiomegaly ."],
                                       ["no pleural effusion .", "the lungs are clear ."])
    assert per_report[0] > 0.9 and per_report[1] < 0.2
    assert per_report[1] < corpus < per_report[0]


def test_mismatched_counts_name_both():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="1 reference label sets but 0"):
        clinical_efficacy([{}], [])


def test_clinical_efficacy_conventions_by_hand():
    # two reports; labels chosen so each convention gives a different, hand-computable number
    ref = [{"Cardiomegaly": 1, "Edema": 1, "Pneumonia": -1}, {"Pleural Effusion": 1}]
    hyp = [{"Cardiomegaly": 1, "Pneumonia": 1, "Edema": 0}, {"Pleural Effusion": 1, "Fracture": -1}]
    ce = clinical_efficacy(ref, hyp)
    # micro over 14: tp 2 (Cardiomegaly, Effusion), fp 1 (Pneumonia: reference uncertain = negative), fn 1 (Edema)
    assert ce["r2gen_micro"]["precision"] == pytest.approx(2 / 3)
    assert ce["r2gen_micro"]["recall"] == pytest.approx(2 / 3)
    # macro: F1 is 1 for Cardiomegaly and Pleural Effusion, 0 for the other 12 observations
    assert ce["r2gen_macro"]["f1"] == pytest.approx(2 / 14)
    # per report: report 1 P=1/2 R=1/2 F1=1/2; report 2 P=R=F1=1 → means 0.75
    assert ce["promptmrg_example"] == pytest.approx({"precision": 0.75, "recall": 0.75, "f1": 0.75})
    # five observations: tp 2, fp 0, fn 1 (Edema); Pneumonia is not among the five
    assert ce["five_micro"]["precision"] == 1.0 and ce["five_micro"]["recall"] == pytest.approx(2 / 3)
    assert ce["per_observation"]["Edema"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1,
                                              "tp": 0, "fp": 0, "fn": 1, "tn": 1}


def test_compute_all_from_text():
    result = compute_all(REFS, HYPS, with_meteor=False)
    assert result["n_reports"] == 5 and result["nlg"]["METEOR"] is None
    per = result["clinical_efficacy"]["per_observation"]
    assert per["Cardiomegaly"]["tp"] == 2 and per["Edema"]["tp"] == 1
    assert per["Atelectasis"]["fp"] == 1  # the hypothesis invents atelectasis in report 2
