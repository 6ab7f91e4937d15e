"""Sentence splitting: offsets, headers, numbered lists, abbreviations, XXXX tokens."""
import pytest

from model.report.sentences import Span, split_sentences


def texts(report):
    return [s.text for s in split_sentences(report)]


def test_offsets_point_into_the_original_text():
    report = "FINDINGS:  The heart is normal.\n\nIMPRESSION: No acute disease."
    spans = split_sentences(report)
    assert [report[s.start:s.end] for s in spans] == [s.text for s in spans]
    assert texts(report) == ["The heart is normal.", "No acute disease."]


def test_headers_in_any_case_are_not_sentences():
    assert texts("Findings: Lungs clear. Impression: Normal chest.") == ["Lungs clear.", "Normal chest."]
    assert texts("COMPARISON: None. INDICATION: Cough.") == ["None.", "Cough."]


def test_numbered_lists_lose_their_numbers():
    assert texts("1. Stable mild cardiomegaly. 2. Hyperexpanded but clear lungs.") == [
        "Stable mild cardiomegaly.", "Hyperexpanded but clear lungs."]
    assert texts("IMPRESSION:\n1) Left effusion.\n2) No pneumothorax.") == ["Left effusion.", "No pneumothorax."]
    assert texts("1.Lucency in the clavicle. 2.Stable nodule measuring 1.5 cm.") == [
        "Lucency in the clavicle.", "Stable nodule measuring 1.5 cm."]


def test_abbreviations_and_decimals_do_not_split():
    assert texts("Nodule measures 1.5 cm. in diameter, e.g. a granuloma. Dr. XXXX was notified.") == [
        "Nodule measures 1.5 cm. in diameter, e.g. a granuloma.", "Dr. XXXX was notified."]
    assert texts("Nodule of 5 mm. No effusion.") == ["Nodule of 5 mm.", "No effusion."]


def test_xxxx_tokens_are_kept_and_split_normally():
    assert texts("Normal chest x-XXXX. There are no XXXX of a pleural effusion. XXXX XXXX.") == [
        "Normal chest x-XXXX.", "There are no XXXX of a pleural effusion.", "XXXX XXXX."]


def test_tokenised_lowercase_model_output():
    assert texts("the heart is normal in size . the lungs are clear .") == [
        "the heart is normal in size .", "the lungs are clear ."]


def test_blank_lines_and_capitalised_lines_split_but_wrapped_lines_do_not():
    assert texts("No effusion\n\nHeart normal") == ["No effusion", "Heart normal"]
    assert texts("No effusion\nHeart normal") == ["No effusion", "Heart normal"]
    assert texts("There is no\npneumothorax.") == ["There is no\npneumothorax."]


def test_empty_and_punctuation_only_input():
    assert split_sentences("") == []
    assert split_sentences(" . \n ") == []
    assert split_sentences("No effusion.") == [Span(0, 12, "No effusion.")]


def test_non_string_is_a_clear_error():
    with pytest.raises(TypeError, match="expects a str"):
        split_sentences(None)


def test_section_headers_are_found_with_their_offsets():
    from model.report.sentences import section_headers
    text = "FINDINGS: The lungs are clear. IMPRESSION: Normal. Dr. Smith: no XXXX: here."
    heads = section_headers(text)
    assert [h.text for h in heads] == ["FINDINGS", "IMPRESSION"]
    assert all(text[h.start:h.end] == h.text for h in heads)
    assert section_headers("The lungs are clear.") == []
