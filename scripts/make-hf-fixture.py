#!/usr/bin/env python3
"""Writes the tiny Hugging Face fixtures the engine's logits are tested against.

Each fixture is a random tiny model built and run by `transformers` on CPU in float32:
  tests/fixtures/tiny-llama/{config.json, model.safetensors, expected_logits.json}
  tests/fixtures/tiny-hf/<family>/{...}   (qwen2, qwen3, gemma, gemma2, gemma3, phi3, gpt_neox, mistral)
`expected_logits.json` holds the input token ids and the logits of every position of one causal
forward pass (eager attention, float32).

Not run in CI (it needs torch). To regenerate:
    python3 -m venv /tmp/hfvenv && /tmp/hfvenv/bin/pip install torch transformers safetensors
    /tmp/hfvenv/bin/python scripts/make-hf-fixture.py
Weights are re-initialised from a fixed seed with values large enough to exercise every part of
the network (HF's default N(0, 0.02) init makes logits nearly uniform, a weak test): matrices
uniform in +-sqrt(3/fan_in), norm weights 1 +- 0.1 (Gemma: +-0.1 around 0, as it adds 1),
biases +-0.1, embeddings +-1; then rounded to bf16, stored in bf16, and run in float32.
"""
import json
import math
import os
import sys

import torch
import transformers

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
TOKENS = [1, 17, 42, 0, 63, 8, 8, 21, 30, 55, 2, 47]
# tiny-llama: hidden 64; the other families are smaller still (hidden 32) to keep the
# committed fixtures small.
LLAMA = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
             vocab_size=64, max_position_embeddings=128)
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             vocab_size=64, max_position_embeddings=128)


def families():
    t = transformers
    return [
        ("tiny-llama", t.LlamaConfig, t.LlamaForCausalLM,
         dict(num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)),
        ("tiny-hf/llama3-scaled", t.LlamaConfig, t.LlamaForCausalLM,
         dict(num_key_value_heads=1, tie_word_embeddings=True, rope_theta=500000.0,
              rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                high_freq_factor=4.0, original_max_position_embeddings=8))),
        ("tiny-hf/mistral", t.MistralConfig, t.MistralForCausalLM,
         dict(num_key_value_heads=2, sliding_window=4, tie_word_embeddings=False)),
        ("tiny-hf/qwen2", t.Qwen2Config, t.Qwen2ForCausalLM,
         dict(num_key_value_heads=2, rope_theta=1000000.0, tie_word_embeddings=True)),
        ("tiny-hf/qwen3", t.Qwen3Config, t.Qwen3ForCausalLM,
         dict(num_key_value_heads=2, head_dim=32, tie_word_embeddings=True)),
        ("tiny-hf/gemma", t.GemmaConfig, t.GemmaForCausalLM,
         dict(num_key_value_heads=1, head_dim=16, hidden_activation="gelu_pytorch_tanh")),
        ("tiny-hf/gemma2", t.Gemma2Config, t.Gemma2ForCausalLM,
         dict(num_key_value_heads=2, head_dim=16, hidden_activation="gelu_pytorch_tanh",
              query_pre_attn_scalar=24, attn_logit_softcapping=50.0,
              final_logit_softcapping=30.0, sliding_window=3)),
        ("tiny-hf/gemma3", t.Gemma3TextConfig, t.Gemma3ForCausalLM,
         dict(num_key_value_heads=2, head_dim=16, hidden_activation="gelu_pytorch_tanh",
              query_pre_attn_scalar=16, sliding_window=4, sliding_window_pattern=2,
              layer_types=["sliding_attention", "full_attention"],
              rope_theta=1000000.0, rope_local_base_freq=10000.0,
              rope_scaling=dict(rope_type="linear", factor=8.0))),
        ("tiny-hf/phi3", t.Phi3Config, t.Phi3ForCausalLM,
         dict(num_key_value_heads=4, partial_rotary_factor=0.5, tie_word_embeddings=False,
              pad_token_id=0, bos_token_id=1, eos_token_id=2)),
        ("tiny-hf/gpt_neox", t.GPTNeoXConfig, t.GPTNeoXForCausalLM,
         dict(rotary_pct=0.25, rotary_emb_base=10000, layer_norm_eps=1e-5, hidden_act="gelu",
              use_parallel_residual=True, tie_word_embeddings=False)),
    ]


def reinit(model, gemma_norms):
    g = torch.Generator().manual_seed(1234)

    def uni(shape, scale, shift=0.0):
        return (torch.rand(shape, generator=g, dtype=torch.float32) * 2 - 1) * scale + shift

    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() == 2:
                if "embed" in name:
                    p.copy_(uni(p.shape, 1.0))
                else:
                    p.copy_(uni(p.shape, math.sqrt(3.0 / p.shape[1])))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(uni(p.shape, 0.1, 0.0 if gemma_norms else 1.0))
            else:
                p.copy_(uni(p.shape, 0.1))


def main():
    torch.manual_seed(0)
    for folder, cfg_cls, model_cls, extra in families():
        cfg = cfg_cls(**(LLAMA if folder == "tiny-llama" else SMALL), **extra)
        cfg._attn_implementation = "eager"
        model = model_cls(cfg).float().eval()
        reinit(model, gemma_norms="gemma" in folder)
        # Round every weight to bf16 so the checkpoint can be stored in bf16 (half the bytes)
        # while the reference still computes in float32 on exactly those values.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
        ids = torch.tensor([TOKENS])
        with torch.no_grad():
            logits = model(ids).logits[0].double().tolist()
        out = os.path.join(ROOT, "tests", "fixtures", folder)
        os.makedirs(out, exist_ok=True)
        model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
        for extra_file in ("generation_config.json",):
            p = os.path.join(out, extra_file)
            if os.path.exists(p):
                os.remove(p)
        with open(os.path.join(out, "expected_logits.json"), "w") as f:
            json.dump({
                "generator": f"transformers {transformers.__version__}, torch {torch.__version__}, "
                             "float32 compute on bf16-rounded weights, eager attention, CPU",
                "tokens": TOKENS,
                "logits": [[float(f"{v:.7g}") for v in row] for row in logits],
            }, f)
        size = os.path.getsize(os.path.join(out, "model.safetensors"))
        print(f"{folder}: {size} bytes of weights", file=sys.stderr)


if __name__ == "__main__":
    main()
