"""Train the learned lung/heart segmenter on phantoms and real films together (MONAI UNet, multi-label).

    python -m model.segmentation.train --out DIR [--minutes 35] [--phantoms 700] [--real ../shared/.../covid-lungs]

- Phantoms give every class (lungs in the CXAS anatomical convention, heart); real films give lungs only, so the
  loss (sigmoid Dice + BCE) is masked per class and per image: a real film's missing heart label costs nothing.
- Real films: the covid-lungs *train* split minus its no-derivatives images, divided by patient into a fit part
  and a select part; the select part (and held-out phantoms) choose the checkpoint and the thresholds. The val split
  is never read here (`benchmarks/eval_segmentation.py --real` scores it once).
- Augmentations for what real films do (augment.py): affine (AP/PA magnification, supine, rotation), exposure and
  gamma, collimation, markers, tubes and wires, 8/16-bit quantisation, blur and noise.
- Resumable: `DIR/checkpoint.pt` is written every `--eval-every` steps; rerunning continues from it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

from model.atomic import atomic_path
from model.segmentation.realfilms import DEFAULT_ROOT, TRAINABLE_LICENCES, patient_holdout, read_films
from model.segmentation.unet import (CLASSES, SegNetConfig, build_net, dice_per_class, postprocess, prepare,
                                     resize_mask, save)


def load_real(films, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs = np.zeros((len(films), size, size), np.float32)
    ys = np.zeros((len(films), len(CLASSES), size, size), np.uint8)
    labelled = np.zeros((len(films), len(CLASSES)), np.float32)
    for i, f in enumerate(films):
        img, right, left = f.load()
        xs[i] = prepare(img, size)
        ys[i, CLASSES.index("right lung")] = resize_mask(right, size)
        ys[i, CLASSES.index("left lung")] = resize_mask(left, size)
        labelled[i, [CLASSES.index("right lung"), CLASSES.index("left lung")]] = 1
    return xs, ys, labelled


def load_phantoms(seeds, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from model.phantom import generate_case
    xs = np.zeros((len(seeds), size, size), np.float32)
    ys = np.zeros((len(seeds), len(CLASSES), size, size), np.uint8)
    for i, seed in enumerate(seeds):
        case = generate_case(int(seed), size=256)
        xs[i] = prepare(case.image.astype(np.float32) / 255.0, size)
        for k, name in enumerate(CLASSES):
            ys[i, k] = resize_mask(case.masks[name], size)
    return xs, ys, np.ones((len(seeds), len(CLASSES)), np.float32)


def masked_loss(logits: torch.Tensor, y: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Sigmoid Dice + BCE per image and class, averaged over the (image, class) pairs that have a label."""
    from monai.losses import DiceLoss
    dice = DiceLoss(sigmoid=True, reduction="none", smooth_nr=1.0, smooth_dr=1.0)(logits, y)  # [B, K, 1, 1]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").mean((2, 3))
    per = dice.flatten(1) + bce  # [B, K]
    return (per * labelled).sum() / labelled.sum().clamp(min=1)


@torch.no_grad()
def score(net, xs: np.ndarray, ys: np.ndarray, labelled: np.ndarray, thresholds=None, batch: int = 16) -> np.ndarray:
    """Dice [N, K] after post-processing (NaN where a class has no label)."""
    net.eval()
    out = np.full((len(xs), len(CLASSES)), np.nan)
    for i in range(0, len(xs), batch):
        probs = torch.sigmoid(net(torch.from_numpy(xs[i:i + batch])[:, None])).numpy()
        for j, p in enumerate(probs):
            masks = postprocess(p, thresholds)
            truth = {n: ys[i + j, k].astype(bool) for k, n in enumerate(CLASSES)}
            d = dice_per_class(masks, truth)
            out[i + j] = [d[n] if labelled[i + j, k] else np.nan for k, n in enumerate(CLASSES)]
    net.train()
    return out


def choose_thresholds(net, xs, ys, labelled, grid=(0.3, 0.4, 0.5, 0.6, 0.7)) -> dict:
    """Per class, the probability threshold with the best mean Dice on the select split (one class at a time)."""
    best = {n: 0.5 for n in CLASSES}
    for k, name in enumerate(CLASSES):
        scores = {}
        for t in grid:
            d = score(net, xs, ys, labelled, {**best, name: t})[:, k]
            scores[t] = float(np.nanmean(d))
        best[name] = max(scores, key=scores.get)
    return best


def frontal_floor(net, xs: np.ndarray, thresholds: dict) -> dict:
    """The frontal-film rule's limits (unet.FRONTAL_FLOOR) from real training films, all frontal: just under the
    least confident one, and the 5th percentile of the mediastinum's contrast (opacified lungs lower it)."""
    from model.segmentation.unet import _predict, confidence, mediastinum_contrast
    conf, contrast = [], []
    for x in xs:
        p = _predict(net, x[None])[0]
        m = postprocess(p, thresholds)
        conf.append(confidence(p, m))
        contrast.append(mediastinum_contrast(x, m))
    return {"confidence": round(float(min(conf)) - 0.005, 3),
            "mediastinum_contrast": round(float(np.percentile(contrast, 5)), 2), "films": len(xs)}


def refit_floor(weights: str, real_root: str = DEFAULT_ROOT, size: int = 256) -> dict:
    """Recompute `frontal_floor` of existing weights on the real train films (as training does at its end)."""
    from model.segmentation.unet import _CACHE, load
    net = load(weights)
    films = [f for f in read_films(real_root, "train") if f.licence in TRAINABLE_LICENCES]
    xs, _, _ = load_real(films, size)
    meta = {**net.meta, "frontal_floor": frontal_floor(net, xs, net.meta.get("thresholds", {}))}
    save(net, weights, meta, cfg=net.cfg)
    _CACHE.pop(weights, None)
    return meta["frontal_floor"]


def _batches(n_real: int, n_ph: int, batch: int, real_share: float, gen: np.random.Generator):
    k = int(round(batch * real_share))
    while True:
        yield gen.integers(0, n_real, k), gen.integers(0, n_ph, batch - k)


def _checkpoint(net, opt, state: dict, best_sd, loss: float, real_sel, ph_sel, t_start: float, ckpt: str, log):
    """Score the select films and phantoms, keep the best weights so far and write the resumable checkpoint."""
    real, ph = score(net, *real_sel), score(net, *ph_sel)
    lung_real = float(np.nanmean(real[:, :2]))
    entry = {"step": state["step"], "loss": round(loss, 4), "real_select_lung_dice": round(lung_real, 4),
             "phantom_select_dice": {n: round(float(np.nanmean(ph[:, k])), 4) for k, n in enumerate(CLASSES)},
             "seconds": round(time.time() - t_start)}
    state["history"].append(entry)
    log(json.dumps(entry))
    # the checkpoint that best segments real lungs without losing the phantom heart
    key = lung_real + 0.25 * float(np.nanmean(ph[:, CLASSES.index("heart")]))
    if key > state["best"]:
        state["best"] = key
        best_sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    state["elapsed"] = time.time() - t_start
    with atomic_path(ckpt) as tmp:
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "state": state, "best_sd": best_sd}, tmp)
    return best_sd


def _data(real_root: str, n_phantoms: int, size: int, log):
    """Real fit / select films (no-derivatives films left out) and training / select phantoms, as arrays."""
    t0 = time.time()
    films = [f for f in read_films(real_root, "train") if f.licence in TRAINABLE_LICENCES]
    fit, select = patient_holdout(films)
    real, real_sel = load_real(fit, size), load_real(select, size)
    ph = load_phantoms(range(100_000, 100_000 + n_phantoms), size)
    ph_sel = load_phantoms(range(200_000, 200_080), size)
    log(f"data: {len(fit)} real fit / {len(select)} real select films, {len(ph[0])} / {len(ph_sel[0])} phantoms "
        f"({time.time() - t0:.0f}s)")
    return fit, select, real, real_sel, ph, ph_sel


def train(out: str, minutes: float = 35.0, n_phantoms: int = 700, real_root: str = DEFAULT_ROOT, size: int = 256,
          batch: int = 12, lr: float = 2e-3, real_share: float = 0.6, eval_every: int = 150, seed: int = 0,
          threads: int = 2, max_steps: int | None = None, log=print) -> dict:
    from model.segmentation.augment import build_augment
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    os.makedirs(out, exist_ok=True)
    fit, select, real, real_sel, ph, ph_sel = _data(real_root, n_phantoms, size, log)
    (xr, yr, lr_), (xrs, yrs, lrs), (xp, yp, lp), (xps, yps, lps) = real, real_sel, ph, ph_sel
    cfg = SegNetConfig(size=size)
    net = build_net(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    budget_s = minutes * 60
    ckpt = os.path.join(out, "checkpoint.pt")
    state = {"step": 0, "elapsed": 0.0, "best": -1.0, "history": []}
    best_sd = None
    if os.path.isfile(ckpt):
        blob = torch.load(ckpt, map_location="cpu", weights_only=False)
        net.load_state_dict(blob["net"]), opt.load_state_dict(blob["opt"])
        state, best_sd = blob["state"], blob["best_sd"]
        log(f"resumed at step {state['step']} ({state['elapsed']:.0f}s of {budget_s:.0f}s spent)")
    augment = build_augment(seed + state["step"])
    gen = np.random.default_rng(seed + state["step"])
    batches = _batches(len(xr), len(xp), batch, real_share, gen)
    t_start = time.time() - state["elapsed"]
    net.train()
    while time.time() - t_start < budget_s and (max_steps is None or state["step"] < max_steps):
        ri, pi = next(batches)
        items = [augment({"image": xr[i][None], "label": yr[i].astype(np.float32)}) for i in ri]
        items += [augment({"image": xp[i][None], "label": yp[i].astype(np.float32)}) for i in pi]
        x = torch.stack([torch.as_tensor(np.asarray(d["image"])) for d in items]).float()
        y = torch.stack([torch.as_tensor(np.asarray(d["label"])) for d in items]).float().round()
        lab = torch.from_numpy(np.concatenate([lr_[ri], lp[pi]]))
        # cosine decay over the time budget (steps are not known in advance on a shared machine)
        frac = min(1.0, (time.time() - t_start) / budget_s)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (state["step"] + 1) / 50) * 0.5 * (1 + math.cos(math.pi * frac))
        loss = masked_loss(net(x), y, lab)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        if state["step"] % eval_every == 0:
            best_sd = _checkpoint(net, opt, state, best_sd, loss.item(), real_sel, ph_sel, t_start, ckpt, log)
    if best_sd is not None:
        net.load_state_dict(best_sd)
    net.eval()
    thresholds = choose_thresholds(net, np.concatenate([xrs, xps]), np.concatenate([yrs, yps]),
                                   np.concatenate([lrs, lps]))
    real = score(net, xrs, yrs, lrs, thresholds)
    ph = score(net, xps, yps, lps, thresholds)
    meta = {"thresholds": thresholds, "steps": state["step"], "minutes": round((time.time() - t_start) / 60, 1),
            "real_fit_films": len(fit), "real_select_films": len(select), "phantoms": n_phantoms,
            "real_licences": list(TRAINABLE_LICENCES),
            "select_real_lung_dice_mean": round(float(np.nanmean(real[:, :2])), 4),
            "select_phantom_dice": {n: round(float(np.nanmean(ph[:, k])), 4) for k, n in enumerate(CLASSES)}}
    meta["frontal_floor"] = frontal_floor(net, np.concatenate([xr, xrs]), thresholds)
    save(net, os.path.join(out, "unet.pt"), meta)
    with open(os.path.join(out, "train_log.json"), "w", encoding="utf-8") as fh:
        json.dump({**meta, "history": state["history"]}, fh, indent=1)
    log(f"wrote {os.path.join(out, 'unet.pt')}: {json.dumps(meta)}")
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.segmentation.train", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=35.0, help="wall-clock training budget")
    ap.add_argument("--phantoms", type=int, default=700)
    ap.add_argument("--real", default=DEFAULT_ROOT, help="the covid-lungs folder (films.csv)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--max-steps", type=int)
    args = ap.parse_args(argv)
    try:
        train(args.out, minutes=args.minutes, n_phantoms=args.phantoms, real_root=args.real, size=args.size,
              batch=args.batch, lr=args.lr, threads=args.threads, eval_every=args.eval_every,
              max_steps=args.max_steps)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
