"""The promotion gate's statistics (model/report/gate.py), its rendering and rule (review/promotion.py), and the
pieces of the `corrections` objective that need no training: DPO/NPO against the parent and the balanced replay."""
import pytest

from model.report.gate import compare, gold_from_findings, gold_from_report, refusal, score_case
from review.promotion import comparison_markdown, summary_line

NORMAL = "The heart is normal in size. The lungs are clear. No pleural effusion. No pneumothorax."
LEFT = "The heart is normal in size. The lungs are clear. There is a large left pleural effusion. No pneumothorax."
RIGHT = LEFT.replace("left", "right")


def test_a_case_is_scored_for_misses_false_alarms_and_the_wrong_side():
    eff_left = {"Pleural Effusion": "left"}
    assert score_case(NORMAL, eff_left).missed == ["Pleural Effusion"]
    assert score_case(LEFT, {}).false_alarm == ["Pleural Effusion"]
    assert score_case(RIGHT, eff_left).wrong_side == ["Pleural Effusion"]
    ok = score_case(LEFT, eff_left)
    assert ok.errors == 0 and (ok.tp, ok.fp, ok.fn) == (1, 0, 0)
    # a device's side is where it enters, not a finding's side
    assert score_case("A right central venous catheter is seen.", {"Support Devices": "left"}).errors == 0


def test_gold_from_a_findings_record_and_from_a_report_agree():
    record = {"findings": [{"type": "Pleural Effusion", "side": "left"}, {"type": "Cardiomegaly", "side": None}]}
    assert gold_from_findings(record) == {"Pleural Effusion": "left", "Cardiomegaly": None}
    assert gold_from_report(LEFT) == {"Pleural Effusion": "left"}
    assert gold_from_report(NORMAL) == {}


def test_the_same_reports_pass_with_no_change():
    golds = [{"Pleural Effusion": "left"}, {}] * 10
    r = compare([LEFT, NORMAL] * 10, [LEFT, NORMAL] * 10, golds)
    assert r["passed"] and r["failures"] == []
    assert all(c["delta"] == 0 and c["ci95"] == [0, 0] for c in r["change"].values())
    assert r["parent"]["ce_f1"] == 1.0 and r["cases"] == 20


def test_a_model_that_learnt_the_worklist_prior_fails_on_false_alarms():
    # the fine-tune of docs/learning_loop.md: "left effusion" on every film, normal ones included
    golds = [{"Pleural Effusion": "left"}, {"Pleural Effusion": "right"}, {}, {}] * 10
    parent = [NORMAL] * 40
    child = [LEFT] * 40
    r = compare(parent, child, golds)
    assert not r["passed"]
    kinds = " ".join(r["failures"])
    assert "false_alarm" in kinds and "wrong_side" in kinds and "missed" not in kinds
    assert r["change"]["missed_case_rate"]["ci95"][1] < 0  # it did stop missing
    assert r["per_finding"]["child"]["Pleural Effusion"]["false_alarm"] == 20


def test_a_better_model_passes_with_an_interval_below_zero():
    golds = [{"Pleural Effusion": "left"}, {}] * 20
    r = compare([NORMAL] * 40, [LEFT, NORMAL] * 20, golds)
    assert r["passed"] and r["change"]["errors_per_case"]["ci95"][1] < 0 and r["change"]["ce_f1"]["delta"] > 0


def test_the_rule_reads_stored_counts_as_it_reads_scores():
    # a benchmark keeps per-case counts, not reports: judging them gives the verdict compare gives on the reports
    from types import SimpleNamespace

    from model.report.gate import judge
    golds = [{"Pleural Effusion": "left"}, {"Pleural Effusion": "right"}, {}, {}] * 10
    parent, child = [NORMAL] * 40, [LEFT] * 40

    def counts(report, gold):
        s = score_case(report, gold)
        return SimpleNamespace(missed=len(s.missed), false_alarm=len(s.false_alarm), wrong_side=len(s.wrong_side),
                               errors=s.errors, tp=s.tp, fp=s.fp, fn=s.fn)

    full = compare(parent, child, golds)
    stored = judge([counts(r, g) for r, g in zip(parent, golds)], [counts(r, g) for r, g in zip(child, golds)])
    assert {k: full[k] for k in stored} == stored and not stored["passed"]
    with pytest.raises(ValueError, match="same non-zero number"):
        judge([], [])


def test_compare_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="same non-zero number"):
        compare([NORMAL], [], [{}])


def test_the_rule_and_its_rendering():
    golds = [{"Pleural Effusion": "left"}, {}] * 10
    bad = {"name": "ft-1", "parent": "base", "gate": compare([NORMAL] * 20, [LEFT] * 20, golds)}
    good = {"name": "ft-2", "parent": "base", "gate": compare([NORMAL] * 20, [LEFT, NORMAL] * 10, golds)}
    assert "failed the promotion gate against base" in refusal(bad)
    assert refusal(good) is None
    assert refusal({"name": "base"}) is None  # a base model has no parent to be compared with
    assert "no promotion-gate result" in refusal({"name": "ft-3", "parent": "base"})
    md = comparison_markdown(bad)
    assert "| cases with a false alarm | 0.0 % | 50.0 % | +50.0 pp" in md and "**failed**" in md
    assert "passed the promotion gate" in summary_line(good) and "FAILED" in summary_line(bad)


def test_dpo_and_npo_push_against_the_parent_and_saturate():
    torch = pytest.importorskip("torch")
    from model.s2d.corrections import preference_loss

    zero = {"rejected": torch.zeros(2), "chosen": torch.zeros(2)}
    edited = torch.tensor([True, False])
    at_parent = preference_loss(zero, zero, edited, beta=0.1)
    assert at_parent.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    better = {"rejected": torch.tensor([-10.0, -10.0]), "chosen": torch.tensor([10.0, 0.0])}
    assert preference_loss(better, zero, edited, beta=0.1) < at_parent
    far = {"rejected": torch.tensor([-1e4, -1e4]), "chosen": torch.tensor([1e4, 0.0])}
    assert preference_loss(far, zero, edited, beta=0.1).item() < 1e-6  # bounded: no push once well below


def test_balanced_replay_restores_the_base_mix_that_a_one_sided_worklist_skews():
    pytest.importorskip("torch")
    from model.s2d.replay import balanced_replay, mix, random_replay

    def entry(side):
        return {"report": NORMAL if side is None else (LEFT if side == "left" else RIGHT)}

    base = [entry(None)] * 60 + [entry("left")] * 20 + [entry("right")] * 20
    worklist = [entry("left")] * 20  # every corrected case a left effusion
    picked = balanced_replay(base, worklist, 80, seed=0)
    assert len(set(picked)) == 80
    both = mix(worklist + [base[i] for i in picked])
    target = mix(base)
    assert abs(both["Pleural Effusion:right"] - target["Pleural Effusion:right"]) < 0.05
    assert abs(both["Pleural Effusion:left"] - target["Pleural Effusion:left"]) < 0.05
    uniform = mix(worklist + [base[i] for i in random_replay(base, 80, seed=0)])
    assert uniform["Pleural Effusion:left"] > both["Pleural Effusion:left"] + 0.1


def test_a_preference_prefix_is_the_model_report_as_written_with_its_headers(tmp_path):
    # the sentence is scored where the model wrote it: after "IMPRESSION:", not glued onto the findings
    import json

    from model.s2d.corrections import preference_items
    rows = [("FINDINGS", "The heart is normal in size.", "accepted", None),
            ("FINDINGS", "There is a left pleural effusion.", "edited", "There is a right pleural effusion."),
            ("IMPRESSION", "Left pleural effusion.", "flagged", None)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"study": "S-1", "sentence_index": i, "section": sec, "model_sentence": m,
                                        "kind": k, "corrected_sentence": c}) + "\n"
                            for i, (sec, m, k, c) in enumerate(rows)))
    items, kinds = preference_items(str(path), {"S-1": object()})
    assert kinds == {"accepted": 1, "edited": 1, "flagged": 1}
    assert [(it.prefix, it.rejected, it.chosen) for it in items] == [
        ("FINDINGS: The heart is normal in size.", "There is a left pleural effusion.",
         "There is a right pleural effusion."),
        ("FINDINGS: The heart is normal in size. There is a left pleural effusion. IMPRESSION:",
         "Left pleural effusion.", None)]


def test_an_added_sentence_is_pulled_up_against_the_parent_and_placed_at_the_end_of_findings(tmp_path):
    torch = pytest.importorskip("torch")
    import json

    from model.s2d.corrections import _kinds, preference_items, preference_loss
    rows = [{"study": "S-1", "sentence_index": 0, "section": "FINDINGS", "model_sentence": "The lungs are clear.",
             "kind": "accepted", "corrected_sentence": "The lungs are clear."},
            {"study": "S-1", "sentence_index": 1, "section": "IMPRESSION", "model_sentence": "Normal chest.",
             "kind": "deleted", "corrected_sentence": None},
            {"study": "S-1", "sentence_index": 2, "section": None, "model_sentence": None, "kind": "added",
             "corrected_sentence": "Linear atelectasis at the right lung base."}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items, _ = preference_items(str(path), {"S-1": object()})
    added = [it for it in items if it.kind == "added"]
    assert [(it.prefix, it.rejected, it.chosen) for it in added] == [
        ("FINDINGS: The lungs are clear.", None, "Linear atelectasis at the right lung base.")]
    edited, is_added = _kinds(items)
    assert edited.tolist() == [False, False] and is_added.tolist() == [False, True]
    zero = {"rejected": torch.zeros(2), "chosen": torch.zeros(2)}
    at_parent = preference_loss(zero, zero, edited, 0.1, added=is_added)
    up = {"rejected": torch.zeros(2), "chosen": torch.tensor([0.0, 10.0])}
    down = {"rejected": torch.zeros(2), "chosen": torch.tensor([0.0, -10.0])}
    assert preference_loss(up, zero, edited, 0.1, added=is_added) < at_parent \
        < preference_loss(down, zero, edited, 0.1, added=is_added)
