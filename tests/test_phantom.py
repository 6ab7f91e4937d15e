"""The phantom world: determinism, anatomy names and laterality, record <-> report <-> masks agreement, storage."""
import json
import os
import re

import numpy as np
import pytest

from model import taxonomy
from model.phantom import FINDING_TYPES, generate_case, load_case, load_masks, write_dataset
from model.phantom.store import save_masks, split_counts

S = 256
# Words that must appear in a positive sentence for each finding type (independent of the writer's templates).
TYPE_WORDS = {"Cardiomegaly": ("cardiomegaly", "heart is", "cardiac silhouette is"),
              "Pleural Effusion": ("pleural effusion",), "Pneumothorax": ("pneumothorax",),
              "Consolidation": ("consolidation",), "Lung Opacity": ("opacity",), "Lung Lesion": ("nodule", "mass"),
              "Atelectasis": ("atelectasis",), "Edema": ("edema",),
              "Support Devices": ("tube", "catheter", "pacemaker")}
SIDE_WORDS = {"left": ("left",), "right": ("right",), "bilateral": ("bilateral", "bibasilar", "both")}


def _sentences(report):
    body = report.replace("FINDINGS:", " ").replace("IMPRESSION:", " ")
    return [s.strip().lower() for s in re.split(r"(?<=\.)\s+", body) if s.strip()]


def _positive_sentences(report):
    return [s for s in _sentences(report) if not re.match(r"(no |there is no )", s)]


@pytest.fixture(scope="module")
def random_cases():
    return [generate_case(seed) for seed in range(40)]


def test_same_seed_same_case_and_different_seed_different_case():
    a, b, c = generate_case(7), generate_case(7), generate_case(8)
    assert a.image.dtype == np.uint8 and a.image.shape == (S, S)
    assert np.array_equal(a.image, b.image) and a.report == b.report and a.prior_report == b.prior_report
    assert a.findings == b.findings and a.key_phrases == b.key_phrases
    assert all(np.array_equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert not np.array_equal(a.image, c.image)


def test_anatomy_uses_only_cxas_names_and_covers_the_core_regions():
    case = generate_case(3)
    taxonomy.validate_names(case.masks)
    for name in taxonomy.CORE_REGIONS:
        assert case.masks[name].dtype == bool and case.masks[name].any(), name


def test_patient_right_is_image_left():
    m = generate_case(11).masks
    for name in ("right lung", "right lung base", "lung middle lobe right", "clavicle right", "right hemidiaphragm"):
        assert np.nonzero(m[name])[1].mean() < S / 2, name
    for name in ("left lung", "left lung base", "lung upper lobe left", "clavicle left", "left hemidiaphragm",
                 "aortic arch"):
        assert np.nonzero(m[name])[1].mean() > S / 2, name
    assert (m["right lung"] & m["left lung"]).sum() == 0


def test_zones_partition_each_lung_and_apex_lies_in_upper_zone():
    m = generate_case(12).masks
    for side in ("right", "left"):
        zones = [m[f"{side} {z}"] for z in ("upper zone lung", "mid zone lung", "lung base")]
        assert np.array_equal(zones[0] | zones[1] | zones[2], m[f"{side} lung"])
        assert sum(z.sum() for z in zones) == m[f"{side} lung"].sum()  # no overlap
        assert not (m[f"{side} apical zone lung"] & ~zones[0]).any()
        ys_up, ys_base = np.nonzero(zones[0])[0], np.nonzero(zones[2])[0]
        assert ys_up.max() < ys_base.min()


def test_left_effusion_lies_in_the_image_right_lower_hemithorax_and_report_says_so():
    case = generate_case(5, findings=[{"type": "Pleural Effusion", "side": "left", "size": "small"}])
    f = case.findings["findings"][0]
    mask = case.finding_masks[f["id"]]
    ys, xs = np.nonzero(mask)
    assert xs.min() >= S / 2  # patient's left = image right
    lung_rows = np.nonzero(case.masks["left lung"])[0]
    assert ys.min() > lung_rows.min() + 0.6 * (lung_rows.max() - lung_rows.min())  # lower part of the lung
    assert "left lung base" in f["regions"] and not (mask & ~case.masks["left lung"]).any()
    assert "small left pleural effusion" in case.report.lower() and "small left pleural effusion" in case.key_phrases
    assert "costophrenic angle" in case.report


@pytest.mark.parametrize("side", ["right", "left"])
def test_pneumothorax_sits_at_the_named_apex(side):
    case = generate_case(9, findings=[{"type": "Pneumothorax", "side": side, "size": "small"}])
    f = case.findings["findings"][0]
    mask = case.finding_masks[f["id"]]
    assert (mask & case.masks[f"{side} apical zone lung"]).sum() > 0.1 * case.masks[f"{side} apical zone lung"].sum()
    ys, xs = np.nonzero(mask)
    lung_rows = np.nonzero(case.masks[f"{side} lung"])[0]
    assert np.median(ys) < lung_rows.min() + 0.5 * (lung_rows.max() - lung_rows.min())  # mostly the upper half
    assert (xs.mean() < S / 2) == (side == "right")
    assert f"{side} apical zone lung" in f["regions"]
    assert any("pneumothorax" in s and side in s for s in _positive_sentences(case.report))


def test_every_finding_agrees_between_record_report_and_masks(random_cases):
    seen = set()
    for case in random_cases:
        positives = _positive_sentences(case.report)
        for f in case.findings["findings"]:
            seen.add(f["type"])
            mask = case.finding_masks[f["id"]]
            assert mask.shape == (S, S) and mask.any(), (case.id, f)
            assert f["mask_key"] == f"finding/{f['id']}"
            taxonomy.validate_names(f["regions"])
            if f["type"] == "Support Devices":  # a tube or line runs through many regions: its tip is placed
                x, y = f["measurements"]["tip_xy"]
                assert case.masks[f["regions"][0]][int(y * S), int(x * S)], (case.id, f)
            else:
                named = np.zeros((S, S), bool)
                for r in f["regions"]:
                    named |= case.masks[r]
                assert (mask & named).sum() >= 0.97 * mask.sum(), (case.id, f)
            words = TYPE_WORDS[f["type"]]
            hits = [s for s in positives if any(w in s for w in words)]
            assert hits, (case.id, f["type"], case.report)
            if f["side"]:
                assert any(any(w in s for w in SIDE_WORDS[f["side"]]) for s in hits), (case.id, f, case.report)
            if f.get("location"):
                assert f["location"] in f["regions"], (case.id, f)
        assert case.report.startswith("FINDINGS: ") and " IMPRESSION: " in case.report
        json.dumps(case.findings)  # the record is plain JSON
    assert len(seen) >= 7, seen  # the random draw covers most finding types


def test_negatives_are_stated_only_for_absent_findings(random_cases):
    for case in random_cases:
        types = {f["type"] for f in case.findings["findings"]}
        text = case.report.lower()
        assert ("no pneumothorax" in case.key_phrases) == ("Pneumothorax" not in types)
        assert ("no pleural effusion" in case.key_phrases) == ("Pleural Effusion" not in types)
        if "Pneumothorax" not in types:
            assert "pneumothorax." in text
        if not types:
            assert case.findings["normal"] and {"lungs are clear", "no focal consolidation"} & set(case.key_phrases)
        for phrase in case.key_phrases:  # every gold phrase is said in the report (negatives as "no X" / "X")
            words = phrase.replace("no ", "").replace("normal heart size", "normal")
            assert words.split()[-1] in text, (phrase, case.report)


def test_cardiothoracic_ratio_is_measured_from_the_masks():
    big = generate_case(2, findings=[{"type": "Cardiomegaly", "size": "marked"}])
    normal = generate_case(2, findings=[])
    for case in (big, normal):
        heart_cols = np.nonzero(case.masks["heart"].any(0))[0]
        lung_cols = np.nonzero((case.masks["right lung"] | case.masks["left lung"]).any(0))[0]
        ctr = (np.ptp(heart_cols) + 1) / (np.ptp(lung_cols) + 1)
        assert abs(ctr - case.findings["measurements"]["cardiothoracic_ratio"]) < 0.02
    assert big.findings["measurements"]["cardiothoracic_ratio"] > 0.58
    assert normal.findings["measurements"]["cardiothoracic_ratio"] < 0.5
    assert "cardiomegaly" in big.report.lower() or "enlarged" in big.report.lower()
    assert normal.findings["normal"] and not normal.finding_masks


def test_subtlety_lowers_a_findings_contrast():
    plan = [{"type": "Consolidation", "side": "right", "location": "lung lower lobe right", "size": "dense"}]
    contrast = []
    for subtlety in (0.0, 1.0):
        case = generate_case(4, findings=plan, subtlety=subtlety, noise=0.0)
        mask = case.finding_masks["f0"]
        # the aerated lung around it: labels are anatomical (they pass behind the heart and the aortic knob)
        rest = case.masks["right lung"] & ~case.masks["heart"] & ~case.masks["aortic arch"] & ~mask
        contrast.append(case.image[mask].mean() - case.image[rest].mean())
    assert contrast[0] > contrast[1] > 0


def test_prior_study_changes_are_consistent(random_cases):
    changes = set()
    for case in random_cases:
        prior = case.findings["prior"]["findings"]
        key = lambda f: (f["type"], f.get("side"))  # noqa: E731
        prior_keys = {key(p) for p in prior}
        for f in case.findings["findings"]:
            changes.add(f["change"])
            assert (f["change"] == "new") == (key(f) not in prior_keys), (case.id, f)
        for p in prior:
            if p["change"] == "resolved":
                assert p["type"] not in {f["type"] for f in case.findings["findings"]}
        assert case.prior_report.startswith("FINDINGS: ")
    assert {"new", "unchanged"} <= changes


def test_bad_inputs_fail_clearly():
    with pytest.raises(TypeError, match="unknown phantom knobs"):
        generate_case(1, blur=3)
    with pytest.raises(ValueError, match="subtlety"):
        generate_case(1, subtlety=2)
    with pytest.raises(ValueError, match="side"):
        generate_case(1, findings=[{"type": "Pneumothorax", "side": "up"}])
    with pytest.raises(ValueError, match="unknown finding type"):
        generate_case(1, findings=[{"type": "Fracture"}])
    with pytest.raises(ValueError, match="size"):
        generate_case(1, size=16)
    with pytest.raises(ValueError, match="sum"):
        split_counts(10, (0.5, 0.1, 0.1))


def test_write_dataset_r2gen_layout_roundtrip(tmp_path):
    out = tmp_path / "ds"
    ann = write_dataset(str(out), 10, seed=3, size=128, workers=2)
    on_disk = json.loads((out / "annotation.json").read_text())
    assert on_disk == ann and [len(ann[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    ids = [e["id"] for s in ann.values() for e in s]
    assert len(set(ids)) == 10
    for split, entries in ann.items():
        for e in entries:
            assert e["split"] == split and set(e) >= {"id", "report", "image_path", "findings", "prior_report",
                                                     "key_phrases", "masks"}
            assert os.path.isfile(out / e["image_path"][0]) and os.path.isfile(out / e["masks"])
    e = ann["train"][0]
    case = load_case(e, str(out))
    anatomy, findings = load_masks(str(out / e["masks"]))
    assert case.image.shape == (128, 128) and set(findings) == {f["id"] for f in e["findings"]["findings"]}
    taxonomy.validate_names(anatomy)
    assert not list(out.rglob(".*.tmp*"))  # no temporary files (model.atomic's) left behind
    # the same seed gives the same dataset whatever the worker count
    again = write_dataset(str(tmp_path / "ds1"), 10, seed=3, size=128, workers=1)
    assert [x["report"] for x in again["train"]] == [x["report"] for x in ann["train"]]
    with pytest.raises(FileExistsError, match="overwrite"):
        write_dataset(str(out), 10, seed=3, size=128)


def test_cli_writes_a_dataset(tmp_path, capsys):
    from model.__main__ import main
    assert main(["phantom", "--out", str(tmp_path / "d"), "--n", "3", "--seed", "1", "--size", "96",
                 "--workers", "1"]) == 0
    assert "wrote 3 phantom cases" in capsys.readouterr().out
    assert main(["phantom", "--out", str(tmp_path / "d"), "--n", "3", "--seed", "1", "--size", "96"]) == 2
    assert "exists" in capsys.readouterr().err


def test_load_masks_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="mask file not found"):
        load_masks(str(tmp_path / "nope.npz"))
    np.savez(tmp_path / "bad.npz", **{"not a region": np.zeros((4, 4), bool)})
    with pytest.raises(ValueError, match="neither a CXAS name"):
        load_masks(str(tmp_path / "bad.npz"))
    with pytest.raises(ValueError, match="not CXAS"):
        save_masks(str(tmp_path / "x.npz"), {"lungz": np.zeros((4, 4), bool)}, {})
    assert not (tmp_path / "x.npz").exists()


def test_all_finding_types_can_be_planned_and_drawn():
    case = generate_case(21, findings=[{"type": t} for t in FINDING_TYPES if t != "Pneumothorax"])
    assert len(case.finding_masks) == len(FINDING_TYPES) - 1
    for dev in ("endotracheal tube", "central venous catheter", "pacemaker"):
        c = generate_case(22, findings=[{"type": "Support Devices", "subtype": dev}])
        assert c.finding_masks["f0"].any() and dev.split()[-1] in c.report.lower()


def test_planned_fields_are_respected_and_sides_follow_the_place():
    c = generate_case(23, findings=[{"type": "Lung Lesion", "location": "left upper zone lung", "size": "mass"},
                                    {"type": "Support Devices", "subtype": "pacemaker"}])
    lesion, device = c.findings["findings"]
    assert lesion["side"] == "left" and lesion["location"] == "left upper zone lung" and lesion["size"] == "mass"
    assert np.nonzero(c.finding_masks[lesion["id"]])[1].min() >= S / 2
    assert device["side"] == "left" and device["regions"] == ["heart"]
    with pytest.raises(ValueError, match="location"):
        generate_case(1, findings=[{"type": "Consolidation", "side": "left", "location": "lung middle lobe right"}])
