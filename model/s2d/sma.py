"""Shallow-to-Deep Memory Adapter (SMA, arXiv 2511.11066).

Nmem learnable memory queries Q_mem (shared by the three variants unless the `no-shared-memory` ablation) read a
sequence of keys by multi-head cross-attention, then a 3-layer MLP maps each memory slot to the decoder width:
Nmem soft tokens that are prepended to the prompt. SMA_v reads image patch tokens (plus ASaRG's region and
feature tokens), SMA_t the reference report, SMA_p the key phrases. The cross-attention weights are returned
because grounding maps generated tokens back to image keys through them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.s2d.config import SMAConfig


@dataclass
class SMAOutput:
    tokens: torch.Tensor  # [B, M, D_dec] soft tokens for the decoder
    attention: torch.Tensor  # [B, heads, M, N_keys] cross-attention weights (rows sum to 1 over valid keys)


def mlp(d_in: int, d_hidden: int, d_out: int, layers: int) -> nn.Sequential:
    dims = [d_in] + [d_hidden] * (layers - 1) + [d_out]
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < layers - 1:
            mods.append(nn.GELU())
    return nn.Sequential(*mods)


class CrossAttention(nn.Module):
    """Multi-head attention of memory queries over keys; weights are returned, not discarded."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.o = nn.Linear(width, width)

    def logits(self, q: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # q [B, M, W], x [B, N, W] -> logits [B, h, M, N], values [B, h, N, W/h]
        B, M, W = q.shape
        N = x.shape[1]
        dh = W // self.heads
        qh = self.q(q).view(B, M, self.heads, dh).transpose(1, 2)
        kh = self.k(x).view(B, N, self.heads, dh).transpose(1, 2)
        vh = self.v(x).view(B, N, self.heads, dh).transpose(1, 2)
        return qh @ kh.transpose(-1, -2) / math.sqrt(dh), vh

    def combine(self, weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        # weights [B, h, M, N] @ values [B, h, N, dh] -> [B, M, W]
        B, h, M, _ = weights.shape
        return self.o((weights @ values).transpose(1, 2).reshape(B, M, -1))


def masked_softmax(logits: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis. key_mask [B, N]: bool (True = keep) removes keys exactly; float weights in
    [0, 1] scale each key's share (log-weight added to its logit) so that attributions can differentiate through
    key presence. A row with no valid key gets all zeros."""
    if key_mask is not None:
        if key_mask.dtype == torch.bool:
            logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        else:
            logits = logits + torch.log(key_mask.clamp(min=1e-12))[:, None, None, :]
    return torch.nan_to_num(F.softmax(logits, dim=-1), nan=0.0)


class SMA(nn.Module):
    """One SMA variant: input projection -> cross-attention with the memory queries -> MLP to decoder width."""

    def __init__(self, cfg: SMAConfig, d_in: int, d_out: int):
        super().__init__()
        self.in_proj = nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, cfg.width))
        self.q_norm = nn.LayerNorm(cfg.width)
        self.attn = CrossAttention(cfg.width, cfg.heads)
        self.mlp = mlp(cfg.width, cfg.mlp_hidden, d_out, cfg.mlp_layers)

    def weights(self, memory: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.q_norm(memory).unsqueeze(0).expand(keys.shape[0], -1, -1)  # [B, M, W]
        logits, values = self.attn.logits(q, keys)
        return masked_softmax(logits, key_mask), values

    def project(self, memory: torch.Tensor, weights: torch.Tensor, values: torch.Tensor) -> SMAOutput:
        # the memory itself is a residual: a slot that reads nothing still carries what it learnt
        hidden = memory.unsqueeze(0) + self.attn.combine(weights, values)  # [B, M, W]
        return SMAOutput(tokens=self.mlp(hidden), attention=weights)

    def forward(self, memory: torch.Tensor, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> SMAOutput:
        # memory [M, W], x [B, N, d_in], key_mask [B, N] -> tokens [B, M, d_out]
        w, v = self.weights(memory, self.in_proj(x), key_mask)
        return self.project(memory, w, v)


class SMAVision(SMA):
    """SMA_v: adds ASaRG's extra keys (region + feature tokens, already at memory width) behind a gate.

    The weights are a mix (1 - t) * softmax(patch keys) + t * softmax(all keys), t = tanh(gate), gate
    initialised to 0: untrained fusion is exactly the patch-only adapter, and the mix stays a distribution.
    """

    def forward(self, memory: torch.Tensor, x: torch.Tensor, key_mask: torch.Tensor | None = None,
                extra: torch.Tensor | None = None, gate: torch.Tensor | None = None) -> SMAOutput:
        # x [B, Np, d_in] patches; extra [B, Ne, W]; key_mask [B, Np + Ne]
        keys = self.in_proj(x)
        if extra is None:
            w, v = self.weights(memory, keys, key_mask)
            return self.project(memory, w, v)
        n_patch = keys.shape[1]
        keys = torch.cat([keys, extra], dim=1)  # [B, Np + Ne, W]
        q = self.q_norm(memory).unsqueeze(0).expand(keys.shape[0], -1, -1)
        logits, values = self.attn.logits(q, keys)
        patch_mask = None if key_mask is None else key_mask[:, :n_patch]
        w_patch = F.pad(masked_softmax(logits[..., :n_patch], patch_mask), (0, extra.shape[1]))
        w_all = masked_softmax(logits, key_mask)
        t = torch.tanh(gate)
        return self.project(memory, (1 - t) * w_patch + t * w_all, values)


class MLPProjector(nn.Module):
    """`mlp-projector` ablation (LLaVA-1.5 style): every key becomes its own soft token; no memory queries.

    The returned `attention` is the identity, so grounding reads soft token i as key i."""

    def __init__(self, cfg: SMAConfig, d_in: int, d_out: int):
        super().__init__()
        self.in_proj = nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, cfg.width))
        self.mlp = mlp(cfg.width, cfg.mlp_hidden, d_out, 2)

    def forward(self, memory: torch.Tensor | None, x: torch.Tensor, key_mask: torch.Tensor | None = None,
                extra: torch.Tensor | None = None, gate: torch.Tensor | None = None) -> SMAOutput:
        keys = self.in_proj(x)
        if extra is not None:
            keys = torch.cat([keys, torch.tanh(gate) * extra], dim=1)
        if key_mask is not None:
            keys = keys * key_mask[..., None].to(keys.dtype)
        B, N, _ = keys.shape
        eye = torch.eye(N, device=keys.device, dtype=keys.dtype)
        return SMAOutput(tokens=self.mlp(keys), attention=eye.expand(B, 1, N, N))
