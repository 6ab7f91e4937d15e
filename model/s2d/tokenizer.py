"""The tiny preset's tokenizer: byte-level BPE trained on report text, wrapped as PreTrainedTokenizerFast.

Byte-level so any text round-trips (the IU de-identification token `XXXX` included) and decoding is exact."""
from __future__ import annotations

import os
from collections.abc import Iterable

SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        return PreTrainedTokenizerFast.from_pretrained(path)
    except (OSError, ValueError):
        return AutoTokenizer.from_pretrained(path, local_files_only=True)


def pretrained_tokenizer(name: str, what: str):
    """The tokenizer published with a checkpoint (local directory or offline HF cache)."""
    from transformers import AutoTokenizer

    from model.s2d.modeling import MissingCheckpointError, _missing, missing_checkpoint_files

    if os.path.isdir(name) and missing_checkpoint_files(name, what):
        raise _missing(name, what, FileNotFoundError("incomplete checkpoint directory"))
    try:
        # CXR-BERT's config.json maps to remote code; its tokenizer is a plain BertTokenizer, and remote code is
        # never run here (without this, transformers stops to ask on stdin)
        return AutoTokenizer.from_pretrained(name, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        if isinstance(exc, MissingCheckpointError):
            raise
        raise _missing(name, what, exc, "tokenizer files") from exc


def decoder_tokenizer(cfg, texts: Iterable[str]):
    """The decoder's tokenizer: the one published beside `decoder.pretrained` (paper: Vicuna's), else a byte-level
    BPE trained on `texts` (tiny)."""
    if not cfg.decoder.pretrained:
        return train_tokenizer(texts, cfg.decoder.vocab_size)
    tok = pretrained_tokenizer(cfg.decoder.pretrained, "decoder")
    if tok.pad_token is None:
        # Llama's tokenizer has no pad token; <unk> (id 0, Vicuna's pad_token_id) stands in, as in LLaVA. Padding
        # is masked out of attention and loss, so which id it is does not matter.
        tok.pad_token = tok.unk_token
    return tok


def text_encoder_tokenizer(cfg, decoder_tok):
    """What the text encoder reads: CXR-BERT's own WordPiece vocabulary when it is published, else the decoder's."""
    return pretrained_tokenizer(cfg.text.pretrained, "text encoder") if cfg.text.pretrained else decoder_tok
