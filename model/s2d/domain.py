"""The domain gate: what films a report model was trained on, and whether a new film is one of them.

A model directory records its training films as a Gaussian in the vision encoder's feature space (per film: the
mean and the standard deviation of the patch tokens, concatenated): mean, a shrunk covariance and a threshold
on the Mahalanobis distance fitted on its validation films (the 99.5th percentile, so ≈ 99 % of in-domain films
pass). A film farther than the threshold is outside what the model knows: the grounding marks every sentence
`unverified` and the app says the report is not a reading of this film (docs/grounding.md).

    python -m model domain --model DIR --data DATASET        # fit (or refit) the gate of an existing model

Files: DIR/domain.npz (mean, covariance) and DIR/domain.json (threshold, what it was fitted on). A fine-tuned
model's gate pools its parent's Gaussian with the films it was fine-tuned on (`merge`).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from model.atomic import atomic_path, atomic_write_json

QUANTILE = 0.995  # share of in-domain validation films inside the gate (0.99 left 97.7 % of test phantoms inside)
SHRINK = 0.1  # covariance shrinkage towards its mean eigenvalue: a few thousand films, hundreds of dimensions


@dataclass
class DomainVerdict:
    score: float  # Mahalanobis distance of the film's features from the training films' mean
    limit: float  # the gate's threshold
    inside: bool

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def film_features(generator, images: list[np.ndarray], batch: int = 32) -> np.ndarray:
    """[N, 2·D]: mean and standard deviation of each film's patch tokens from the report model's vision encoder."""
    from model.s2d.data import pixel_tensor, prepare_image

    v = generator.cfg.vision
    out = []
    for i in range(0, len(images), batch):
        px = pixel_tensor(np.stack([prepare_image(im, v.image_size) for im in images[i:i + batch]]),
                          v.image_mean, v.image_std, v.num_channels)
        dev = next(generator.model.parameters()).device
        tokens = generator.model.vision(pixel_values=px.to(dev)).last_hidden_state[:, 1:].float()
        out.append(torch.cat([tokens.mean(1), tokens.std(1)], 1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


class DomainGate:
    def __init__(self, mean: np.ndarray, cov: np.ndarray, limit: float, info: dict | None = None):
        self.mean, self.cov, self.limit, self.info = mean, cov, float(limit), dict(info or {})
        self._precision = np.linalg.inv(cov)

    @classmethod
    def fit(cls, train: np.ndarray, val: np.ndarray, info: dict | None = None) -> "DomainGate":
        if len(train) < 2 or len(val) < 1:
            raise ValueError(f"the domain gate needs training and validation films (got {len(train)} / {len(val)})")
        mean, cov = train.mean(0), shrunk_cov(train)
        gate = cls(mean, cov, 0.0, info)
        gate.limit = float(np.quantile(gate.scores(val), QUANTILE))
        gate.info.update({"n_train": int(len(train)), "n_val": int(len(val)), "quantile": QUANTILE})
        return gate

    def scores(self, feats: np.ndarray) -> np.ndarray:
        d = feats - self.mean
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", d, self._precision, d), 0.0))

    def judge(self, feats: np.ndarray) -> list[DomainVerdict]:
        return [DomainVerdict(round(float(s), 2), round(self.limit, 2), bool(s <= self.limit))
                for s in self.scores(feats)]

    def merge(self, feats: np.ndarray, info: dict | None = None) -> "DomainGate":
        """Pool this Gaussian (its n_train films) with new films; the threshold is kept unless the new films lie
        beyond it, in which case it widens to the 99th percentile of their distances under the pooled Gaussian."""
        n0, n1 = int(self.info.get("n_train", 1)), len(feats)
        if n1 == 0:
            return self
        m1 = feats.mean(0)
        mean = (n0 * self.mean + n1 * m1) / (n0 + n1)
        c1 = np.cov(feats, rowvar=False) if n1 > 1 else np.zeros_like(self.cov)
        cov = (n0 * (self.cov + np.outer(self.mean - mean, self.mean - mean))
               + n1 * (c1 + np.outer(m1 - mean, m1 - mean))) / (n0 + n1)
        merged = DomainGate(mean, cov, self.limit, {**self.info, **(info or {}), "n_train": n0 + n1,
                                                    "merged_from_parent": n0, "merged_new": n1})
        merged.limit = max(self.limit, float(np.quantile(merged.scores(feats), QUANTILE)))
        return merged

    def save(self, model_dir: str) -> None:
        with atomic_path(os.path.join(model_dir, "domain.npz"), ".npz") as tmp:
            np.savez(tmp, mean=self.mean.astype(np.float32), cov=self.cov.astype(np.float32))
        atomic_write_json(os.path.join(model_dir, "domain.json"), {"limit": round(self.limit, 4), **self.info})

    @classmethod
    def load(cls, model_dir: str) -> "DomainGate | None":
        """None when the model directory has no gate (an old model: `python -m model domain` fits one)."""
        npz, meta = os.path.join(model_dir, "domain.npz"), os.path.join(model_dir, "domain.json")
        if not (os.path.isfile(npz) and os.path.isfile(meta)):
            return None
        with open(meta, encoding="utf-8") as fh:
            info = json.load(fh)
        with np.load(npz) as z:
            return cls(z["mean"].astype(np.float64), z["cov"].astype(np.float64), info.pop("limit"), info)


def shrunk_cov(x: np.ndarray) -> np.ndarray:
    c = np.cov(x, rowvar=False)
    target = np.trace(c) / c.shape[0]
    return (1 - SHRINK) * c + SHRINK * target * np.eye(c.shape[0])


def fit_for_model(model_dir: str, data_dir: str, limit: int | None = None, log=print) -> DomainGate:
    """Fit and save the gate of `model_dir` from DATASET's train split (at most `limit` films) and its val split."""
    from model.data import load_r2gen
    from model.s2d.generate import load_generator

    gen = load_generator(model_dir)
    splits = load_r2gen(os.path.join(data_dir, "annotation.json"))
    feats = {}
    for split in ("train", "val"):
        entries = splits.get(split) or []
        if not entries:
            raise ValueError(f"{data_dir} has no '{split}' split: the gate needs both")
        images = [_read(e.image_paths[0]) for e in entries[:limit]]
        feats[split] = film_features(gen, images)
    gate = DomainGate.fit(feats["train"], feats["val"], {
        "feature": "vision encoder patch tokens: mean and std per film", "data": os.path.abspath(data_dir)})
    gate.save(model_dir)
    log(f"{model_dir}: domain gate from {len(feats['train'])} train / {len(feats['val'])} val films, "
        f"limit {gate.limit:.2f}")
    return gate


def _read(path: str) -> np.ndarray:
    from model.imageio import read_radiograph
    return read_radiograph(path)
