"""Stage 0's vision half: report-derived tags, and an encoder that learns them from the image alone."""
import numpy as np
import pytest
import torch

from model.s2d.vision_pretrain import build_vocabulary, pretrain_vision, report_tags


def test_tags_come_from_positive_findings_with_region_and_degree():
    tags = report_tags("FINDINGS: Small left pleural effusion. No pneumothorax. Marked cardiomegaly.")
    assert "Pleural Effusion" in tags and "Pleural Effusion ~ small" in tags
    assert "Pleural Effusion @ left lung base" in tags
    assert "Cardiomegaly" in tags and "Cardiomegaly ~ marked" in tags
    assert not any(t.startswith("Pneumothorax") for t in tags)  # negated: no tag
    assert report_tags("The lungs are clear. No effusion or pneumothorax.") == set()
    assert report_tags("Possible right lower lobe pneumonia.") == set()  # uncertain is not positive


def test_vocabulary_keeps_tags_seen_often_enough():
    reports = ["Right pneumothorax."] * 3 + ["Left pleural effusion."]
    vocab, per_report = build_vocabulary(reports, min_count=2)
    assert "Pneumothorax" in vocab and "Pleural Effusion" not in vocab
    assert len(per_report) == 4 and "Pleural Effusion" in per_report[3]


def _synthetic_cases(n, rng):
    """32 px images: a bright blob on the image's left or right half (or none), the report saying which."""
    from model.s2d.data import Case

    cases = []
    for i in range(n):
        img = (rng.random((32, 32)) * 40 + 80).astype(np.uint8)
        kind = i % 3
        if kind:
            x0 = 4 if kind == 1 else 20  # image left = the patient's right
            img[10:18, x0:x0 + 8] = 230
        report = ["The lungs are clear.", "There is a right lung mass.", "There is a left lung mass."][kind]
        cases.append(Case(id=str(i), image=img, maps=np.zeros((1, 32, 32), np.float16), report=report))
    return cases


def test_encoder_learns_what_and_where_from_the_image():
    from model.s2d.config import _apply, tiny
    from model.s2d.modeling import build_vision

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = _apply(tiny(), {"vision": {"image_size": 32, "patch_size": 8, "hidden": 32, "layers": 1, "heads": 2}}, "t")
    vision = build_vision(cfg)
    res = pretrain_vision(vision, _synthetic_cases(192, rng), _synthetic_cases(60, rng), 0.5, 0.25, 1, epochs=8,
                          lr=3e-3, batch_size=32, min_count=5, progress=False)
    assert {"Lung Lesion", "Lung Lesion @ left lung", "Lung Lesion @ right lung"} <= set(res.vocabulary)
    assert res.val_auroc["Lung Lesion"] > 0.95
    assert res.val_auroc["Lung Lesion @ left lung"] > 0.9 and res.val_auroc["Lung Lesion @ right lung"] > 0.9
    assert not any(p.requires_grad for p in vision.parameters())  # frozen afterwards, as Rad-DINO is


def test_no_tags_is_a_clear_error():
    from model.s2d.config import _apply, tiny
    from model.s2d.modeling import build_vision

    cfg = _apply(tiny(), {"vision": {"image_size": 32, "patch_size": 8, "hidden": 32, "layers": 1, "heads": 2}}, "t")
    cases = _synthetic_cases(6, np.random.default_rng(0))
    for c in cases:
        c.report = "The lungs are clear."
    with pytest.raises(ValueError, match="nothing to learn"):
        pretrain_vision(build_vision(cfg), cases, [], 0.5, 0.25, 1, 1, 1e-3, progress=False)


def test_conv_stem_and_old_checkpoint_configs():
    from model.s2d.config import S2DConfig, tiny
    from model.s2d.modeling import ConvStem, build_vision

    assert tiny().vision.stem == "conv" and not tiny().vision.trainable
    old = S2DConfig.from_dict({"preset": "tiny", "vision": {"trainable": True}, "train": {"batch_size": 16}})
    assert old.vision.stem == "patch" and old.train.vision_pretrain.epochs == 0  # saved before either existed
    v = build_vision(tiny())
    assert isinstance(v.embeddings.patch_embeddings, ConvStem)
    out = v(pixel_values=torch.zeros(2, 1, 128, 128)).last_hidden_state
    assert out.shape == (2, 1 + 64, 128)
    with pytest.raises(ValueError, match="stem"):
        S2DConfig.from_dict({"preset": "tiny", "vision": {"stem": "resnet"}})
