"""Grounding engine rules on synthetic masks, heatmaps and measurements (no model, no phantom)."""
import numpy as np
import pytest

from model.grounding import attribution
from model.grounding.regions import region_mass, score_regions, spread_tokens, threshold_iou, to_display
from model.grounding.verdict import Thresholds, judge, side_of
from model.types import KeyLayout, RegionScore

H = W = 64


def synthetic_masks():
    """A crude frontal chest at 64x64: patient's right lung on the image's LEFT half (radiological convention)."""
    z = lambda: np.zeros((H, W), bool)  # noqa: E731
    m = {}
    m["right lung"] = z(); m["right lung"][8:56, 4:28] = True
    m["left lung"] = z(); m["left lung"][8:56, 36:60] = True
    m["right lung base"] = z(); m["right lung base"][40:56, 4:28] = True
    m["left lung base"] = z(); m["left lung base"][40:56, 36:60] = True
    m["right apical zone lung"] = z(); m["right apical zone lung"][8:18, 4:28] = True
    m["left apical zone lung"] = z(); m["left apical zone lung"][8:18, 36:60] = True
    m["right mid zone lung"] = z(); m["right mid zone lung"][24:40, 4:28] = True
    m["left mid zone lung"] = z(); m["left mid zone lung"][24:40, 36:60] = True
    m["heart"] = z(); m["heart"][30:54, 24:44] = True
    return m


def blob(rows, cols):
    h = np.full((H, W), 0.01)
    h[rows, cols] = 1.0
    return h


NORMAL = {"cardiothoracic_ratio": 0.44, "costophrenic_sharpness": {"left": 0.9, "right": 0.9},
          "lateral_lucency": {"left": 0.0, "right": 0.0}}


def test_uniform_heatmap_scores_every_region_at_chance():
    scores = score_regions(np.ones((H, W)), synthetic_masks())
    assert all(abs(r.score - 0.5) < 1e-9 for r in scores)


def test_scores_are_mass_over_mass_plus_area_and_ranked():
    masks = synthetic_masks()
    heat = blob(slice(44, 54), slice(40, 56))  # inside the left base
    scores = score_regions(heat, masks)
    assert [r.score for r in scores] == sorted((r.score for r in scores), reverse=True)
    assert scores[0].name == "left lung base"
    mass, area = region_mass(heat, masks)["left lung base"]
    assert scores[0].score == pytest.approx(mass / (mass + area))
    assert all(0.0 <= r.score < 1.0 for r in scores)
    # A region that gets nothing beyond the floor scores well under chance.
    assert {r.name: r.score for r in scores}["right apical zone lung"] < 0.2


def test_region_scoring_rejects_bad_input():
    masks = synthetic_masks()
    with pytest.raises(ValueError, match="non-negative"):
        score_regions(-np.ones((H, W)), masks)
    with pytest.raises(ValueError, match=r"shape \(64, 64\).*\(32, 32\)"):
        score_regions(np.ones((32, 32)), masks)


def test_spread_tokens_conserves_mass_and_places_regions_on_masks():
    masks = synthetic_masks()
    patches = np.zeros((4, 4)); patches[0, 0] = 2.0
    d = spread_tokens(patches, {"heart": 3.0}, masks, (H, W))
    assert d.sum() == pytest.approx(5.0)
    assert d[:16, :16].sum() == pytest.approx(2.0)
    assert d[masks["heart"]].sum() == pytest.approx(3.0)
    assert to_display(d).max() == pytest.approx(1.0)


def test_threshold_iou():
    truth = np.zeros((H, W), bool); truth[10:20, 10:20] = True
    assert threshold_iou(truth.astype(float), truth) == 1.0
    assert threshold_iou(np.zeros((H, W)), truth) == 0.0


def test_side_of_sentence():
    assert side_of("Small left pleural effusion.", []) == "left"
    assert side_of("Opacity at the base.", ["right lung base"]) == "right"
    assert side_of("Bilateral effusions.", []) is None
    assert side_of("No pneumothorax.", []) is None


def _judge(text, labels, anatomy, heat, meas=NORMAL, th=None):
    masks = synthetic_masks()
    return judge(text, labels, anatomy, score_regions(heat, masks), masks, meas, th or Thresholds())


def test_supported_effusion_with_blunted_angle_is_grounded():
    meas = {**NORMAL, "costophrenic_sharpness": {"left": 0.1, "right": 0.9}}
    j = _judge("Small left pleural effusion.", {"Pleural Effusion": 1}, ["left lung base"],
               blob(slice(44, 54), slice(40, 56)), meas)
    assert j.verdict == "grounded", j.reasons
    assert j.regions[0].name == "left lung base"


def test_effusion_with_sharp_angles_is_ungrounded_by_measurement():
    j = _judge("Small left pleural effusion.", {"Pleural Effusion": 1}, ["left lung base"],
               blob(slice(44, 54), slice(40, 56)))
    assert j.verdict == "ungrounded"
    assert any("costophrenic" in r for r in j.reasons)


def test_cardiomegaly_with_small_ctr_is_ungrounded_and_large_ctr_grounded():
    heat = blob(slice(32, 52), slice(26, 42))
    small = _judge("The heart is enlarged.", {"Cardiomegaly": 1}, ["heart"], heat)
    big = _judge("The heart is enlarged.", {"Cardiomegaly": 1}, ["heart"], heat,
                 {**NORMAL, "cardiothoracic_ratio": 0.62})
    assert small.verdict == "ungrounded" and "cardiothoracic ratio 0.44" in small.reasons[0]
    assert big.verdict == "grounded"
    assert small.score > big.score


def test_pneumothorax_with_normal_apical_markings_is_ungrounded():
    j = _judge("Right pneumothorax.", {"Pneumothorax": 1}, ["right lung"], blob(slice(8, 18), slice(4, 28)))
    assert j.verdict == "ungrounded"
    assert any("lateral lung lucency" in r for r in j.reasons)


def test_no_supporting_region_is_ungrounded():
    j = _judge("Right upper lobe consolidation.", {"Consolidation": 1}, ["right lung"], np.ones((H, W)))
    assert j.verdict == "ungrounded"
    assert any("no region supports it" in r for r in j.reasons)


def test_support_in_the_wrong_place_is_weak():
    # Attention sits on the heart, the sentence names the right lung base.
    j = _judge("Right basilar atelectasis.", {"Atelectasis": 1}, ["right lung base"],
               blob(slice(32, 52), slice(26, 42)))
    assert j.verdict == "weak"
    assert any("do not match the anatomy" in r for r in j.reasons)


def test_negative_sentence_is_judged_against_the_region_it_denies():
    heat = np.ones((H, W)); heat[8:56, 4:60] = 3.0  # attention over both lungs
    ok = _judge("No pneumothorax.", {"Pneumothorax": 0}, [], heat)
    assert ok.verdict == "grounded"
    assert {r.name for r in ok.regions} == {"left lung", "right lung"}
    meas = {**NORMAL, "lateral_lucency": {"left": 0.6, "right": -0.6}}
    denied = _judge("No pneumothorax.", {"Pneumothorax": 0}, [], heat, meas)
    assert denied.verdict == "ungrounded" and "left lateral lung lucency 0.60" in denied.reasons[0]
    assert denied.score > ok.score


def test_thresholds_load_rejects_unknown_fields(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('{"support_min": 0.6, "typo_field": 1}')
    with pytest.raises(ValueError, match="typo_field"):
        Thresholds.load(str(p))
    p.write_text('{"support_min": 0.6, "command": "x"}')
    assert Thresholds.load(str(p)).support_min == 0.6


# --- attribution mechanics with a tiny fake model whose evidence is known -------------------------------------
LAYOUT = KeyLayout(grid=(4, 4), regions=["right lung", "left lung base", "heart"], n_feature_tokens=2)


def test_rollout_follows_memory_to_the_attended_keys():
    masks = synthetic_masks()
    nmem = 3
    cross = np.zeros((nmem, LAYOUT.n_keys))
    cross[0, LAYOUT.n_patches + 1] = 1.0  # memory 0 reads the left-lung-base region token
    cross[1, 0] = 1.0  # memory 1 reads the top-left patch
    cross[2, -1] = 1.0  # memory 2 reads a feature token (not drawable)
    mem = np.zeros((4, nmem)); mem[:2, 0] = 1.0; mem[2:, 1] = 1.0
    dens = attribution.rollout(mem, cross, LAYOUT, [(0, 2), (2, 4)], masks, (H, W), contrast=False,
                               region_tokens=True)
    assert score_regions(dens[0], masks)[0].name == "left lung base"
    assert dens[1][:16, :16].sum() == pytest.approx(dens[1].sum())
    # the default draws patch evidence only: the region token's weight is left out
    dens = attribution.rollout(mem, cross, LAYOUT, [(0, 2), (2, 4)], masks, (H, W))
    assert dens[0].sum() == 0 and dens[1].sum() > 0
    assert dens[1][:16, :16].sum() == pytest.approx(dens[1].sum())
    with pytest.raises(ValueError, match="outside the 4 attention rows"):
        attribution.rollout(mem, cross, LAYOUT, [(0, 9)], masks, (H, W))
    with pytest.raises(ValueError, match="same Nmem"):
        attribution.rollout(mem, cross[:2], LAYOUT, [(0, 2)], masks, (H, W))


def test_contrasted_rollout_keeps_what_a_sentence_reads_more_than_the_report():
    masks = synthetic_masks()
    cross = np.zeros((3, LAYOUT.n_keys))
    cross[0, 5] = 1.0  # a slot every sentence leans on (the report's common ground)
    cross[1, 0] = 1.0  # top-left patch
    cross[2, 15] = 1.0  # bottom-right patch
    mem = np.zeros((4, 3))
    mem[:, 0] = 0.6
    mem[:2, 1] = 0.4  # sentence 0 also reads slot 1
    mem[2:, 2] = 0.4  # sentence 1 also reads slot 2
    plain = attribution.rollout(mem, cross, LAYOUT, [(0, 2), (2, 4)], masks, (H, W), contrast=False)
    dens = attribution.rollout(mem, cross, LAYOUT, [(0, 2), (2, 4)], masks, (H, W))
    cell = lambda d, k: d[(k // 4) * 16:(k // 4 + 1) * 16, (k % 4) * 16:(k % 4 + 1) * 16].sum()  # noqa: E731
    assert cell(plain[0], 5) > cell(plain[0], 0)  # uncontrasted, the shared slot dominates both sentences
    assert cell(dens[0], 0) == pytest.approx(dens[0].sum()) and cell(dens[0], 5) == 0
    assert cell(dens[1], 15) == pytest.approx(dens[1].sum()) and cell(dens[1], 0) == 0
    one = attribution.rollout(mem[:2], cross, LAYOUT, [(0, 2)], masks, (H, W))  # nothing to contrast with
    assert cell(one[0], 5) > 0 and cell(one[0], 0) > 0


def test_ablation_finds_the_region_a_sentence_depends_on():
    masks = synthetic_masks()
    regions = ["right lung", "left lung base", "heart"]
    keys = attribution.region_key_masks(LAYOUT, masks, regions)
    heart_token = LAYOUT.n_patches + 2
    assert keys[2, heart_token] and keys[1, LAYOUT.n_patches + 1]
    base_patches = np.flatnonzero(keys[1, :LAYOUT.n_patches])
    calls = []

    def score_fn(key_mask):  # sentence 0 needs the left base patches, sentence 1 the heart token
        calls.append(key_mask)
        keep = np.ones(LAYOUT.n_keys, bool) if key_mask is None else key_mask
        return [-5.0 + keep[base_patches].mean() * 2.0, -3.0 + 1.5 * keep[heart_token]]

    drops = attribution.ablation(score_fn, LAYOUT, masks, regions)
    assert drops.shape == (2, 3)
    assert len(calls) == 4  # R + 1 scorer calls
    assert np.argmax(drops[0]) == 1 and drops[0, 1] == pytest.approx(2.0)
    assert np.argmax(drops[1]) == 2 and drops[1, 2] == pytest.approx(1.5)
    s = attribution.ablation_scores(drops[1], regions)
    assert s["heart"] == pytest.approx(1.0) and s["right lung"] == pytest.approx(0.5)


def test_key_layout_mismatch_names_both_counts():
    with pytest.raises(ValueError, match="5 keys.*describes 21"):
        attribution.key_weights_to_density(np.ones(5), LAYOUT, synthetic_masks(), (H, W))


def test_judge_links_are_region_scores():
    j = _judge("Left lower lobe opacity.", {"Lung Opacity": 1}, ["left lung base"], blob(slice(44, 54), slice(40, 56)))
    assert all(isinstance(r, RegionScore) for r in j.regions)


def test_zone_opacity_marks_the_denser_zone_and_flags_denied_consolidation():
    from model.grounding.image_checks import zone_opacity

    masks = synthetic_masks()
    masks["right upper zone lung"] = np.zeros((H, W), bool); masks["right upper zone lung"][8:24, 4:28] = True
    masks["left upper zone lung"] = np.zeros((H, W), bool); masks["left upper zone lung"][8:24, 36:60] = True
    rng = np.random.default_rng(0)
    image = 0.2 + 0.02 * rng.standard_normal((H, W))
    image[42:54, 8:24] += 0.3  # a dense patch in the right base (image left)
    z = zone_opacity(image, masks)
    assert z["right lung base"] > 1.0 and z["left lung base"] < -1.0
    assert abs(z["right upper zone lung"]) < 0.5
    meas = {**NORMAL, "zone_opacity": z}
    heat = np.ones((H, W)); heat[8:56, 4:60] = 3.0
    trusted = Thresholds(reliable={"ctr": True, "cp": True, "lucency": True, "opacity": True})
    denied = _judge("No focal consolidation.", {"Consolidation": 0}, [], heat, meas, trusted)
    assert denied.verdict == "ungrounded" and "right lung base opacity" in denied.reasons[0]
    wrong_side = _judge("Left lower lobe consolidation.", {"Consolidation": 1}, ["lung lower lobe left"],
                        blob(slice(44, 54), slice(40, 56)), meas, trusted)
    assert wrong_side.verdict == "ungrounded"
    # An unreliable check (poor calibration) only weakens the sentence, unless its evidence is overwhelming.
    reliable = {"ctr": True, "cp": True, "lucency": True, "opacity": False}
    soft = Thresholds(reliable=reliable, measurement_scale={"ctr": 0.03, "cp": 0.1, "lucency": 0.05, "opacity": 5.0})
    weak = _judge("No focal consolidation.", {"Consolidation": 0}, [], heat, meas, soft)
    assert weak.verdict == "weak" and "a weak check" in weak.reasons[0]
    strong = _judge("No focal consolidation.", {"Consolidation": 0}, [], heat, meas, Thresholds(reliable=reliable))
    assert strong.verdict == "ungrounded"


def test_lateral_lucency_marks_air_at_the_lung_edge():
    from model.grounding.image_checks import lateral_band, lateral_lucency

    masks = synthetic_masks()
    band = lateral_band(masks["right lung"], "right")
    assert band[20, 4] and not band[20, 27]  # the patient's right lung: its lateral edge is the image's left
    assert lateral_band(masks["left lung"], "left")[20, 59]
    image = np.full((H, W), 0.4)
    image[8:56, 4:10] = 0.1  # air along the right lateral chest wall
    luc = lateral_lucency(image, masks)
    assert luc["right"] > 0 > luc["left"]
    assert luc["right"] == pytest.approx(-luc["left"])


def test_unsupported_but_image_confirmed_finding_is_weak_not_ungrounded():
    meas = {**NORMAL, "costophrenic_sharpness": {"left": 0.1, "right": 0.9}}
    j = _judge("Small left pleural effusion.", {"Pleural Effusion": 1}, ["left lung base"], np.ones((H, W)), meas)
    assert j.verdict == "weak"
    assert "though the image measurement agrees" in j.reasons[0] and "costophrenic" in j.reasons[0]


def test_key_layout_reads_the_generator_layout_and_its_dict():
    assert attribution.as_layout(LAYOUT) is LAYOUT
    assert attribution.as_layout(LAYOUT.to_dict()) == LAYOUT
    with pytest.raises(ValueError, match="no patch grid"):
        attribution.as_layout({"regions": []})


def test_image_specificity_blends_the_score_and_demotes_a_grounded_sentence():
    from dataclasses import replace

    from model.grounding.verdict import Judgement, with_specificity

    th = replace(Thresholds(), pmi_weight=0.5, pmi_scale=1.0)
    j = Judgement("grounded", ["supported by heart (0.80)"], 0.2, [RegionScore("heart", 0.8)], 0.8)
    down = with_specificity(j, -2.0, th)
    assert down.verdict == "weak" and down.score == pytest.approx(0.5 * 0.2 + 0.5 / (1 + np.exp(-2.0)))
    assert "7.4x less likely on this image" in down.reasons[-1] and down.reasons[0] == j.reasons[0]
    up = with_specificity(j, 6.0, th)
    assert up.verdict == "grounded" and up.score < j.score and "over 100x more likely" in up.reasons[-1]
    bad = with_specificity(Judgement("ungrounded", ["x"], 0.9, []), 3.0, th)
    assert bad.verdict == "ungrounded"  # the model's view moves the score, never clears a contradiction


def test_sentence_pmi_is_own_likelihood_against_the_bank_mean():
    import torch

    from model.grounding.specificity import sentence_pmi

    class Scorer:  # log-likelihoods per sentence, by which image it is given
        table = {0: [-1.0, -5.0], 1: [-2.0, -1.0], 2: [-4.0, -1.0]}

        def score_sentences(self, image, masks, text):
            return torch.tensor(self.table[int(image[0, 0])], dtype=torch.float64)

    img = lambda k: np.full((4, 4), k, dtype=np.float32)  # noqa: E731
    pmi = sentence_pmi(Scorer(), img(0), None, "A. B.", bank=[(img(1), None), (img(2), None)])
    prior = np.log((np.exp([-2.0, -1.0]) + np.exp([-4.0, -1.0])) / 2)
    np.testing.assert_allclose(pmi, np.array([-1.0, -5.0]) - prior)
    assert pmi[0] > 0 > pmi[1]


def test_pointing_game_points_at_the_centre_of_a_blocky_maximum():
    from model.grounding.harness import peak_point, pointing_hit

    # an 8 x 8 patch map on a 256-pixel image: the maximum is a whole 32 x 32 cell (rows and cols 64..95)
    heat = np.zeros((256, 256))
    heat[64:96, 64:96] = 1.0
    assert peak_point(heat) in {(79, 79), (79, 80), (80, 79), (80, 80)}
    # a finding touching only the cell's top-left corner is not what the map points at; one at its centre is
    corner = np.zeros((256, 256), bool)
    corner[60:66, 60:66] = True
    centre = np.zeros((256, 256), bool)
    centre[76:84, 76:84] = True
    assert not pointing_hit(heat, corner) and pointing_hit(heat, centre)
    assert pointing_hit(heat, corner, tolerance=15)  # the customary tolerance reaches the cell's corner
    # a single-pixel peak is itself
    heat[200, 10] = 2.0
    assert peak_point(heat) == (200, 10)


def _with_airway(m):
    m = dict(m)
    m["trachea"] = np.zeros((H, W), bool)
    m["trachea"][0:24, 30:34] = True
    m["left hemidiaphragm"] = np.zeros((H, W), bool)
    m["left hemidiaphragm"][56:60, 36:60] = True
    return m


def test_a_tube_supported_in_a_hemidiaphragm_is_not_grounded():
    masks = _with_airway(synthetic_masks())
    text = "Endotracheal tube tip is 4 cm above the carina."
    labels = {"Support Devices": 1}
    wrong = score_regions(blob(slice(56, 60), slice(36, 60)), masks)
    j = judge(text, labels, [], wrong, masks, NORMAL, Thresholds())
    assert j.verdict != "grounded" and "not where tubes and lines run" in j.reasons[0]
    right_place = score_regions(blob(slice(0, 24), slice(30, 34)), masks)
    assert judge(text, labels, [], right_place, masks, NORMAL, Thresholds()).verdict == "grounded"


def test_a_pneumothorax_supported_only_at_the_base_is_not_grounded():
    masks = synthetic_masks()
    measurements = {**NORMAL, "lateral_lucency": {"left": 0.5, "right": 0.0}}  # the image agrees: air on the left
    base = score_regions(blob(slice(44, 56), slice(36, 60)), masks)
    j = judge("Left pneumothorax.", {"Pneumothorax": 1}, [], base, masks, measurements, Thresholds())
    assert j.verdict != "grounded"
    apex = score_regions(blob(slice(8, 18), slice(36, 60)), masks)
    assert judge("Left pneumothorax.", {"Pneumothorax": 1}, [], apex, masks, measurements,
                 Thresholds()).verdict == "grounded"


def test_a_large_heart_on_an_ap_film_is_not_evidence_and_the_view_is_said():
    from model.grounding.verdict import finding_evidence
    th = Thresholds()
    big = {"cardiothoracic_ratio": 0.62}
    p_unknown, why_unknown = finding_evidence("Cardiomegaly", None, big, th)
    p_ap, why_ap = finding_evidence("Cardiomegaly", None, {**big, "acquisition": {"view": "AP"}}, th)
    assert p_unknown > 0.9 and "view unknown" in why_unknown and "not validated on real films" in why_unknown
    assert p_ap == 0.5 and "AP film" in why_ap
    p_pa, why_pa = finding_evidence("Cardiomegaly", None, {**big, "acquisition": {"view": "PA"}}, th)
    assert p_pa == p_unknown and "on a PA film" in why_pa


def test_a_distance_in_a_sentence_is_reported_unchecked():
    masks = _with_airway(synthetic_masks())
    regions = score_regions(blob(slice(0, 24), slice(30, 34)), masks)
    j = judge("Endotracheal tube tip is 4 cm above the carina.", {"Support Devices": 1}, [], regions, masks,
              NORMAL, Thresholds())
    assert any("distance it gives is not checked" in r and "no pixel spacing" in r for r in j.reasons)
    j2 = judge("Endotracheal tube in place.", {"Support Devices": 1}, [], regions, masks, NORMAL, Thresholds())
    assert not any("distance" in r for r in j2.reasons)
