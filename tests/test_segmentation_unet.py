"""The UNet backend: shapes, a training step that learns, save/load round trip, missing weights, the CLI's data
check. Tiny sizes only (the real training run is documented in docs/segmentation.md)."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # CI has 2 shared cores: one thread avoids OpenMP spin-waiting

from model.segmentation import FEATURE_CHANNELS, SegmentationError  # noqa: E402
from model.segmentation.unet import (UNet, UNetConfig, augment, load, loss_fn, main, save,  # noqa: E402
                                     segment_unet)


def test_forward_shapes_and_feature_channels_match_the_public_constant():
    cfg = UNetConfig()
    net = UNet(cfg)
    logits, feats = net(torch.rand(2, 1, cfg.size, cfg.size))
    assert logits.shape == (2, len(cfg.classes), cfg.size, cfg.size)
    assert feats.shape == (2, cfg.feature_channels, cfg.size // 4, cfg.size // 4)
    assert cfg.feature_channels == FEATURE_CHANNELS["unet"]


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    cfg = UNetConfig(size=16, base=4, classes=("right lung", "left lung"))
    net = UNet(cfg)
    x = torch.zeros(2, 1, 16, 16)
    y = torch.zeros(2, 2, 16, 16)
    x[:, :, 4:12, 2:7], y[:, 0, 4:12, 2:7] = 1.0, 1.0
    x[:, :, 4:12, 9:14], y[:, 1, 4:12, 9:14] = 1.0, 1.0
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    first = None
    for _ in range(20):
        loss = loss_fn(net(x)[0], y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first


def test_augment_keeps_masks_binary_and_aligned_shapes():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 1, 32, 32), (torch.rand(3, 5, 32, 32) > 0.5).float()
    xa, ya = augment(x, y, g)
    assert xa.shape == x.shape and ya.shape == y.shape
    assert set(torch.unique(ya).tolist()) <= {0.0, 1.0} and 0 <= xa.min() and xa.max() <= 1


def test_save_load_round_trip_and_segment(tmp_path):
    cfg = UNetConfig(size=32, base=4)
    net = UNet(cfg)
    with torch.no_grad():  # bias the lung channels on so the untrained net still "finds" two lungs
        for name in ("right lung", "left lung"):
            net.head.bias[cfg.classes.index(name)] = 10.0
    path = str(tmp_path / "unet.pt")
    save(net, path, {"note": "test"})
    loaded = load(path)
    x = torch.rand(1, 1, 32, 32)
    np.testing.assert_allclose(loaded(x)[0].detach().numpy(), net(x)[0].detach().numpy(), atol=0.05)
    seg = segment_unet(np.random.default_rng(0).random((64, 48)).astype(np.float32), path=path)
    assert seg.backend == "unet" and seg.shape == (64, 48) and seg.masks["right lung"].all()
    assert seg.features.shape == (cfg.feature_channels, 32, 32)


def test_missing_weights_is_a_clear_segmentation_error(tmp_path):
    with pytest.raises(SegmentationError, match="no weights"):
        segment_unet(np.zeros((64, 64), np.float32), path=str(tmp_path / "absent.pt"))


def test_training_cli_refuses_a_folder_that_is_not_a_phantom_dataset(tmp_path, capsys):
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--steps", "1"]) == 1
    assert "annotation.json" in capsys.readouterr().err
    (tmp_path / "annotation.json").write_text(json.dumps({"train": [], "val": []}))
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--steps", "1"]) == 1
    assert not os.path.exists(tmp_path / "o" / "unet.pt")


def test_shipped_weights_are_small_and_segment_a_phantom():
    from model.phantom import generate_case
    from model.segmentation.unet import WEIGHTS_PATH, weights_available
    if not weights_available():
        pytest.skip("no UNet weights shipped")
    assert os.path.getsize(WEIGHTS_PATH) < 5_000_000
    case = generate_case(123, size=256)
    seg = segment_unet(case.image.astype(np.float32) / 255.0)
    assert seg.features.shape == (FEATURE_CHANNELS["unet"], 32, 32)
    for name in ("right lung", "left lung", "heart"):
        a, b = seg.masks[name], case.masks[name]
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.8, name
