"""Per-sentence attribution over the image: `rollout` (attention), `ablation` (captum FeatureAblation), `ig`
(captum LayerIntegratedGradients). Each returns, per sentence index, a non-negative pixel density (H x W) and,
for ablation, the per-region log-likelihood drops.

Keys of SMA_v (what the memory queries attend to) are laid out as [patch tokens (gh*gw, row-major) | region
tokens (one per name in `regions`) | feature tokens], as the generator's `key_layout` (`model.types.KeyLayout`,
or its `to_dict()` form) says. Feature tokens (the segmenter's pooled features and class token) have no place in
the image, so their share of attribution is dropped: heatmaps show only what can be drawn.
"""
from __future__ import annotations

import numpy as np

from model.grounding.regions import spread_tokens
from model.types import KeyLayout


def as_layout(layout: KeyLayout | dict) -> KeyLayout:
    """The generator's key_layout, or its `to_dict()` form."""
    return layout if isinstance(layout, KeyLayout) else KeyLayout.from_dict(layout)


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def key_weights_to_density(key_w: np.ndarray, layout: KeyLayout, masks: dict[str, np.ndarray],
                           shape: tuple[int, int]) -> np.ndarray:
    """[N_keys] non-negative weights -> H x W density (patches onto their cells, region tokens onto their masks)."""
    if key_w.shape[0] != layout.n_keys:
        raise ValueError(f"attribution has {key_w.shape[0]} keys but the key layout describes {layout.n_keys} "
                         f"({layout.n_patches} patches + {len(layout.regions)} regions + "
                         f"{layout.n_feature_tokens} feature tokens)")
    patch = key_w[:layout.n_patches].reshape(layout.grid)
    region = {n: float(w) for n, w in zip(layout.regions,
                                          key_w[layout.n_patches:layout.n_patches + len(layout.regions)])}
    return spread_tokens(patch, region, masks, shape)


def patch_density(patch_weights, layout: KeyLayout, masks: dict[str, np.ndarray], shape: tuple[int, int]
                  ) -> np.ndarray:
    """Per-patch weights [Np] (the gradient methods' output: they reach the patch tokens only) -> pixel density."""
    patch = np.asarray(patch_weights, dtype=np.float64)
    if patch.shape != (layout.n_patches,):
        raise ValueError(f"got {patch.shape[0] if patch.ndim == 1 else patch.shape} patch weights, the layout has "
                         f"{layout.n_patches} patches")
    key_w = np.zeros(layout.n_keys)
    key_w[:layout.n_patches] = patch
    return key_weights_to_density(key_w, layout, masks, shape)


def rollout(mem_attention, cross_attention, key_layout, spans: list[tuple[int, int]], masks: dict[str, np.ndarray],
            shape: tuple[int, int], contrast: bool = True, region_tokens: bool = False) -> dict[int, np.ndarray]:
    """Attention rollout through the memory bottleneck, one pass, no gradients.

    mem_attention [T, Nmem]: each (generated or teacher-forced) token's relevance over the Nmem memory soft
    tokens, already rolled out through the decoder layers by the generator (`MemoryRollout`, docs/model.md);
    cross_attention [Nmem, N_keys]: SMA_v's memory-query attention over its keys, averaged over heads. For
    sentence tokens [a, b):
    w = mean_t mem_attention[t] renormalised to sum 1 -> [Nmem]; key weights k = w @ cross_attention -> [N_keys].

    `contrast` (default): k minus the same weights for the whole report (all spans' tokens), clipped at 0: what
    this sentence reads more than the report as a whole does. Every sentence leans on the same few memory slots
    (the report's common ground: the lungs, the heart), which otherwise put every sentence's peak in one place; a
    single-sentence report has nothing to contrast with and keeps k. `region_tokens` (default off): also spread
    region tokens' weights over their masks; off, the heatmap shows patch evidence only, since a region token's
    weight spread evenly over a whole lung blurs where the evidence is. On the validation split, contrasted on
    patches is the best of the rollout forms on top-region overlap and on the pointing game with its customary
    15-pixel tolerance (benchmarks/attribution_variants.py; numbers in docs/grounding.md).
    """
    mem = _np(mem_attention)
    cross = _np(cross_attention)
    layout = as_layout(key_layout)
    if mem.ndim != 2 or cross.ndim != 2 or mem.shape[1] != cross.shape[0]:
        raise ValueError(f"mem_attention {mem.shape} and cross_attention {cross.shape} disagree: expected [T, Nmem] "
                         "and [Nmem, N_keys] with the same Nmem")

    def key_weights(rows: np.ndarray) -> np.ndarray:
        w = rows.mean(axis=0)
        w = w / w.sum() if w.sum() > 0 else np.full_like(w, 1.0 / w.size)
        return w @ cross

    for i, (a, b) in enumerate(spans):
        if not 0 <= a < b <= mem.shape[0]:
            raise ValueError(f"sentence {i} token span {(a, b)} lies outside the {mem.shape[0]} attention rows")
    report = key_weights(np.concatenate([mem[a:b] for a, b in spans])) if contrast and spans else None
    out = {}
    for i, (a, b) in enumerate(spans):
        k = key_weights(mem[a:b])
        if report is not None and np.clip(k - report, 0, None).sum() > 1e-12:
            k = k - report
        k = np.clip(k, 0, None)
        if not region_tokens:
            k[layout.n_patches:] = 0.0
        out[i] = key_weights_to_density(k, layout, masks, shape)
    return out


def region_key_masks(layout: KeyLayout, masks: dict[str, np.ndarray], regions: list[str],
                     min_cover: float = 0.5) -> np.ndarray:
    """[R, N_keys] bool: which keys removing region r removes — the patch tokens at least `min_cover` inside its
    mask (at least the single most-covered patch, so small regions still remove something) and its own region
    token when the model has one."""
    gh, gw = layout.grid
    out = np.zeros((len(regions), layout.n_keys), dtype=bool)
    for j, name in enumerate(regions):
        mask = np.asarray(masks[name], dtype=bool)
        h, w = mask.shape
        rows = np.minimum((np.arange(h) * gh) // h, gh - 1)
        cols = np.minimum((np.arange(w) * gw) // w, gw - 1)
        cell = rows[:, None] * gw + cols[None, :]
        inside = np.bincount(cell[mask], minlength=gh * gw)
        total = np.bincount(cell.ravel(), minlength=gh * gw)
        cover = inside / np.maximum(total, 1)
        chosen = cover >= min_cover
        if not chosen.any() and cover.max() > 0:
            chosen[np.argmax(cover)] = True
        out[j, :gh * gw] = chosen
        if name in layout.regions:
            out[j, gh * gw + layout.regions.index(name)] = True
    return out


def ablation(score_fn, layout, masks: dict[str, np.ndarray], regions: list[str]) -> np.ndarray:
    """Causal attribution: drop in each sentence's teacher-forced log-likelihood when a region is removed.

    score_fn(key_mask: bool [N_keys] or None) -> per-sentence log-likelihoods [S] (the generator's
    score_sentences with image, masks and text bound). captum's FeatureAblation drives it: the input is a [1, R]
    "region present" vector of ones, the baseline 0, the feature mask one group per region; the forward maps the
    vector to the key mask (a key is removed when any absent region covers it). With an output of fixed size S,
    captum returns attributions [S, R] = f(all present) - f(region r removed): the drop. R + 1 scorer calls.
    """
    import torch
    from captum.attr import FeatureAblation

    layout = as_layout(layout)
    remove = torch.from_numpy(region_key_masks(layout, masks, regions))  # [R, N_keys]

    def forward(present):  # present: [1, R] float
        absent = present[0] < 0.5
        keep = ~(remove[absent].any(dim=0)) if absent.any() else None
        return torch.as_tensor(np.asarray(score_fn(None if keep is None else keep.numpy()), dtype=np.float64))

    present = torch.ones(1, len(regions), dtype=torch.float64)
    attr = FeatureAblation(forward).attribute(present, baselines=0.0,
                                              feature_mask=torch.arange(len(regions)).unsqueeze(0))
    return attr.reshape(-1, len(regions)).numpy()  # [S, R]


def ablation_density(drops: np.ndarray, regions: list[str], masks: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Each region's positive drop spread evenly over its mask (overlapping regions add up)."""
    out = {}
    for i, row in enumerate(drops):
        shape = next(iter(masks.values())).shape
        d = np.zeros(shape, dtype=np.float64)
        for name, v in zip(regions, row):
            m = masks[name]
            if v > 0 and m.any():
                d[m] += v / m.sum()
        out[i] = d
    return out


def ablation_scores(drops_row: np.ndarray, regions: list[str]) -> dict[str, float]:
    """Drops -> [0, 1] on the heatmap scores' scale: 0.5 = no effect, 1 = the sentence's largest drop."""
    top = float(np.abs(drops_row).max()) if drops_row.size else 0.0
    if top <= 0:
        return {n: 0.5 for n in regions}
    return {n: float(0.5 + 0.5 * v / top) for n, v in zip(regions, drops_row)}


def integrated_gradients(generator, image: np.ndarray, segmentation, report_text: str, key_layout, n_steps: int,
                         shape: tuple[int, int], sentence_indices=None) -> dict[int, np.ndarray]:
    """The slow reference: captum LayerIntegratedGradients on the vision encoder's patch embeddings, per sentence
    (its teacher-forced log-likelihood as the target), from a featureless baseline image (all zeros after
    normalisation: the mean grey). Attribution [1, Np, D] is summed over D; the positive part is the patch
    evidence, spread onto the image. n_steps forward+backward passes per sentence; `sentence_indices` limits the
    work to some sentences (default: all)."""
    import torch
    from captum.attr import LayerIntegratedGradients

    layout = as_layout(key_layout)
    forward, px, sentences = generator.sentence_loglik_fn(image, segmentation.masks, report_text)
    layer = generator.patch_embedding
    lig = LayerIntegratedGradients(forward, layer)
    masks = segmentation.masks
    out = {}
    for i in (range(len(sentences)) if sentence_indices is None else sentence_indices):
        attr = lig.attribute(px, baselines=torch.zeros_like(px), target=i, n_steps=n_steps,
                             internal_batch_size=n_steps)  # [1, Np, D]
        patch = attr[0].sum(-1).detach().double().numpy()  # [Np]
        out[i] = patch_density(np.clip(patch, 0, None), layout, masks, shape)
    return out


def saliency(generator, image: np.ndarray, segmentation, report_text: str, key_layout, shape: tuple[int, int],
             sentence_indices=None) -> dict[int, np.ndarray]:
    """Gradient saliency: the norm, over the embedding width, of the gradient of each sentence's teacher-forced
    log-likelihood with respect to the vision encoder's patch embeddings -> [Np] per sentence, spread onto the
    image. One forward pass for the whole report and one backward pass per sentence (IG needs `n_steps` of both
    per sentence). The norm, not gradient x input: which patches the sentence is sensitive to, in either
    direction (the norm points better than the positive part of gradient x input on the validation split:
    benchmarks/attribution_variants.py, numbers in docs/grounding.md)."""
    import torch

    layout = as_layout(key_layout)
    forward, px, sentences = generator.sentence_loglik_fn(image, segmentation.masks, report_text)
    layer = generator.patch_embedding
    seen = {}
    hook = layer.register_forward_hook(lambda module, args, output: seen.__setitem__("patches", output))
    try:
        with torch.enable_grad():
            px = px.detach().requires_grad_(True)  # the encoder is frozen: the graph must start somewhere
            loglik = forward(px)  # [1, S]
    finally:
        hook.remove()
    patches = seen["patches"]  # [1, Np, D]
    if patches.shape[1] != layout.n_patches:
        raise ValueError(f"the vision encoder gave {patches.shape[1]} patches, the layout has {layout.n_patches}")
    todo = list(range(len(sentences)) if sentence_indices is None else sentence_indices)
    out = {}
    for n, i in enumerate(todo):
        grad, = torch.autograd.grad(loglik[0, i], patches, retain_graph=n + 1 < len(todo))
        out[i] = patch_density(grad[0].norm(dim=-1).detach().double().numpy(), layout, segmentation.masks, shape)
    return out


def fast_integrated_gradients(generator, image: np.ndarray, segmentation, report_text: str, key_layout,
                              shape: tuple[int, int], n_steps: int = 2, sentence_indices=None
                              ) -> dict[int, np.ndarray]:
    """Integrated gradients with few Gauss-Legendre steps, every sentence in one batched pass (`ig-fast`).

    The same attribution as `integrated_gradients` with `n_steps` (captum's LayerIntegratedGradients,
    Gauss-Legendre, on the patch embeddings: interpolate the layer's output between the baseline image's and this
    image's, a = a0 + alpha (a1 - a0); attribution = (a1 - a0) * sum_k w_k grad(alpha_k), summed over the width,
    positive part), computed without captum's per-sentence loop: one forward pass over the `n_steps`
    interpolated inputs, then one vectorised backward pass (`is_grads_batched`) that gives every sentence's
    gradient at every step at once. Two steps pointed as well as sixteen on the validation split
    (docs/grounding.md); a test checks the numbers against captum's."""
    import torch

    layout = as_layout(key_layout)
    forward, px, sentences = generator.sentence_loglik_fn(image, segmentation.masks, report_text)
    todo = list(range(len(sentences)) if sentence_indices is None else sentence_indices)
    if not todo:
        return {}
    layer = generator.patch_embedding
    with torch.no_grad():
        a = layer(torch.cat([px, torch.zeros_like(px)]))  # the layer's output for this image and the baseline
    a1, a0 = a[:1], a[1:]  # [1, Np, D]
    if a1.shape[1] != layout.n_patches:
        raise ValueError(f"the vision encoder gave {a1.shape[1]} patches, the layout has {layout.n_patches}")
    x, w = np.polynomial.legendre.leggauss(n_steps)
    alphas = torch.tensor((x + 1) / 2, dtype=a1.dtype)
    weights = torch.tensor(w / 2, dtype=torch.float64)
    interp = (a0 + alphas[:, None, None] * (a1 - a0)).requires_grad_(True)  # [n_steps, Np, D]
    hook = layer.register_forward_hook(lambda module, args, output: interp)
    try:
        with torch.enable_grad():
            loglik = forward(px.expand(n_steps, *px.shape[1:]))[:, todo]  # [n_steps, J]
            # one vectorised backward per sentence: grad_outputs[j] picks sentence j in every step row,
            # weighted by the step's quadrature weight
            picks = torch.zeros(len(todo), n_steps, len(todo), dtype=loglik.dtype)
            for j in range(len(todo)):
                picks[j, :, j] = weights
            g, = torch.autograd.grad(loglik, interp, grad_outputs=picks, is_grads_batched=True)
    finally:
        hook.remove()
    grads = g.sum(1)  # [J, Np, D]: summed over the steps
    out = {}
    for j, i in enumerate(todo):
        patch = ((a1[0] - a0[0]) * grads[j]).sum(-1).double().numpy()  # [Np]
        out[i] = patch_density(np.clip(patch, 0, None), layout, segmentation.masks, shape)
    return out
