"""Learned backend: a small UNet (pure torch) trained on phantom masks, multi-label (one sigmoid per class).

Train:  python -m model.segmentation.unet --data DIR --out DIR [--steps N]
        (DIR: a phantom dataset from `python -m model phantom --out DIR --n N`; uses its train/val splits)
Weights: assets/segmentation/unet.pt (float16 state dict + config), shipped only if it beats the atlas on
phantoms (docs/segmentation.md). Inference runs at `UNetConfig.size` and upsamples masks to the image.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from model import ASSETS_DIR
from model.atomic import atomic_path
from model.segmentation.derive import DERIVED_REGIONS, derive_regions
from model.segmentation.errors import SegmentationError

WEIGHTS_PATH = os.path.join(ASSETS_DIR, "segmentation", "unet.pt")
MIN_VAL_DICE = 0.5
MEASURE_SIZE = 256
GEOMETRIC = tuple(n for n in DERIVED_REGIONS if "zone" in n or "lobe" in n or n.endswith("lung base"))
# Everything the atlas derives (its union "diaphragm" is rebuilt from the halves) plus structures only a learned
# model can find on a phantom.
UNET_CLASSES: tuple[str, ...] = tuple(n for n in DERIVED_REGIONS if n != "diaphragm") + (
    "aortic arch", "clavicle left", "clavicle right", "thoracic spine")


@dataclass
class UNetConfig:
    size: int = 96  # working resolution (square)
    base: int = 8  # channels at full resolution; doubled at each of the 3 downsamplings
    classes: tuple[str, ...] = field(default=UNET_CLASSES)

    @property
    def feature_channels(self) -> int:
        return 4 * self.base  # the decoder level at size/4 = 32×32 (ASaRG features)


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.GroupNorm(4, c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.GroupNorm(4, c_out), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.net(x)


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        b = cfg.base
        self.cfg = cfg
        self.enc1, self.enc2, self.enc3 = ConvBlock(1, b), ConvBlock(b, 2 * b), ConvBlock(2 * b, 4 * b)
        self.mid = ConvBlock(4 * b, 8 * b)
        self.up3, self.dec3 = nn.ConvTranspose2d(8 * b, 4 * b, 2, stride=2), ConvBlock(8 * b, 4 * b)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * b, 2 * b, 2, stride=2), ConvBlock(4 * b, 2 * b)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * b, b, 2, stride=2), ConvBlock(2 * b, b)
        self.head = nn.Conv2d(b, len(cfg.classes), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, 1, S, S] in [0, 1] -> (logits [B, K, S, S], features [B, 4b, S/4, S/4])."""
        e1 = self.enc1(x)  # [B, b, S, S]
        e2 = self.enc2(F.max_pool2d(e1, 2))  # [B, 2b, S/2, S/2]
        e3 = self.enc3(F.max_pool2d(e2, 2))  # [B, 4b, S/4, S/4]
        m = self.mid(F.max_pool2d(e3, 2))  # [B, 8b, S/8, S/8]
        d3 = self.dec3(torch.cat([self.up3(m), e3], 1))  # [B, 4b, S/4, S/4]
        d2 = self.dec2(torch.cat([self.up2(d3), e2], 1))  # [B, 2b, S/2, S/2]
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))  # [B, b, S, S]
        return self.head(d1), d3


def prepare(image: np.ndarray, size: int) -> np.ndarray:
    """float32 H×W [0, 1] -> [size, size] with the atlas's 1-99 % stretch (the same for training and inference)."""
    from model.segmentation.atlas import _normalise
    return _normalise(image, size)


# ---------------------------------------------------------------------------------------------- inference

_CACHE: dict[str, UNet] = {}


def weights_available(path: str = WEIGHTS_PATH) -> bool:
    return os.path.isfile(path)


def load(path: str = WEIGHTS_PATH) -> UNet:
    if path in _CACHE:
        return _CACHE[path]
    if not os.path.isfile(path):
        raise SegmentationError(f"the 'unet' backend has no weights at {path}; train them with "
                                "`python -m model.segmentation.unet --data DIR --out DIR` or use --backend atlas")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = UNetConfig(size=int(blob["config"]["size"]), base=int(blob["config"]["base"]),
                     classes=tuple(blob["config"]["classes"]))
    net = UNet(cfg)
    net.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    net.meta = dict(blob.get("meta", {}))
    net.eval()
    _CACHE[path] = net
    return net


def segment_unet(image: np.ndarray, path: str = WEIGHTS_PATH):
    """image: float32 H×W in [0, 1] -> Segmentation (backend 'unet')."""
    from model.segmentation.output import build, pool_features, upsample_mask

    net = load(path)
    cfg = net.cfg
    x = prepare(image, cfg.size)
    with torch.inference_mode():
        logits, feats = net(torch.from_numpy(x)[None, None])
    masks = _finish_masks(net, torch.sigmoid(logits[0]).numpy(), x)
    # Measure at MEASURE_SIZE: at the network's 96 px an apical zone is too few pixels for a texture statistic.
    xm = prepare(image, MEASURE_SIZE)
    masks = {k: upsample_mask(v, xm.shape) for k, v in masks.items()}
    return build(xm, masks, image.shape, "unet", pool_features(feats[0].numpy()))


def _finish_masks(net: UNet, probs: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """probs [K, S, S] -> masks: thresholded, cleaned, and each class in the weights' `geometric_classes` (chosen
    on the validation split, see `select_geometry`) replaced by its derivation from the UNet's lung fields."""
    meta = getattr(net, "meta", {})
    val = meta.get("val_dice", {})
    # A class the network never learned (validation Dice below MIN_VAL_DICE) is left out rather than shown.
    masks = {n: probs[i] > 0.5 for i, n in enumerate(net.cfg.classes) if val.get(n, 1.0) >= MIN_VAL_DICE}
    for name in ("right lung", "left lung", "heart"):
        if name not in masks or masks[name].sum() < 0.02 * x.size:
            raise SegmentationError(f"the UNet found no {name}; not a frontal chest radiograph")
    _keep_largest(masks)
    try:
        derived, _ = derive_regions(masks["right lung"], masks["left lung"], image=x, heart=masks["heart"])
    except ValueError as exc:
        raise SegmentationError(f"the UNet's lung fields cannot be divided into regions ({exc})") from None
    for name in meta.get("geometric_classes", GEOMETRIC):
        masks[name] = derived[name]
    for name in DERIVED_REGIONS:  # unlearned classes fall back to geometry
        if name != "diaphragm":
            masks.setdefault(name, derived[name])
    masks["diaphragm"] = masks["right hemidiaphragm"] | masks["left hemidiaphragm"]
    return masks


@torch.no_grad()
def select_geometry(net: UNet, images: np.ndarray, masks: np.ndarray) -> list[str]:
    """Classes whose geometric derivation from the UNet's lungs beats the UNet's own channel on these (validation)
    cases: zones and lobes are definitions relative to the lung fields, and deriving them can be the better way."""
    net.eval()
    direct = {n: [0, 0] for n in DERIVED_REGIONS if n in net.cfg.classes}
    geo = {n: [0, 0] for n in direct}
    meta = getattr(net, "meta", {})
    net.meta = {**meta, "geometric_classes": []}  # score the raw channels
    for i in range(len(images)):
        logits, _ = net(torch.from_numpy(images[i])[None, None])
        probs = torch.sigmoid(logits[0]).numpy()
        try:
            out = _finish_masks(net, probs, images[i])
        except SegmentationError:
            continue
        derived, _ = derive_regions(out["right lung"], out["left lung"], image=images[i], heart=out["heart"])
        for n in direct:
            t = masks[i, net.cfg.classes.index(n)].astype(bool)
            p = probs[net.cfg.classes.index(n)] > 0.5
            direct[n][0] += int((p & t).sum()); direct[n][1] += int(p.sum() + t.sum())
            geo[n][0] += int((derived[n] & t).sum()); geo[n][1] += int(derived[n].sum() + t.sum())
    net.meta = meta
    dice = lambda a: 2 * a[0] / max(a[1], 1)  # noqa: E731
    return [n for n in direct if dice(geo[n]) > dice(direct[n])]


def _keep_largest(masks: dict[str, np.ndarray]) -> None:
    """Lungs and heart are single blobs: drop stray specks a per-pixel classifier leaves."""
    for name in ("right lung", "left lung", "heart"):
        n, labels, stats, _ = cv2.connectedComponentsWithStats(masks[name].astype(np.uint8), connectivity=4)
        if n > 2:
            masks[name] = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


# ---------------------------------------------------------------------------------------------- training

def load_split(root: str, split: str, classes: tuple[str, ...], size: int, limit: int | None = None):
    """(images [N, S, S] float32, masks [N, K, S, S] uint8) from a phantom dataset's split."""
    from model.phantom import load_masks

    ann_path = os.path.join(root, "annotation.json")
    if not os.path.isfile(ann_path):
        raise FileNotFoundError(f"{ann_path} not found: --data must be a dataset from `python -m model phantom`")
    with open(ann_path, encoding="utf-8") as fh:
        entries = json.load(fh).get(split, [])[:limit]
    if not entries:
        raise ValueError(f"split '{split}' of {root} is empty")
    images = np.zeros((len(entries), size, size), np.float32)
    masks = np.zeros((len(entries), len(classes), size, size), np.uint8)
    for i, e in enumerate(entries):
        img = cv2.imread(os.path.join(root, e["image_path"][0]), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"unreadable image {e['image_path'][0]} in {root}")
        images[i] = prepare(img.astype(np.float32) / 255.0, size)
        anatomy, _ = load_masks(os.path.join(root, e["masks"]))
        for k, name in enumerate(classes):
            if name not in anatomy:
                raise ValueError(f"{e['masks_path']} lacks '{name}' ({len(anatomy)} masks present)")
            masks[i, k] = cv2.resize(anatomy[name].astype(np.float32), (size, size),
                                     interpolation=cv2.INTER_AREA) >= 0.5
    return images, masks


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Same small affine for image and masks (never a flip: left and right are labels), then photometric jitter
    on the image only, so the model does not learn the phantom's exact grey levels."""
    b = x.shape[0]
    scale = 1 + (torch.rand(b, generator=gen) - 0.5) * 0.2
    rot = (torch.rand(b, generator=gen) - 0.5) * math.radians(10)
    shift = (torch.rand(b, 2, generator=gen) - 0.5) * 0.12
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = scale * torch.cos(rot), -scale * torch.sin(rot)
    theta[:, 1, 0], theta[:, 1, 1] = scale * torch.sin(rot), scale * torch.cos(rot)
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    y = (F.grid_sample(y, grid, padding_mode="zeros", align_corners=False) > 0.5).float()
    gamma = torch.exp((torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.8)
    x = x.clamp(0, 1) ** gamma
    x = x * (0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=gen)) + 0.1 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    x = x + 0.03 * torch.rand(b, 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    blur = torch.rand(b, generator=gen) < 0.3  # some real films are soft
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0]) / 4
        k2 = (k[:, None] * k[None, :])[None, None]
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), k2)
    return x.clamp(0, 1), y


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice (per class, averaged): Dice keeps small structures (trachea, clavicles) from vanishing."""
    bce = F.binary_cross_entropy_with_logits(logits, y)
    p = torch.sigmoid(logits)
    inter = (p * y).sum((0, 2, 3))
    dice = (2 * inter + 1) / (p.sum((0, 2, 3)) + y.sum((0, 2, 3)) + 1)
    return bce + (1 - dice).mean()


@torch.no_grad()
def evaluate(net: UNet, images: np.ndarray, masks: np.ndarray, batch: int = 32) -> np.ndarray:
    """Mean Dice per class [K] at the working resolution."""
    net.eval()
    inter = np.zeros(masks.shape[1])
    total = np.zeros(masks.shape[1])
    for i in range(0, len(images), batch):
        logits, _ = net(torch.from_numpy(images[i:i + batch])[:, None])
        p = (logits > 0).numpy()
        t = masks[i:i + batch].astype(bool)
        inter += (p & t).sum((0, 2, 3))
        total += p.sum((0, 2, 3)) + t.sum((0, 2, 3))
    net.train()
    return 2 * inter / np.maximum(total, 1)


def save(net: UNet, path: str, extra: dict | None = None) -> None:
    """float16 weights + config, written atomically."""
    blob = {"state_dict": {k: v.half() for k, v in net.state_dict().items()},
            "config": {"size": net.cfg.size, "base": net.cfg.base, "classes": list(net.cfg.classes)},
            "meta": extra or {}}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def train(data: str, out: str, steps: int = 1500, batch: int = 16, lr: float = 3e-3, size: int = 96,
          base: int = 8, limit: int | None = None, seed: int = 0, threads: int = 1, init: str | None = None,
          log=print) -> dict:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    cfg = UNetConfig(size=size, base=base)
    t0 = time.time()
    xs, ys = load_split(data, "train", cfg.classes, size, limit)
    xv, yv = load_split(data, "val", cfg.classes, size, None if limit is None else max(4, limit // 8))
    log(f"loaded {len(xs)} train / {len(xv)} val cases in {time.time() - t0:.0f}s")
    net = UNet(cfg)
    if init:  # continue from earlier weights (same architecture)
        net.load_state_dict({k: v.float() for k, v in load(init).state_dict().items()})
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 20)  # linear warm-up, then cosine decay to zero
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))))
    gen = torch.Generator().manual_seed(seed)
    xs_t, ys_t = torch.from_numpy(xs)[:, None], torch.from_numpy(ys)
    best, best_dice, history = None, -1.0, []
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(xs), (batch,), generator=gen)
        x, y = augment(xs_t[idx], ys_t[idx].float(), gen)
        logits, _ = net(x)
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, steps // 10) == 0 or step == steps:
            d = evaluate(net, xv, yv)
            history.append({"step": step, "loss": round(loss.item(), 4), "val_dice": round(float(d.mean()), 4)})
            log(f"step {step}/{steps} loss {loss.item():.4f} val mean Dice {d.mean():.4f} ({time.time() - t0:.0f}s)")
            if d.mean() > best_dice:
                best_dice = float(d.mean())
                best = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if best is not None:
        net.load_state_dict(best)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "unet.pt")
    d = evaluate(net, xv, yv)
    net.meta = {"val_dice": {n: float(v) for n, v in zip(cfg.classes, d)}}
    geometric = select_geometry(net, xv, yv)
    log(f"derived from the lung fields instead of predicted (better on val): {geometric}")
    meta = {"geometric_classes": geometric, "steps": steps, "init": init, "lr": lr, "train_cases": len(xs),
            "val_mean_dice": round(float(d.mean()), 4), "val_dice": {n: round(float(v), 4) for n, v in zip(cfg.classes, d)}, "seconds": round(time.time() - t0)}
    save(net, path, meta)
    with open(os.path.join(out, "unet_train.json"), "w", encoding="utf-8") as fh:
        json.dump({**meta, "history": history}, fh, indent=1)
    log(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB); val mean Dice {d.mean():.4f}")
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.segmentation.unet", description="train the segmentation UNet")
    ap.add_argument("--data", required=True, help="phantom dataset directory (python -m model phantom --out DIR)")
    ap.add_argument("--out", required=True, help="where unet.pt and unet_train.json go")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--base", type=int, default=8)
    ap.add_argument("--limit", type=int, help="use at most this many training cases")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", help="start from these weights (a unet.pt of the same size/base); with --steps 0 "
                                   "only re-scores them on the validation split and re-saves")
    args = ap.parse_args(argv)
    try:
        train(args.data, args.out, steps=args.steps, batch=args.batch, lr=args.lr, size=args.size, base=args.base,
              limit=args.limit, threads=args.threads, init=args.init)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
