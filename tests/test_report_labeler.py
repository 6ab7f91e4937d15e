"""The CheXpert-style labeler on hand-written tricky sentences (written for these tests, not from any dataset)."""
import pytest

from model.report.labeler import OBSERVATIONS, label_report, sentence_mentions


def labels(text):
    return {k: v for k, v in label_report(text).labels.items() if v is not None}


@pytest.mark.parametrize("text, expected", [
    # negation scope runs across "or" / "and" / comma lists
    ("No pleural effusion or pneumothorax.", {"Pleural Effusion": 0, "Pneumothorax": 0, "No Finding": 1}),
    ("No focal consolidation, effusion or pneumothorax.",
     {"Consolidation": 0, "Pleural Effusion": 0, "Pneumothorax": 0, "No Finding": 1}),
    ("No edema and no pneumothorax.", {"Edema": 0, "Pneumothorax": 0, "No Finding": 1}),
    ("There is no pneumothorax and there is a small left effusion.", {"Pneumothorax": 0, "Pleural Effusion": 1}),
    ("No pneumothorax, but there is left lower lobe atelectasis.", {"Pneumothorax": 0, "Atelectasis": 1}),
    ("Cardiomegaly without overt edema.", {"Cardiomegaly": 1, "Edema": 0}),
    ("Negative for acute fracture.", {"Fracture": 0, "No Finding": 1}),
    ("There is no evidence of pneumothorax.", {"Pneumothorax": 0, "No Finding": 1}),
    # uncertainty, before and after the mention; it wins over the negation word inside "cannot exclude"
    ("Cannot exclude pneumonia.", {"Pneumonia": -1}),
    ("Pneumonia cannot be excluded.", {"Pneumonia": -1}),
    ("Patchy opacity, may represent atelectasis or consolidation.",
     {"Lung Opacity": 1, "Atelectasis": -1, "Consolidation": -1}),
    ("Atelectasis versus consolidation.", {"Atelectasis": -1, "Consolidation": -1}),
    ("Findings are suspicious for pneumonia.", {"Pneumonia": -1}),
    ("Left basilar atelectasis is likely.", {"Atelectasis": -1}),
    # resolution and removal are negations
    ("The left pleural effusion is no longer seen.", {"Pleural Effusion": 0, "No Finding": 1}),
    ("The pneumothorax has resolved.", {"Pneumothorax": 0, "No Finding": 1}),
    ("With interval removal of the chest tube.", {"Support Devices": 0, "No Finding": 1}),
    # "no change" does not negate what it refers to
    ("No change in the small calcified right upper lobe nodule.", {"Lung Lesion": 1}),
    # heart and mediastinum states
    ("Heart size is normal.", {"Cardiomegaly": 0, "No Finding": 1}),
    ("The heart is not enlarged.", {"Cardiomegaly": 0, "No Finding": 1}),
    ("The cardiac silhouette is mildly enlarged.", {"Cardiomegaly": 1}),
    ("The cardiomediastinal silhouette is within normal limits.",
     {"Cardiomegaly": 0, "Enlarged Cardiomediastinum": 0, "No Finding": 1}),
    ("Stable small left effusion.", {"Pleural Effusion": 1}),
    # XXXX de-identification tokens do not break labelling
    ("There are no XXXX of a pleural effusion. Normal chest x-XXXX.", {"Pleural Effusion": 0, "No Finding": 1}),
    ("XXXX left pleural effusion.", {"Pleural Effusion": 1}),
    ("Right PICC line in place. Lungs clear.", {"Support Devices": 1, "No Finding": 1}),
    ("Healed left rib fracture.", {"Fracture": 1}),
    ("Small hiatal hernia.", {}),  # a hernia is not a Lung Lesion "mass" and blocks No Finding
])
def test_tricky_sentences(text, expected):
    assert labels(text) == expected


@pytest.mark.parametrize("text, expected", [
    # a finding named as something to exclude, rule out or detect is hypothetical (uncertain), before or after it
    ("Repeat radiograph after treatment to exclude an underlying mass.", {"Lung Lesion": -1}),
    ("Scarring at the right apex, though difficult to exclude a small cavitary lesion.",
     {"Lung Opacity": 1, "Lung Lesion": -1}),
    ("CT is recommended to rule-out a pulmonary nodule.", {"Lung Lesion": -1}),
    ("Dedicated CT would be more sensitive for detecting small nodules.", {"Lung Lesion": -1}),
    ("Mild interstitial edema difficult to entirely exclude.", {"Edema": -1}),
    ("An early pneumonia should be excluded clinically.", {"Pneumonia": -1}),
    # "cannot exclude" stays uncertain, and a plain negation after the purpose clause is still a negation
    ("Cannot rule out a left lower lobe nodule.", {"Lung Lesion": -1}),
    ("To exclude a mass, compare with older films. No pleural effusion.", {"Lung Lesion": -1, "Pleural Effusion": 0}),
    # clinical history is not a finding of this film: the mention is dropped, neither 1 nor 0
    ("Stable right hilar opacity in this patient with a history of lung mass.", {"Lung Opacity": 1}),
    ("History of pneumonia. The lungs are clear.", {"No Finding": 1}),
    ("Patient with a history of COPD. Lungs clear.", {"No Finding": 1}),
    # ... and only the named history: a comma or "without" ends it, and what follows is read as usual
    ("Postsurgical changes consistent with history of right lobectomy, without pneumothorax or effusion.",
     {"Pneumothorax": 0, "Pleural Effusion": 0}),
    ("Prior history of lymphoma with a new 2 cm left upper lobe mass.", {"Lung Lesion": 1}),
    ("History of heart failure. Moderate cardiomegaly and a small right effusion.",
     {"Cardiomegaly": 1, "Pleural Effusion": 1}),
    # calcified vs non-calcified: a calcified granuloma is not a Lung Lesion, a calcified nodule is, and a negated
    # non-calcified nodule is a negative Lung Lesion
    ("Small calcified granuloma in the left lower lobe.", {}),
    ("Two calcified nodules in the right upper lobe, from old granulomatous disease.", {"Lung Lesion": 1}),
    ("No effusion or noncalcified nodule. Normal heart size.",
     {"Pleural Effusion": 0, "Lung Lesion": 0, "Cardiomegaly": 0, "No Finding": 1}),
    # "no other nodules" negates only the others: the lesion it presupposes is labelled where it is named
    ("Stable 8 mm nodule in the left midlung. No other nodules or masses.", {"Lung Lesion": 1}),
    ("Calcified granuloma in the right base. No other nodules.", {"Lung Lesion": 0}),
    ("Known pulmonary nodules, unchanged. No new nodules.", {"Lung Lesion": 1}),
    ("No new nodules.", {"Lung Lesion": 0, "No Finding": 1}),
    # a nodular opacity is an opacity, not a Lung Lesion (docs/labeler.md)
    ("Faint nodular opacity in the left upper lobe.", {"Lung Opacity": 1}),
    ("There is a 1 cm nodular density in the right midlung.", {"Lung Opacity": 1}),
    ("Diffuse reticulonodular pattern.", {"Lung Opacity": 1}),
])
def test_hypothetical_history_and_nodule_rules(text, expected):
    assert labels(text) == expected


def test_aggregation_positive_wins_then_uncertain_then_negative():
    assert labels("No effusion. Small right effusion.")["Pleural Effusion"] == 1
    assert labels("No pneumonia. Pneumonia cannot be excluded.")["Pneumonia"] == -1
    assert labels("No pneumothorax. No pneumothorax is seen.")["Pneumothorax"] == 0


def test_no_finding_only_when_nothing_but_support_devices():
    assert labels("Lungs are clear. Pacemaker in place.")["No Finding"] == 1
    assert "No Finding" not in labels("Possible left lower lobe pneumonia.")
    assert "No Finding" not in labels("No pneumothorax. Mild scoliosis.")
    assert "No Finding" not in labels("Hyperexpanded lungs consistent with emphysema.")
    assert labels("No emphysema. Lungs clear.")["No Finding"] == 1  # a negated other abnormality does not block
    assert label_report("").labels["No Finding"] is None  # an empty report asserts nothing


def test_report_and_sentence_structure():
    report = "FINDINGS: 1. Left pleural effusion with adjacent atelectasis. 2. No pneumothorax."
    result = label_report(report)
    assert list(result.labels) == list(OBSERVATIONS)
    assert [s.text for s in result.sentences] == ["Left pleural effusion with adjacent atelectasis.",
                                                 "No pneumothorax."]
    assert [report[s.start:s.end] for s in result.sentences] == [s.text for s in result.sentences]
    assert result.sentences[0].labels["Pleural Effusion"] == 1 and result.sentences[0].labels["Atelectasis"] == 1
    assert result.sentences[1].labels["Pneumothorax"] == 0 and result.sentences[1].labels["Atelectasis"] is None
    d = result.to_dict()
    assert d["labels"]["Pneumothorax"] == 0 and d["sentences"][1]["text"] == "No pneumothorax."


def test_mentions_carry_offsets_and_polarity():
    text = "No effusion, possible pneumonia."
    ms = {m.observation: m for m in sentence_mentions(text)}
    assert text[ms["Pleural Effusion"].start:ms["Pleural Effusion"].end] == "effusion"
    assert ms["Pleural Effusion"].label == 0 and ms["Pneumonia"].label == -1


def test_bad_input_is_a_clear_error():
    with pytest.raises(TypeError, match="expects a str"):
        label_report(["not", "a", "string"])


def test_agrees_with_negbio_gold_on_iu_trainval(shared_data):
    """The documented agreement (docs/labeler.md) does not regress: F1 >= 0.90 where gold has >= 40 positives,
    except Lung Lesion whose gold (NegBio Nodule/Mass) differs in vocabulary; see the doc."""
    from model.report.negbio import agreement
    res = agreement(shared_data)
    assert res.n_reports == 3080
    for obs in ("Atelectasis", "Cardiomegaly", "Pleural Effusion"):
        assert res.prf(obs)[2] >= 0.90, (obs, res.counts[obs])


def test_matches_the_chexpert_labeler_on_its_four_samples(shared_data):
    """Same 1 / 0 / -1 / blank as the CheXpert labeler's own outputs (a format reference, not gold)."""
    import csv
    import os
    with open(os.path.join(shared_data, "chexpert-labeler-samples", "labeled_reports.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    for row in rows:
        theirs = {k: None if v == "" else int(float(v)) for k, v in row.items() if k != "Reports"}
        assert label_report(row["Reports"]).labels == theirs
