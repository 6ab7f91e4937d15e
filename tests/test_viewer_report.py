import pytest

from model.types import RegionScore, Sentence
from viewer.report import report_html, sentences_in_region, side_by_side_html, verdict_badge

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def _sentences():
    return [Sentence(0, "The heart is enlarged.", regions=[RegionScore("heart", 0.9), RegionScore("right lung", 0.2)],
                     verdict="grounded", reasons=["mask overlap 0.9"]),
            Sentence(1, HOSTILE, regions=[], verdict="ungrounded", reasons=[HOSTILE]),
            Sentence(2, "Lungs are clear.", regions=[RegionScore("right lung", 0.6)], verdict="weak")]


def test_each_sentence_has_badge_text_and_regions():
    h = report_html(_sentences(), selected=0, notes={2: ["accepted by dr <b>"]})
    assert h.count("<li") == 3
    assert "gcxr-grounded" in h and "gcxr-ungrounded" in h and "gcxr-weak" in h
    assert "heart (0.90)" in h and "no linked region" in h
    assert 'data-index="0" style="background:#fff8c5' in h
    assert "accepted by dr &lt;b&gt;" in h


def test_all_text_is_escaped():
    h = report_html(_sentences(), title="<i>t</i>", disclaimer="<b>x</b>") + side_by_side_html(HOSTILE, HOSTILE)
    assert "<script>" not in h and "<img" not in h and "<i>t" not in h and "<b>x" not in h
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in h


def test_badge_rejects_unknown_verdict():
    with pytest.raises(ValueError, match="unknown verdict"):
        verdict_badge("maybe")
    assert "not grounded yet" in verdict_badge(None)


def test_side_by_side_shows_both_reports():
    h = side_by_side_html("Original text.", "")
    assert "Original text." in h and "(empty)" in h and "Model original" in h


def test_sentences_in_region_orders_by_score():
    got = sentences_in_region(_sentences(), "right lung")
    assert [s.index for s in got] == [2, 0]
    assert sentences_in_region(_sentences(), "trachea") == []


def test_out_of_domain_banner_folds_the_text_and_unverified_has_a_badge():
    from viewer.report import domain_banner, report_html, verdict_badge
    assert domain_banner({"score": 3.0, "limit": 5.0, "inside": True}) is None and domain_banner(None) is None
    banner = domain_banner({"score": 41.0, "limit": 12.0, "inside": False})
    assert banner.startswith("Not a reading of this film") and "41.0" in banner
    h = report_html([Sentence(0, "Large right pneumothorax.", verdict="unverified")], banner=banner)
    assert 'role="alert"' in h and "<details" in h and h.index("gcxr-banner") < h.index("pneumothorax")
    assert "unverified" in verdict_badge("unverified") and "grounded" not in verdict_badge("unverified")


def test_a_flagged_sentence_is_struck_through_and_labelled_not_part_of_the_report():
    h = report_html(_sentences(), flags={2: "not_in_image"}, regrounded={0}, undecided={1})
    item = h[h.index('data-index="2"'):]
    assert '<s class="gcxr-text"' in item and "not part of the signed report" in item
    assert h.count("gcxr-flagged") == 1 and h.count("re-grounded") == 1 and h.count("to review") == 1


def test_the_compare_panel_marks_changed_words_and_names_who_and_when():
    from viewer.report import word_diff_html
    diff = word_diff_html("The heart is normal in size.", "The heart is mildly enlarged.")
    assert '<del class="gcxr-del" style="color:#cf222e">normal in size.</del>' in diff
    assert '<ins class="gcxr-ins" style="color:#1a7f37">mildly enlarged.</ins>' in diff
    assert diff.startswith("The heart is")
    h = side_by_side_html("A b.", "A c.", changes=[(0, "dr.<a>", "2026-12-05 10:00 UTC")])
    assert "sentence 1: dr.&lt;a&gt;, 2026-12-05 10:00 UTC" in h
    assert word_diff_html(HOSTILE, "x").count("<script") == 0


def test_reason_numbers_are_named_in_plain_words():
    h = report_html([Sentence(0, "x", verdict="weak", reasons=["The words point to the heart.\nPMI +3.38"])])
    assert "association with this film +3.38" in h and "PMI" not in h
