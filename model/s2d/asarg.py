"""ASaRG fusion (arXiv 2507.16623): segmentation maps and the segmenter's features as extra adapter keys.

Each region name in a fixed ordered list (`model.taxonomy.CORE_REGIONS` by default) owns one token: its mask is
adaptive-average-pooled to P x P and a Conv1d (kernel 1, P*P channels -> width) turns it into a token, plus a
learnt embedding of the name. With `region_image` (our addition) the image inside the mask is pooled the same
way and joins the Conv1d input (2*P*P channels), so a region token also says what the region looks like. A missing name is a zero map (its token is then its name embedding only). The
segmenter's intermediate features [C, h, w] are pooled to F x F tokens behind a learnable class token. These
tokens are concatenated with the vision patch tokens as SMA_v's keys/values; `gate` (zero at init) is consumed by
SMAVision so that an untrained fusion changes nothing.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.s2d.config import ASaRGConfig


class ASaRGFusion(nn.Module):
    def __init__(self, cfg: ASaRGConfig, width: int):
        super().__init__()
        self.cfg = cfg
        self.regions = tuple(cfg.regions)
        channels = cfg.map_pool * cfg.map_pool * (2 if cfg.region_image else 1)
        self.region_conv = nn.Conv1d(channels, width, kernel_size=1)
        self.region_embed = nn.Parameter(torch.randn(len(self.regions), width) * 0.02)
        self.class_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.feature_proj = nn.Linear(cfg.feature_channels, width) if cfg.feature_channels else None
        self.gate = nn.Parameter(torch.zeros(()))

    @property
    def n_feature_tokens(self) -> int:
        return 1 + (self.cfg.feature_pool ** 2 if self.feature_proj is not None else 0)

    @property
    def n_tokens(self) -> int:
        return len(self.regions) + self.n_feature_tokens

    def forward(self, seg_maps: torch.Tensor | None, seg_features: torch.Tensor | None, batch: int,
                pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        # seg_maps [B, R, H, W] in [0, 1]; seg_features [B, C, h, w]; pixel_values [B, C_img, S, S]
        # -> tokens [B, R + 1 (+ F*F), width]
        R, P = len(self.regions), self.cfg.map_pool
        if seg_maps is None:
            seg_maps = self.gate.new_zeros(batch, R, P, P)
        if seg_maps.shape[:2] != (batch, R):
            raise ValueError(f"seg_maps has shape {tuple(seg_maps.shape)}: expected {batch} images x {R} regions")
        pooled = F.adaptive_avg_pool2d(seg_maps.float(), P).flatten(2)  # [B, R, P*P]
        if self.cfg.region_image:
            if pixel_values is None:
                raise ValueError("region_image ASaRG tokens need pixel_values")
            img = F.adaptive_avg_pool2d(pixel_values[:, :1].float(), seg_maps.shape[-2:])  # [B, 1, H, W]
            inside = F.adaptive_avg_pool2d(seg_maps.float() * img, P).flatten(2)  # [B, R, P*P]
            pooled = torch.cat([pooled, inside], dim=2)  # [B, R, 2*P*P]
        region_tokens = self.region_conv(pooled.transpose(1, 2)).transpose(1, 2) + self.region_embed  # [B, R, W]
        tokens = [region_tokens, self.class_token.expand(batch, -1, -1)]
        if self.feature_proj is not None:
            C = self.cfg.feature_channels
            if seg_features is None:
                seg_features = self.gate.new_zeros(batch, C, 1, 1)
            if seg_features.shape[:2] != (batch, C):
                raise ValueError(f"seg_features has shape {tuple(seg_features.shape)}: expected {batch} images x "
                                 f"{C} channels")
            feats = F.adaptive_avg_pool2d(seg_features.float(), self.cfg.feature_pool).flatten(2)  # [B, C, F*F]
            tokens.append(self.feature_proj(feats.transpose(1, 2)))
        return torch.cat(tokens, dim=1)


def masks_to_maps(masks: dict[str, np.ndarray] | None, regions: tuple[str, ...], size: int = 32) -> np.ndarray:
    """CXAS name -> bool HxW masks to float32 [R, size, size] area fractions; a missing name is a zero map."""
    import cv2

    out = np.zeros((len(regions), size, size), np.float32)
    if not masks:
        return out
    for i, name in enumerate(regions):
        m = masks.get(name)
        if m is not None:
            out[i] = cv2.resize(np.asarray(m, np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return out
