"""Pointing game of attribution variants on a phantom split (the design choices in docs/grounding.md were made on
the validation split with this script; the benchmark itself is bench_grounding.py).

    python -m model phantom --out /tmp/gr_phantom4k --n 4000 --seed 31
    python benchmarks/attribution_variants.py --data /tmp/gr_phantom4k --split val --n 400 --ig

Variants: the memory relevance either by attention rollout through the decoder layers (the generator's
`MemoryRollout`) or as the mean over layers of each layer's direct attention to the memory (the earlier form);
rollout plain (region tokens drawn, no contrast), contrasted with region tokens, contrasted on patches only (the
`rollout` method); integrated gradients with 2 steps (`ig-fast`, the default); gradient at the patch
embeddings: its norm (`saliency`) and the positive part of gradient x input; with `--ig`, integrated gradients
(16 steps, `ig`) as the reference. Prints one JSON object: per variant, finding sentences, pointing game
(strict, and with the customary 15-pixel tolerance) and top-region overlap.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--model", default=None)
    ap.add_argument("--ig", action="store_true", help="also integrated gradients (16 steps; slow)")
    ap.add_argument("--fast-steps", default="2", help="step counts for the batched IG rows (2 is ig-fast)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from model.grounding import attribution, harness
    from model.grounding.regions import score_regions
    from model.report.sentences import split_sentences
    from model.s2d.generate import load_generator
    from model.segmentation import SegmentationError, segment
    from model.taxonomy import CLASS_INDEX

    gen = load_generator(args.model)
    res: dict[str, tuple[list, list, list]] = {}

    def add(name, heat, mask, masks):
        hits, tol, tops = res.setdefault(name, ([], [], []))
        hits.append(harness.pointing_hit(heat, mask))
        tol.append(harness.pointing_hit(heat, mask, tolerance=15))
        top = score_regions(heat, masks)[0].name
        tops.append(bool(np.logical_and(masks[top], mask).any()))

    def layer_mean(image, seg_masks, report):
        """[T, Nmem]: each layer's direct attention to the memory, heads and layers averaged (earlier default)."""
        ids, text_ids = gen.encode_text(report)
        px, maps = gen.preprocess([image], [seg_masks])
        with torch.no_grad():
            prefix = gen.model.get_image_features(px, maps).tokens
            M = prefix.shape[1]
            embeds = torch.cat([prefix, gen.model.embed_tokens()(torch.tensor([ids]))], dim=1)
            out = gen.model.decoder(inputs_embeds=embeds, output_attentions=True,
                                    attention_mask=torch.ones(1, embeds.shape[1], dtype=torch.long))
        return torch.stack([a[0, :, M:M + len(text_ids), :M] for a in out.attentions]).mean((0, 1)).numpy()

    layer = gen.patch_embedding
    for entry in harness.load_split(args.data, args.split, args.n):
        image, _, fmasks, findings, report = harness.read_case(args.data, entry)
        try:
            seg = segment(image)
        except SegmentationError:
            continue
        masks = {n: v for n, v in seg.masks.items() if n in CLASS_INDEX}
        texts = [s.text for s in split_sentences(report)]
        wanted = {}
        for f in findings:
            m, i = fmasks.get(f.get("id")), harness.finding_sentence(texts, f)
            if m is not None and m.any() and i is not None and f.get("type") != "Support Devices":
                wanted.setdefault(i, m)
        if not wanted:
            continue
        fo = gen.teacher_force(image, seg.masks, report)
        spans = [tuple(s.token_span) for s in fo.sentences]
        mean = layer_mean(image, seg.masks, report)
        for name, mem, kw in (
                ("layer mean: plain", mean, dict(contrast=False, region_tokens=True)),
                ("layer mean: contrasted, region tokens drawn", mean, dict(contrast=True, region_tokens=True)),
                ("layer mean: contrasted, patches only (earlier default)", mean,
                 dict(contrast=True, region_tokens=False)),
                ("rollout: plain", fo.mem_attention, dict(contrast=False, region_tokens=True)),
                ("rollout: contrasted, region tokens drawn", fo.mem_attention, dict(contrast=True, region_tokens=True)),
                ("rollout: contrasted, patches only (the rollout method)", fo.mem_attention,
                 dict(contrast=True, region_tokens=False))):
            dens = attribution.rollout(mem, fo.cross_attention, fo.key_layout, spans, masks, image.shape, **kw)
            for i, m in wanted.items():
                add(name, dens[i], m, masks)
        for steps in (int(x) for x in args.fast_steps.split(",")):
            dens = attribution.fast_integrated_gradients(gen, image, seg, report, fo.key_layout, image.shape,
                                                         n_steps=steps, sentence_indices=list(wanted))
            for i, m in wanted.items():
                add(f"integrated gradients, {steps} steps" + (" (ig-fast, the default)" if steps == 2 else ""),
                    dens[i], m, masks)
        if args.ig:
            dens = attribution.integrated_gradients(gen, image, seg, report, fo.key_layout, 16, image.shape,
                                                    sentence_indices=list(wanted))
            for i, m in wanted.items():
                add("integrated gradients (16 steps)", dens[i], m, masks)
        for i, m in wanted.items():  # gradient variants, one sentence at a time
            forward, px, _ = gen.sentence_loglik_fn(image, seg.masks, report)
            seen = {}
            hook = layer.register_forward_hook(lambda mod, a, out: seen.__setitem__("p", out))
            with torch.enable_grad():
                loglik = forward(px.detach().requires_grad_(True))
            hook.remove()
            grad, = torch.autograd.grad(loglik[0, i], seen["p"])
            lay = gen.key_layout
            for name, vec in (("saliency (gradient norm)", grad[0].norm(dim=-1)),
                              ("gradient x input, positive part", (grad * seen["p"])[0].sum(-1).clamp(min=0))):
                add(name, attribution.patch_density(vec.detach().double().numpy(), lay, masks, image.shape), m, masks)
    print(json.dumps({k: {"finding_sentences": len(h), "pointing_game": round(float(np.mean(h)), 3),
                          "pointing_game_15px": round(float(np.mean(p)), 3),
                          "top_region_overlaps": round(float(np.mean(t)), 3)} for k, (h, p, t) in res.items()},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
