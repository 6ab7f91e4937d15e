"""Shared helpers for the S2D tests: a micro config (seconds on CPU) and a tokenizer trained on a few reports."""
from __future__ import annotations

import functools

import numpy as np

MICRO = {
    "vision": {"image_size": 32, "patch_size": 8, "hidden": 32, "layers": 1, "heads": 2},
    "text": {"hidden": 32, "layers": 1, "heads": 2, "max_tokens": 48},
    "decoder": {"hidden": 32, "layers": 2, "heads": 2, "intermediate": 64, "vocab_size": 320, "max_positions": 128},
    "sma": {"n_mem": 4, "width": 32, "heads": 2, "mlp_hidden": 32},
    "asarg": {"map_pool": 4},
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    "train": {"batch_size": 4, "max_report_tokens": 48,
              "stages": {0: {"epochs": 1, "lr": 3e-3}, 1: {"epochs": 1, "lr": 3e-3}, 2: {"epochs": 1, "lr": 3e-3},
                         3: {"epochs": 1, "lr": 3e-3}}},
}

REPORTS = [
    "FINDINGS: The heart is normal in size. The lungs are clear. No pleural effusion. IMPRESSION: Normal chest.",
    "FINDINGS: The heart is enlarged. There is a small left pleural effusion. IMPRESSION: Cardiomegaly.",
    "FINDINGS: There is consolidation in the right lung base. No pneumothorax. IMPRESSION: Right basilar opacity.",
    "FINDINGS: Heart size is normal. There is a right pneumothorax. IMPRESSION: Right pneumothorax.",
]


def micro_cfg(**top):
    from model.s2d.config import S2DConfig, _apply, tiny

    cfg: S2DConfig = _apply(tiny(), {**MICRO, **top}, "micro")
    return cfg


@functools.lru_cache(maxsize=1)
def micro_tokenizer():
    from model.s2d.tokenizer import train_tokenizer

    return train_tokenizer(REPORTS * 4, 320)


def micro_model(seed: int = 0, **top):
    import torch

    from model.s2d.modeling import S2DAlign

    torch.manual_seed(seed)
    return S2DAlign(micro_cfg(**top)).eval()


def fake_masks(size: int = 64) -> dict[str, np.ndarray]:
    m = np.zeros((size, size), bool)
    m[8:40, 4:28] = True
    return {"right lung": m, "left lung": m[:, ::-1].copy(), "heart": np.roll(m, 10, axis=1)}
