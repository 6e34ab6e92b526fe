#!/usr/bin/python3
"""Loss of a Hugging Face GPT-2 or LLaMA directory, computed with numpy alone (float64).

An implementation independent of llmtrain: it reads only the exported files (config.json and
model.safetensors, or the shards model.safetensors.index.json lists; F32/F16/BF16) and follows
transformers' GPT2LMHeadModel / LlamaForCausalLM semantics, so that comparing its loss with
`llmtrain eval HF_DIR` checks the export (names, layouts, config keys) and our forward pass at once.
The batch is what `llmtrain eval --data SHARD --batches N --batch-size B --seq-len T` reads from
one shard in packed mode: rows r = 0 .. N*B-1, inputs tokens[r*T : r*T+T], targets one further.

    /usr/bin/python3 scripts/hf_numpy_loss.py HF_DIR SHARD --batches 2 --batch-size 4 --seq-len 32

Prints one JSON object: {"loss": ..., "tokens": ...}. Needs Debian's python3-numpy. The functions
are also imported by scripts/hf_crosscheck.py to compare logits with transformers.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I32": np.int32, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        if info["dtype"] == "BF16":  # the top half of a float32
            t = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            t = np.frombuffer(raw, dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).astype(np.float64)
    return out


def load_hf_dir(hf_dir):
    """(config dict, {name: float64 array}) of an HF model directory."""
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)
    single = os.path.join(hf_dir, "model.safetensors")
    if os.path.exists(single):
        weights = read_safetensors(single)
    else:
        with open(os.path.join(hf_dir, "model.safetensors.index.json")) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        weights = {}
        for name in files:
            weights.update(read_safetensors(os.path.join(hf_dir, name)))
    return cfg, weights


def causal_attention(q, k, v, scale):
    """q, k, v: [B, H, T, hs] -> [B, H, T, hs]."""
    T = q.shape[2]
    att = (q @ k.transpose(0, 1, 3, 2)) * scale
    att = np.where(np.tril(np.ones((T, T), dtype=bool)), att, -np.inf)
    att = np.exp(att - att.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    return att @ v


def gpt2_logits(cfg, W, idx):
    W = {(k if k.startswith("transformer.") or k == "lm_head.weight" else "transformer." + k): v for k, v in W.items()}
    B, T = idx.shape
    C, NH, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    hs = C // NH
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    assert cfg.get("activation_function", "gelu_new") in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * W[p + ".weight"] + W[p + ".bias"]

    def conv1d(x, p):  # HF Conv1D: weight [in, out]
        return x @ W[p + ".weight"] + W[p + ".bias"]

    def gelu(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    x = W["transformer.wte.weight"][idx] + W["transformer.wpe.weight"][np.arange(T)]
    for l in range(L):
        p = f"transformer.h.{l}."
        q, k, v = np.split(conv1d(ln(x, p + "ln_1"), p + "attn.c_attn"), 3, axis=-1)
        q, k, v = (t.reshape(B, T, NH, hs).transpose(0, 2, 1, 3) for t in (q, k, v))
        scale = 1.0 / math.sqrt(hs)
        if cfg.get("scale_attn_by_inverse_layer_idx", False):
            scale /= l + 1
        y = causal_attention(q, k, v, scale).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + conv1d(y, p + "attn.c_proj")
        x = x + conv1d(gelu(conv1d(ln(x, p + "ln_2"), p + "mlp.c_fc")), p + "mlp.c_proj")
    x = ln(x, "transformer.ln_f")
    tied = cfg.get("tie_word_embeddings", True) or "lm_head.weight" not in W
    return x @ (W["transformer.wte.weight"] if tied else W["lm_head.weight"]).T


def llama_logits(cfg, W, idx):
    B, T = idx.shape
    C, NH, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    NKV = cfg.get("num_key_value_heads", NH)
    hs = C // NH
    eps, theta = cfg.get("rms_norm_eps", 1e-6), cfg.get("rope_theta", 10000.0)
    assert cfg.get("hidden_act", "silu") == "silu" and not cfg.get("rope_scaling")
    inv = theta ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
    cos, sin = np.concatenate([np.cos(ang)] * 2, -1), np.concatenate([np.sin(ang)] * 2, -1)

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope(t):  # rotate_half convention: the two halves of each head are the pairs
        a, b = t[..., : hs // 2], t[..., hs // 2:]
        return t * cos + np.concatenate([-b, a], -1) * sin

    def silu(x):
        return x / (1.0 + np.exp(-x))

    x = W["model.embed_tokens.weight"][idx]
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).reshape(B, T, NKV, hs).transpose(0, 2, 1, 3)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(B, T, NKV, hs).transpose(0, 2, 1, 3)
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, NH // NKV, axis=1), np.repeat(v, NH // NKV, axis=1)
        y = causal_attention(q, k, v, 1.0 / math.sqrt(hs)).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + y @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = silu(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)
        x = x + g @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    tied = cfg.get("tie_word_embeddings", False) or "lm_head.weight" not in W
    return x @ (W["model.embed_tokens.weight"] if tied else W["lm_head.weight"]).T


def logits(cfg, W, idx):
    if cfg["model_type"] == "gpt2":
        return gpt2_logits(cfg, W, idx)
    if cfg["model_type"] == "llama":
        return llama_logits(cfg, W, idx)
    raise SystemExit(f"model_type {cfg['model_type']!r}: only gpt2 and llama")


def read_shard(path):
    """Tokens of an llm.c shard (uint16 or uint32)."""
    with open(path, "rb") as f:
        header = struct.unpack("<256i", f.read(1024))
        data = f.read()
    if header[0] == 20240520 and header[1] == 1:
        dt = np.uint16
    elif header[0] == 20240801 and header[1] == 7:
        dt = np.uint32
    else:
        raise SystemExit(f"{path}: not an llm.c token shard (header {header[:3]})")
    tokens = np.frombuffer(data, dtype=dt)
    if len(tokens) != header[2]:
        raise SystemExit(f"{path}: header says {header[2]} tokens, file holds {len(tokens)}")
    return tokens.astype(np.int64)


def packed_rows(tokens, rows, T):
    """(inputs, targets) [rows, T] of llmtrain's unshuffled packed loader on one shard."""
    have = (len(tokens) - 1) // T
    if rows > have:
        raise SystemExit(f"the shard has {have} windows of T+1={T + 1} tokens, {rows} are needed")
    idx = np.stack([tokens[r * T: r * T + T + 1] for r in range(rows)])
    return idx[:, :-1], idx[:, 1:]


def mean_loss(lg, targets):
    mx = lg.max(-1, keepdims=True)
    lse = np.log(np.exp(lg - mx).sum(-1)) + mx[..., 0]
    picked = np.take_along_axis(lg, targets[..., None], -1)[..., 0]
    return float((lse - picked).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hf_dir")
    ap.add_argument("shard")
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=32)
    a = ap.parse_args()
    cfg, W = load_hf_dir(a.hf_dir)
    inputs, targets = packed_rows(read_shard(a.shard), a.batches * a.batch_size, a.seq_len)
    V = cfg["vocab_size"]
    if inputs.max() >= V:
        raise SystemExit(f"token id {inputs.max()} >= vocab_size {V}")
    total, n = 0.0, 0
    for b in range(a.batches):  # one batch at a time keeps the [B, T, V] logits small
        s = slice(b * a.batch_size, (b + 1) * a.batch_size)
        total += mean_loss(logits(cfg, W, inputs[s]), targets[s]) * targets[s].size
        n += targets[s].size
    print(json.dumps({"loss": total / n, "tokens": n}))


if __name__ == "__main__":
    sys.exit(main())
