"""Expected memory per device for training the `paper` preset (docs/model.md), from a calculation, not a measurement.

    python benchmarks/paper_memory.py [--micro-batch 1] [--processes 8]

Parameter counts are exact: the preset is built at full size on the meta device (no weights, no download) with LoRA
attached. Bytes per parameter follow from what each part is: the Vicuna base is frozen in bf16 (decoder.dtype),
Rad-DINO and CXR-BERT are frozen in fp32, and everything trained (LoRA, SMA_v/t/p, ASaRG, Q_mem) is fp32 with a
gradient and two AdamW moments, plus DDP's gradient bucket (another fp32 copy) when there is more than one process.
Decoder activations use the transformer estimate of Korthikanti et al. 2022 ("Reducing activation recomputation in
large transformer models", sec. 4.1): s*b*h*(34 + 5*a*s/h) bytes per layer for 16-bit activations without
recomputation (eager attention keeps the a*s^2 score and probability matrices), which stands for what the backward
pass keeps to reach LoRA and the soft tokens through all 32 layers. The frozen encoders run without autograd records
(nothing of theirs needs a gradient), so only their output is held.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

GIB = 1024 ** 3


def counts() -> dict[str, int]:
    import torch

    import model  # noqa: F401  (offline)
    from model.s2d.config import paper
    from model.s2d.modeling import S2DAlign

    with torch.device("meta"):
        m = S2DAlign(paper(), random_init=True)
        m.add_lora()
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    lora = sum(p.numel() for k, p in m.decoder.named_parameters() if "lora_" in k)
    trained_other = n(m.sma_v) + n(m.sma_t) + n(m.sma_p) + (n(m.asarg) if m.asarg is not None else 0) + \
        m.memory.numel()
    return {"decoder_base": n(m.decoder) - lora, "lora": lora, "vision": n(m.vision), "text": n(m.text_encoder),
            "adapters": trained_other, "sma_v": n(m.sma_v)}


def activations_bytes(micro_batch: int, seq: int, hidden: int = 4096, heads: int = 32, layers: int = 32,
                      vocab: int = 32000, report_tokens: int = 256) -> dict[str, float]:
    per_layer = seq * micro_batch * hidden * (34 + 5 * heads * seq / hidden)
    # logits (bf16) for the whole sequence, their fp32 copy over the report and the log-softmax gradient
    head = micro_batch * (seq * vocab * 2 + 2 * report_tokens * vocab * 4)
    return {"decoder_layers": per_layer * layers, "lm_head": head}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--micro-batch", type=int, default=1, help="samples per device per step")
    p.add_argument("--processes", type=int, default=8)
    args = p.parse_args(argv)
    c = counts()
    trained = c["lora"] + c["adapters"]
    ddp = 4 if args.processes > 1 else 0
    static = {"Vicuna-7B base, frozen, bf16 (2 B/param)": c["decoder_base"] * 2,
              "Rad-DINO, frozen, fp32 (4 B/param)": c["vision"] * 4,
              "CXR-BERT, frozen, fp32 (4 B/param)": c["text"] * 4,
              f"trained fp32: weights + grads + AdamW m, v{' + DDP bucket' if ddp else ''} "
              f"({16 + ddp} B/param)": trained * (16 + ddp)}
    print(f"parameters: Vicuna base {c['decoder_base']:,}; LoRA r=16 {c['lora']:,}; Rad-DINO {c['vision']:,}; "
          f"CXR-BERT {c['text']:,}; SMA_v/t/p + ASaRG + Q_mem {c['adapters']:,} (SMA_v alone {c['sma_v']:,})")
    print("\nstatic per device (any stage):")
    for k, v in static.items():
        print(f"  {k:<72} {v / GIB:6.2f} GiB")
    total_static = sum(static.values())
    print(f"  {'sum':<72} {total_static / GIB:6.2f} GiB")
    print(f"\nactivations per device, micro-batch {args.micro_batch} (report up to 256 tokens + 64 soft tokens per "
          f"adapter in use):")
    for stage, prefix in ((1, 64), (2, 128), (3, 192)):
        a = activations_bytes(args.micro_batch, prefix + 256)
        tot = sum(a.values())
        print(f"  stage {stage}: sequence {prefix + 256:3d}: decoder layers {a['decoder_layers'] / GIB:5.2f} GiB + "
              f"LM head {a['lm_head'] / GIB:4.2f} GiB -> total with static {(total_static + tot) / GIB:6.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
