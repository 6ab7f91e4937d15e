"""Teacher-forced passes of the S2D-ALIGN generator for grounding: the attention a given report's tokens pay to
the memory (for `rollout` on any text, e.g. a reviewer's edit) and a differentiable per-sentence log-likelihood of
the image for integrated gradients. Built on the generator's public pieces (model, tokenizer, input preparation,
sentence token spans) so the generation code stays as the s2d branch wrote it.
"""
from __future__ import annotations

import time

import numpy as np
import torch


def _encode(generator, report_text: str) -> tuple[list[int], list[int]]:
    """-> (ids with <s> ... </s>, text ids)."""
    tok = generator.tok
    text_ids = tok(report_text, add_special_tokens=False)["input_ids"]
    if not text_ids:
        raise ValueError("the report text encodes to no tokens: nothing to ground")
    return [tok.bos_token_id] + text_ids + [tok.eos_token_id], text_ids


def _sentence_matrix(generator, text_ids: list[int], text: str) -> tuple[list, torch.Tensor]:
    """Sentences of the decoded text with token spans, and a [T_text, S] 0/1 membership matrix."""
    sentences = generator._sentences(text_ids, text)
    member = torch.zeros(len(text_ids), len(sentences), dtype=torch.float64)
    for j, s in enumerate(sentences):
        a, b = s.token_span
        member[a:b, j] = 1.0
    return sentences, member


@torch.no_grad()
def teacher_force(generator, image: np.ndarray, masks, report_text: str):
    """One teacher-forced pass over `report_text` -> a GenerationOutput as if the model had written it:
    mem_attention [T_text, Nmem] (the query predicting each text token: its rollout relevance over the memory
    positions, exactly as generation records it), cross_attention [Nmem, N_keys]
    (heads averaged), sentences with token spans, key_layout."""
    from model.s2d.generate import GenerationOutput, MemoryRollout

    t0 = time.perf_counter()
    model = generator.model
    ids, text_ids = _encode(generator, report_text)
    px, maps = generator._inputs([image], None if masks is None else [masks])
    feats = model.get_image_features(px, maps)
    prefix = feats.tokens  # [1, M, D]
    M = prefix.shape[1]
    embeds = torch.cat([prefix, model.embed_tokens()(torch.tensor([ids]))], dim=1)  # [1, M + L, D]
    out = model.decoder(inputs_embeds=embeds, attention_mask=torch.ones(1, embeds.shape[1], dtype=torch.long),
                        output_attentions=True)
    # query at position M + i (token i of ids) predicts ids[i + 1]; text token k is ids[k + 1]
    att = MemoryRollout(M).extend(out.attentions)[0, M:M + len(text_ids)]  # [T, M]
    text = generator.tok.decode(text_ids, skip_special_tokens=True)
    sentences, _ = _sentence_matrix(generator, text_ids, text)
    dt = time.perf_counter() - t0
    return GenerationOutput(report=text, sentences=sentences, token_ids=text_ids,
                            timings={"teacher_force_s": dt, "n_tokens": float(len(text_ids))},
                            mem_attention=att.numpy(), cross_attention=feats.cross_attention[0].mean(0).numpy(),
                            key_layout=feats.key_layout, model_version=generator.model_version)


def sentence_loglik_fn(generator, image: np.ndarray, masks, report_text: str):
    """-> (forward(pixel_values [B, C, S, S]) -> per-sentence log-likelihoods [B, S], pixel_values [1, C, S, S],
    sentences). Differentiable in the pixels: captum drives it."""
    model = generator.model
    ids, text_ids = _encode(generator, report_text)
    px, maps = generator._inputs([image], None if masks is None else [masks])
    text = generator.tok.decode(text_ids, skip_special_tokens=True)
    sentences, member = _sentence_matrix(generator, text_ids, text)  # member [T, S]
    input_ids = torch.tensor([ids])

    def forward(pixel_values: torch.Tensor) -> torch.Tensor:
        B = pixel_values.shape[0]
        batch_ids = input_ids.expand(B, -1)
        seg = None if maps is None else maps.expand(B, *maps.shape[1:])
        out = model(pixel_values, batch_ids, torch.ones_like(batch_ids), seg_maps=seg)
        logp = torch.log_softmax(out.logits[:, out.n_prefix:-1].double(), -1)  # [B, L - 1, V]
        tok_lp = logp.gather(2, batch_ids[:, 1:, None])[..., 0][:, :len(text_ids)]  # [B, T] text tokens only
        return tok_lp @ member  # [B, S]

    return forward, px, sentences
