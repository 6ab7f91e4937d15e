"""Report generation with the S2D-ALIGN image path only (SMA_v on the image; no reference report, no key phrases).

    gen = load_generator()                  # the embedded default in assets/model/
    out = gen.generate(image, masks)        # masks: CXAS name -> bool HxW (e.g. Segmentation.masks), optional
    out.report, out.sentences, out.mem_attention, out.cross_attention, out.key_layout
    gen.score_sentences(image, masks, report_text, key_mask)   # teacher-forced per-sentence log-likelihoods
    gen.teacher_force(image, masks, text)   # a GenerationOutput as if the model had written `text` (grounding)

`Generator` implements `model.types.ReportGenerator`, the typed interface grounding depends on.

Greedy decoding with the KV cache. Every prompt is the same length (Nmem soft tokens + <s>), so a batch needs no
padding at the prompt; sequences that finish early are padded on the right and ignored.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from model import ASSETS_DIR
from model.types import KeyLayout, ReportOutput, Segmentation, Sentence

DEFAULT_MODEL_DIR = os.path.join(ASSETS_DIR, "model")


@dataclass
class GenerationOutput:
    report: str
    sentences: list[Sentence]  # token_span indexes token_ids
    token_ids: list[int]  # generated ids, without <s> and </s>
    timings: dict[str, float]  # seconds
    # [T_gen, Nmem]: for generated token t, how much the decoder query predicting t draws on each memory soft
    # token, by attention rollout through all decoder layers (`MemoryRollout`; heads averaged). Not
    # renormalised: a row sums to the share of the query that flows back to the image memory rather than to the
    # text so far.
    mem_attention: np.ndarray = field(repr=False)
    # [Nmem, N_keys]: SMA_v cross-attention averaged over heads; rows sum to 1 over the keys.
    cross_attention: np.ndarray = field(repr=False)
    key_layout: KeyLayout = field(repr=False)
    model_version: str = ""

    def to_report_output(self) -> ReportOutput:
        return ReportOutput(report=self.report, sentences=[Sentence(s.index, s.text, s.token_span)
                                                           for s in self.sentences],
                            model_version=self.model_version, timings=dict(self.timings))


def split_sentences(text: str) -> list[tuple[int, int, str]]:
    from model.report.sentences import split_sentences as split

    return [(s.start, s.end, s.text) for s in split(text)]


def masks_of(masks) -> dict[str, np.ndarray] | None:
    return masks.masks if isinstance(masks, Segmentation) else masks


class MemoryRollout:
    """Attention rollout (Abnar & Zuidema, 2020) from the decoder's top layer back to the Nmem memory positions.

    A token's attention to the memory in one layer says little on its own: in a later layer the token also reads
    earlier text positions, which carry memory content of their own. Rollout follows those paths. Per layer, the
    heads' mean attention A is mixed with the residual stream, 0.5 A + 0.5 I, and chained:

        r_0[i] = e_i (i a memory position) or 0 (a text position)          [M]
        r_l[i] = 0.5 r_{l-1}[i] + 0.5 sum_j A_l[i, j] r_{l-1}[j]

    r_L[i] is query i's relevance over the memory inputs (non-negative, sums to at most 1). On the validation
    split this points better than the mean of the layers' direct attention to the memory (docs/grounding.md).
    `extend` takes the attentions of the newest positions only, so that generation with a KV cache, one token at
    a time, computes exactly what one teacher-forced pass over the whole text does."""

    def __init__(self, n_mem: int):
        self.n_mem = n_mem
        self.rel: list[torch.Tensor] | None = None  # r_0 .. r_{L-1} of every position so far, each [B, N, M]

    def extend(self, attentions) -> torch.Tensor:
        """attentions: per decoder layer [B, heads, q, N] for the q newest of N positions -> r_L [B, q, M]."""
        B, _, q, N = attentions[0].shape
        start = N - q
        if self.rel is not None and self.rel[0].shape[1] != start:
            raise ValueError(f"rollout holds {self.rel[0].shape[1]} positions but the attention covers {start} "
                             f"earlier ones")
        pos = torch.arange(start, N)
        r = (pos[:, None] == torch.arange(self.n_mem)[None, :]).to(attentions[0].dtype)  # [q, M]
        r = r.expand(B, q, self.n_mem)
        new = []
        for layer, att in enumerate(attentions):
            new.append(r)
            prev = r if self.rel is None else torch.cat([self.rel[layer], r], dim=1)  # [B, N, M]
            r = 0.5 * r + 0.5 * att.mean(1) @ prev
        self.rel = new if self.rel is None else [torch.cat([a, b], dim=1) for a, b in zip(self.rel, new)]
        return r


class Generator:
    def __init__(self, model, tokenizer, model_dir: str, state: dict, max_new_tokens: int = 128):
        self.model, self.tok, self.model_dir = model.eval(), tokenizer, model_dir
        self.cfg = model.cfg
        self.max_new_tokens = max_new_tokens
        self.model_version = f"s2d-{self.cfg.preset}:{os.path.basename(os.path.abspath(model_dir))}:" \
                             f"stage{state.get('stage', '?')}"

    # -- inputs -----------------------------------------------------------------------------------------------
    def preprocess(self, images: list[np.ndarray], masks: list | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images (and their CXAS masks, one set per image or None) -> the model's pixel values [B, C, S, S] and
        ASaRG region maps [B, R, 32, 32] (None when the model takes no segmentation)."""
        from model.s2d.asarg import masks_to_maps
        from model.s2d.data import MAP_SIZE, pixel_tensor, prepare_image

        v = self.cfg.vision
        if masks is not None and len(masks) != len(images):
            raise ValueError(f"{len(images)} images but {len(masks)} mask sets: pass one per image (or None)")
        px = pixel_tensor(np.stack([prepare_image(im, v.image_size) for im in images]), v.image_mean, v.image_std,
                          v.num_channels)
        if not self.cfg.use_segmentation:
            return px, None
        regions = tuple(self.cfg.asarg.regions)
        # no masks: every region is "missing" (zero maps), which the model saw in training (seg_dropout)
        maps = np.stack([masks_to_maps(masks_of(m) if masks is not None else None, regions, MAP_SIZE)
                         for m in (masks if masks is not None else [None] * len(images))])
        return px, torch.from_numpy(maps)

    # -- generation -------------------------------------------------------------------------------------------
    def generate(self, image: np.ndarray, masks=None) -> GenerationOutput:
        return self.generate_batch([image], None if masks is None else [masks])[0]

    @torch.no_grad()
    def generate_batch(self, images: list[np.ndarray], masks: list | None = None) -> list[GenerationOutput]:
        if len(images) == 0:
            return []
        t0 = time.perf_counter()
        px, maps = self.preprocess(list(images), masks)
        feats = self.model.get_image_features(px, maps)
        t1 = time.perf_counter()
        ids, mem = self._greedy(feats.tokens)  # [B, T], [B, T, M]
        t2 = time.perf_counter()
        cross = feats.cross_attention.mean(1).numpy()  # [B, M, N_keys]
        outs = []
        for b in range(len(images)):
            row = ids[b].tolist()
            n = row.index(self.tok.eos_token_id) if self.tok.eos_token_id in row else len(row)
            token_ids = row[:n]
            text = self.tok.decode(token_ids, skip_special_tokens=True)
            outs.append(GenerationOutput(
                report=text, sentences=self.sentence_spans(token_ids, text), token_ids=token_ids,
                timings={"encode_s": (t1 - t0) / len(images), "decode_s": (t2 - t1) / len(images),
                         "total_s": (t2 - t0) / len(images), "n_tokens": float(n)},
                mem_attention=mem[b, :n].numpy(), cross_attention=cross[b], key_layout=feats.key_layout,
                model_version=self.model_version))
        return outs

    def _greedy(self, prefix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """prefix [B, M, D] -> generated ids [B, T] and attention to the M memory positions [B, T, M]."""
        dec, emb = self.model.decoder, self.model.embed_tokens()
        B, M, _ = prefix.shape
        bos = emb(torch.full((B, 1), self.tok.bos_token_id, dtype=torch.long))
        embeds = torch.cat([prefix, bos], dim=1)  # [B, M + 1, D]
        mask = torch.ones(B, M + 1, dtype=torch.long)
        out = dec(inputs_embeds=embeds, attention_mask=mask, use_cache=True, output_attentions=True)
        done = torch.zeros(B, dtype=torch.bool)
        ids, mems = [], []
        roll = MemoryRollout(M)
        for _ in range(self.max_new_tokens):
            # attentions: per layer [B, heads, q, k]; the last query predicts the next token
            mems.append(roll.extend(out.attentions)[:, -1])  # [B, M]
            nxt = out.logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.tok.pad_token_id), nxt)
            ids.append(nxt)
            done |= nxt == self.tok.eos_token_id
            if bool(done.all()):
                break
            mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)
            out = dec(inputs_embeds=emb(nxt[:, None]), attention_mask=mask, past_key_values=out.past_key_values,
                      use_cache=True, output_attentions=True)
        return torch.stack(ids, 1), torch.stack(mems, 1)

    def _char_ends(self, token_ids: list[int]) -> list[int]:
        """Character end offset in the decoded text of each token prefix."""
        return [len(self.tok.decode(token_ids[: i + 1], skip_special_tokens=True)) for i in range(len(token_ids))]

    def sentence_spans(self, token_ids: list[int], text: str) -> list[Sentence]:
        """The sentences of `text` (the decoding of `token_ids`), each with its [start, end) token span."""
        ends = self._char_ends(token_ids)
        starts = [0] + ends[:-1]
        out = []
        for i, (a, b, s) in enumerate(split_sentences(text)):
            toks = [k for k in range(len(token_ids)) if starts[k] < b and ends[k] > a]
            span = (toks[0], toks[-1] + 1) if toks else (0, 0)
            out.append(Sentence(index=i, text=s, token_span=span))
        return out

    # -- scoring ----------------------------------------------------------------------------------------------
    def score_sentences(self, image: np.ndarray, masks, report_text: str, key_mask=None) -> torch.Tensor:
        """Teacher-forced log-likelihood of each sentence of `report_text` (order of split_sentences) given the
        image: float [S]. key_mask [N_keys] (bool: False removes a patch/region/feature key from SMA_v; float in
        [0, 1]: soft removal, differentiable for integrated gradients; layout in `key_layout`)."""
        px, maps = self.preprocess([image], None if masks is None else [masks])
        ids = [self.tok.bos_token_id] + self.tok(report_text, add_special_tokens=False)["input_ids"] + \
              [self.tok.eos_token_id]
        input_ids = torch.tensor([ids])
        km = None
        if key_mask is not None:
            km = torch.as_tensor(key_mask)
            km = km[None] if km.ndim == 1 else km
        with torch.set_grad_enabled(km is not None and km.requires_grad):
            out = self.model(px, input_ids, torch.ones_like(input_ids), seg_maps=maps, key_mask=km)
            logp = torch.log_softmax(out.logits[0, out.n_prefix:-1].float(), -1)  # [L - 1, V]
            tok_lp = logp.gather(1, input_ids[0, 1:, None])[:, 0]  # log p(token i + 1)
        text_ids = ids[1:-1]
        ends = self._char_ends(text_ids)
        starts = [0] + ends[:-1]
        # decoded text equals report_text for byte-level BPE; offsets are in its characters
        scores = []
        for a, b, _ in split_sentences(report_text):
            toks = [k for k in range(len(text_ids)) if starts[k] < b and ends[k] > a]
            scores.append(tok_lp[toks].sum() if toks else tok_lp.new_zeros(()))
        return torch.stack(scores) if scores else tok_lp.new_zeros(0)

    # -- teacher forcing (what grounding builds on) -------------------------------------------------------------
    def encode_text(self, report_text: str) -> tuple[list[int], list[int]]:
        """-> (ids with <s> ... </s>, text ids)."""
        text_ids = self.tok(report_text, add_special_tokens=False)["input_ids"]
        if not text_ids:
            raise ValueError("the report text encodes to no tokens: nothing to ground")
        return [self.tok.bos_token_id] + text_ids + [self.tok.eos_token_id], text_ids

    def _membership(self, text_ids: list[int]) -> tuple[list[Sentence], torch.Tensor]:
        """Sentences of the decoded text with token spans, and a [T_text, S] 0/1 membership matrix."""
        text = self.tok.decode(text_ids, skip_special_tokens=True)
        sentences = self.sentence_spans(text_ids, text)
        member = torch.zeros(len(text_ids), len(sentences), dtype=torch.float64)
        for j, sent in enumerate(sentences):
            a, b = sent.token_span
            member[a:b, j] = 1.0
        return sentences, member

    @torch.no_grad()
    def teacher_force(self, image: np.ndarray, masks, report_text: str) -> GenerationOutput:
        """One teacher-forced pass over `report_text` -> a GenerationOutput as if the model had written it:
        mem_attention [T_text, Nmem] (the query predicting each text token: its rollout relevance over the memory
        positions, exactly as generation records it), cross_attention [Nmem, N_keys] (heads averaged), sentences
        with token spans, key_layout. Grounds any text: a reviewer's edit, an inserted sentence."""
        t0 = time.perf_counter()
        ids, text_ids = self.encode_text(report_text)
        px, maps = self.preprocess([image], None if masks is None else [masks])
        feats = self.model.get_image_features(px, maps)
        prefix = feats.tokens  # [1, M, D]
        M = prefix.shape[1]
        embeds = torch.cat([prefix, self.model.embed_tokens()(torch.tensor([ids]))], dim=1)  # [1, M + L, D]
        out = self.model.decoder(inputs_embeds=embeds, attention_mask=torch.ones(1, embeds.shape[1], dtype=torch.long),
                                 output_attentions=True)
        # query at position M + i (token i of ids) predicts ids[i + 1]; text token k is ids[k + 1]
        att = MemoryRollout(M).extend(out.attentions)[0, M:M + len(text_ids)]  # [T, M]
        sentences, _ = self._membership(text_ids)
        return GenerationOutput(report=self.tok.decode(text_ids, skip_special_tokens=True), sentences=sentences,
                                token_ids=text_ids,
                                timings={"teacher_force_s": time.perf_counter() - t0, "n_tokens": float(len(text_ids))},
                                mem_attention=att.numpy(), cross_attention=feats.cross_attention[0].mean(0).numpy(),
                                key_layout=feats.key_layout, model_version=self.model_version)

    def sentence_loglik_fn(self, image: np.ndarray, masks, report_text: str):
        """-> (forward(pixel_values [B, C, S, S]) -> per-sentence log-likelihoods [B, S], pixel_values [1, C, S, S],
        sentences). Differentiable in the pixels: the gradient attributions (captum and ig-fast) drive it."""
        model = self.model
        ids, text_ids = self.encode_text(report_text)
        px, maps = self.preprocess([image], None if masks is None else [masks])
        sentences, member = self._membership(text_ids)  # member [T, S]
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

    @property
    def patch_embedding(self) -> torch.nn.Module:
        """The vision encoder's patch-embedding step: pixel values -> patch tokens [B, Np, D], the layer the gradient
        attributions differentiate at."""
        return self.model.vision.embeddings.patch_embeddings

    @property
    def key_layout(self):
        return self.model.key_layout()


def load_generator(model_dir: str | None = None, max_new_tokens: int = 128) -> Generator:
    """Load a trained checkpoint (None: the embedded default in assets/model/), LoRA merged for speed."""
    from model.s2d.modeling import load_model

    model_dir = model_dir or DEFAULT_MODEL_DIR
    torch.manual_seed(0)
    model, tok, state = load_model(model_dir)
    model.merge_lora()
    return Generator(model, tok, model_dir, state, max_new_tokens)
