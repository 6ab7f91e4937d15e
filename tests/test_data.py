"""Loaders (R2Gen annotation, Kaggle IU CSVs) and the demo cases."""
import json
import os

import numpy as np
import pytest

from conftest import ROOT
from model.data import load_iu_kaggle, load_r2gen
from model.demo import load_demo_cases

FIX = os.path.join(ROOT, "tests", "fixtures", "data")


def test_r2gen_annotation_loads_real_and_phantom_entries():
    data = load_r2gen(os.path.join(FIX, "annotation.json"))
    assert [len(data[s]) for s in ("train", "val", "test")] == [2, 1, 0]
    real, phantom = data["train"]
    assert real.image_paths == [os.path.join(FIX, "CXR1_IM-0001/0.png"), os.path.join(FIX, "CXR1_IM-0001/1.png")]
    assert real.findings is None and real.masks_path is None and real.split == "train"
    assert phantom.masks_path == os.path.join(FIX, "masks/phantom_0_00001.npz")
    assert phantom.key_phrases == ["no pneumothorax"] and phantom.prior_report.startswith("FINDINGS:")
    other = load_r2gen(os.path.join(FIX, "annotation.json"), image_root="/imgs")
    assert other["val"][0].image_paths == ["/imgs/CXR2_IM-0652/0.png"]


def test_r2gen_bad_files_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        load_r2gen(str(tmp_path / "missing.json"))
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_r2gen(str(tmp_path / "a.json"))
    (tmp_path / "b.json").write_text(json.dumps({"train": [{"id": "x", "report": "r"}]}))
    with pytest.raises(ValueError, match=r"train\[0\] lacks \['image_path'\]"):
        load_r2gen(str(tmp_path / "b.json"))


def test_kaggle_iu_layout_joins_reports_and_frontal_images():
    examples = {e.id: e for e in load_iu_kaggle(FIX, image_root="/iu")}
    assert sorted(examples) == ["CXR1", "CXR2", "CXR4"]  # uid 3 has neither findings nor impression
    assert examples["CXR1"].report == "The heart is normal in size. The lungs are clear, no effusion. No acute disease."
    assert examples["CXR1"].image_paths == ["/iu/1_IM-0001-4001.dcm.png"]  # the frontal, not the lateral
    assert examples["CXR2"].report == "Mild cardiomegaly." and examples["CXR2"].image_paths == []
    same = load_iu_kaggle(os.path.join(FIX, "indiana_reports.csv"))
    assert [e.id for e in same] == ["CXR1", "CXR2", "CXR4"] and same[0].image_paths == ["1_IM-0001-4001.dcm.png"]


def test_kaggle_iu_missing_columns_named(tmp_path):
    (tmp_path / "indiana_reports.csv").write_text("uid,findings\n1,x\n")
    (tmp_path / "indiana_projections.csv").write_text("uid,filename,projection\n")
    with pytest.raises(ValueError, match=r"lacks columns \['impression'\]"):
        load_iu_kaggle(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="CSV file not found"):
        load_iu_kaggle(str(tmp_path / "nope.csv"))


def test_real_iu_data_loads(shared_data):
    iu = os.path.join(shared_data, "iu-xray")
    examples = load_iu_kaggle(iu)
    assert 3500 < len(examples) <= 3851 and all(e.report for e in examples)
    assert sum(bool(e.image_paths) for e in examples) > 3000
    r2gen = load_r2gen(os.path.join(iu, "annotation_r2gen_split.json"))
    assert [len(r2gen[s]) for s in ("train", "val", "test")] == [2069, 296, 590]


def test_demo_cases_load_and_files_exist():
    cases = load_demo_cases()
    kinds = [c.kind for c in cases]
    assert kinds.count("phantom") >= 6 and kinds.count("real") == 5
    assert len({c.id for c in cases}) == len(cases)
    findings = set()
    for c in cases:
        assert os.path.isfile(c.image_path), c.image_path
        assert c.licence in ("phantom", "iu-xray", "nih-cxr14")
        assert c.reference_report or c.labels
        if c.kind == "phantom":
            anatomy, masks = c.load_masks()
            assert "right lung" in anatomy and set(masks) == {f["id"] for f in c.findings["findings"]}
            findings |= {f["type"] for f in c.findings["findings"]}
            img = c.load_image()
            assert img.dtype == np.uint8 and img.shape == anatomy["right lung"].shape
    assert len(findings) >= 7
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(os.path.join(ROOT, "assets", "demo"))
                for f in fs)
    assert total < 3_000_000
