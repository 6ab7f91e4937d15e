"""The learned segmenter (MONAI UNet): masked multi-label loss, augmentations, the per-side split of expert masks,
post-processing, confidence, save/load, refusals and orientation checks. Tiny sizes for the mechanics; the shipped
weights on phantoms for behaviour (the real-film numbers are in docs/segmentation.md)."""
import os

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # CI has 2 shared cores: one thread avoids OpenMP spin-waiting

from model.segmentation import FEATURE_CHANNELS, SegmentationError  # noqa: E402
from model.segmentation.augment import (RandCollimation, RandMarkers, RandQuantise,  # noqa: E402
                                        RandTubesAndWires, build_augment)
from model.segmentation.realfilms import patient_holdout, score_film, split_lungs  # noqa: E402
from model.segmentation.train import masked_loss  # noqa: E402
from model.segmentation.unet import (CLASSES, SegNetConfig, build_net, confidence, load, postprocess,  # noqa: E402
                                     save, segment_unet, weights_available)

TINY = SegNetConfig(size=32, channels=(4, 8, 16), strides=(2, 2), res_units=0)


def test_masked_loss_ignores_classes_a_film_has_no_label_for():
    torch.manual_seed(0)
    logits = torch.randn(2, len(CLASSES), 16, 16, requires_grad=True)
    y = (torch.rand(2, len(CLASSES), 16, 16) > 0.5).float()
    labelled = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # film 0: a real film, no heart label
    masked_loss(logits, y, labelled).backward()
    heart = CLASSES.index("heart")
    assert logits.grad[0, heart].abs().sum() == 0  # the missing label costs nothing
    assert logits.grad[1, heart].abs().sum() > 0 and logits.grad[0, 0].abs().sum() > 0


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    net = build_net(TINY)
    x = torch.zeros(2, 1, 32, 32)
    y = torch.zeros(2, len(CLASSES), 32, 32)
    x[:, :, 8:24, 4:14], y[:, 0, 8:24, 4:14] = 1.0, 1.0
    x[:, :, 8:24, 18:28], y[:, 1, 8:24, 18:28] = 1.0, 1.0
    y[:, 2, 16:24, 12:20] = 1.0
    lab = torch.ones(2, len(CLASSES))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = masked_loss(net(x), y, lab)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.8 * losses[0]


def test_augment_moves_image_and_label_together_and_keeps_labels_binary():
    aug = build_augment(0)
    img = np.zeros((1, 64, 64), np.float32)
    lab = np.zeros((3, 64, 64), np.float32)
    img[0, 20:40, 10:30], lab[0, 20:40, 10:30] = 1.0, 1.0
    for _ in range(10):
        out = aug({"image": img, "label": lab})
        a, b = np.asarray(out["image"]), np.asarray(out["label"])
        assert a.shape == img.shape and b.shape == lab.shape
        assert set(np.unique(b)) <= {0.0, 1.0} and a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize("cls", [RandCollimation, RandMarkers, RandTubesAndWires, RandQuantise])
def test_real_film_artefacts_touch_the_image_only(cls):
    t = cls(prob=1.0)
    t.set_random_state(3)
    img = np.full((1, 64, 64), 0.4, np.float32)
    img[0, :, 32:] = 0.6
    lab = np.zeros((3, 64, 64), np.float32)
    lab[0, 10:50, 5:25] = 1
    out = t({"image": img, "label": lab})
    assert not np.array_equal(np.asarray(out["image"]), img)
    assert np.array_equal(out["label"], lab)


def test_expert_mask_is_split_per_side_by_the_boxes():
    mask = np.zeros((100, 100), bool)
    mask[10:80, 10:45] = True
    mask[10:80, 55:90] = True
    boxes = {"right": (10, 10, 35, 70), "left": (55, 10, 35, 70)}
    right, left = split_lungs(mask, boxes)
    assert right[:, :50].sum() == right.sum() == 70 * 35 and left[:, 50:].sum() == left.sum() == 70 * 35
    mask[40:50, 45:55] = True  # lungs touching over the mediastinum: one component, cut between the boxes
    right, left = split_lungs(mask, boxes)
    assert right[:, 50:].sum() == 0 and left[:, :50].sum() == 0 and (right | left).sum() == mask.sum()
    with pytest.raises(ValueError, match="cannot be split"):
        split_lungs(np.zeros((100, 100), bool) | (np.arange(100)[None, :] < 40), boxes)


def test_patient_holdout_keeps_each_patient_on_one_side():
    from model.segmentation.realfilms import RealFilm
    films = [RealFilm(str(i), "", "", "train", f"p{i // 3}", "PA", "CC BY 4.0", {}) for i in range(60)]
    fit, select = patient_holdout(films, 0.2)
    assert {f.patient for f in fit}.isdisjoint({f.patient for f in select})
    assert len(fit) + len(select) == 60 and 6 <= len(select) <= 18


def test_score_film_is_one_for_a_perfect_answer():
    right = np.zeros((50, 50), bool)
    left = np.zeros((50, 50), bool)
    right[5:40, 5:20], left[5:40, 30:45] = True, True
    r = score_film({"right lung": right, "left lung": left}, right, left,
                   {"right": (5, 5, 15, 35), "left": (30, 5, 15, 35)})
    assert r == {"lung_dice": 1.0, "right_dice": 1.0, "left_dice": 1.0, "right_box_iou": 1.0, "left_box_iou": 1.0}


def test_postprocess_drops_specks_fills_holes_and_confidence_reads_certainty():
    p = np.zeros((3, 64, 64), np.float32)
    p[0, 10:50, 5:28] = 0.9
    p[0, 25:30, 12:18] = 0.1  # a hole (an opacity the network doubted)
    p[0, 60:62, 60:62] = 0.9  # a speck
    p[1, 10:50, 36:60] = 0.9
    p[2, 30:50, 24:40] = 0.9
    m = postprocess(p)
    assert m["right lung"][27, 15] and not m["right lung"][61, 61]
    assert confidence(p, m) > 0.85
    blurred = np.where(p > 0.5, 0.55, 0.45).astype(np.float32)
    assert confidence(blurred, postprocess(blurred)) < confidence(p, m)


def test_save_load_round_trip_and_segment(tmp_path):
    net = build_net(TINY)
    with torch.no_grad():  # make the untrained net "see" a lung on each side of whatever image it gets
        for p in net.parameters():
            p.zero_()
    path = str(tmp_path / "unet.pt")
    save(net, path, {"thresholds": {n: 0.5 for n in CLASSES}}, cfg=TINY)
    loaded = load(path)
    x = torch.rand(1, 1, 32, 32)
    np.testing.assert_allclose(loaded(x).detach().numpy(), net(x).detach().numpy(), atol=1e-3)
    assert loaded.meta["thresholds"]["heart"] == 0.5


def test_missing_or_outdated_weights_are_clear_errors(tmp_path):
    with pytest.raises(SegmentationError, match="no weights"):
        segment_unet(np.zeros((64, 64), np.float32), path=str(tmp_path / "absent.pt"))
    torch.save({"state_dict": {}, "config": {"classes": ["right lung"]}, "meta": {}}, tmp_path / "old.pt")
    with pytest.raises(SegmentationError, match="older version"):
        load(str(tmp_path / "old.pt"))


def test_training_cli_names_the_missing_real_films(tmp_path, capsys):
    from model.segmentation.train import main
    assert main(["--out", str(tmp_path / "o"), "--real", str(tmp_path), "--max-steps", "1"]) == 1
    assert "films.csv" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o" / "unet.pt")


# ------------------------------------------------------------------------------ the shipped weights

shipped = pytest.mark.skipif(not weights_available(), reason="no unet weights shipped")


def _phantom(seed=123):
    from model.phantom import generate_case
    case = generate_case(seed, size=256)
    return case.image.astype(np.float32) / 255.0, case


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@shipped
def test_shipped_weights_are_small_and_segment_a_phantom_in_the_cxas_convention():
    from model.segmentation.unet import WEIGHTS_PATH
    assert os.path.getsize(WEIGHTS_PATH) < 8_000_000
    img, case = _phantom()
    seg = segment_unet(img)
    assert seg.features.shape == (FEATURE_CHANNELS["unet"], 32, 32)
    for name in ("right lung", "left lung", "heart"):
        assert _dice(seg.masks[name], case.masks[name]) > 0.85, name
    # anatomical lungs pass behind the heart, as CXAS and the expert masks of real films draw them
    assert (seg.masks["left lung"] & seg.masks["heart"]).sum() > 0
    note = seg.measurements["segmentation"]
    assert note["confidence"] > 0.85 and "heart" in note["learned"] and "right lung base" in note["derived"]
    assert 0.3 < seg.measurements["cardiothoracic_ratio"] < 0.7


@shipped
@pytest.mark.parametrize("seed", [7, 11])
@pytest.mark.parametrize("turn,needle", [(np.fliplr, "mirrored"), (lambda a: np.rot90(a, 1), "turned 90"),
                                         (lambda a: np.rot90(a, -1), "turned 90")])
def test_a_mirrored_or_turned_film_is_refused_with_that_reason(turn, needle, seed):
    img, _ = _phantom(seed)
    with pytest.raises(SegmentationError, match=needle):
        segment_unet(np.ascontiguousarray(turn(img)))


@shipped
def test_not_a_chest_is_refused_with_a_reason():
    rng = np.random.default_rng(0)
    photo = cv2.GaussianBlur(rng.random((256, 256)).astype(np.float32), (0, 0), 12)  # smooth blobs: a photo-like scene
    photo = (photo - photo.min()) / (photo.max() - photo.min())
    with pytest.raises(SegmentationError, match="not a frontal chest radiograph|not sure"):
        segment_unet(photo)


@shipped
def test_tubes_markers_and_a_whited_out_lung_are_segmented_not_refused():
    img, case = _phantom(11)
    x = img.copy()
    x[case.masks["right lung"] & ~case.masks["heart"]] = 0.85  # a white-out right hemithorax
    cv2.line(x, (128, 0), (120, 150), 1.0, 3)  # a tube down the mediastinum
    ink = np.zeros(x.shape, np.uint8)  # OpenCV draws text on 8-bit images only
    cv2.putText(ink, "AP", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2)
    x = np.maximum(x, ink / 255.0).astype(np.float32)  # a burned-in marker
    seg = segment_unet(x)
    assert _dice(seg.masks["left lung"], case.masks["left lung"]) > 0.8
    assert seg.masks["right lung"].sum() > 0.3 * case.masks["right lung"].sum()
