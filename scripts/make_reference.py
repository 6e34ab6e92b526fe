#!/usr/bin/python3
"""Reference logits, loss and gradients from an independent PyTorch implementation.

Builds tiny GPT-2 and LLaMA models in PyTorch (float64) from the weights `llmtrain export --init`
writes (Hugging Face layout), runs one fixed batch, and writes tests/fixtures/reference/<case>.safetensors
with the weights and gradients in llmtrain's layout ([out, in], padded vocabulary), the batch,
the logits and the loss. tests/test_reference.cpp checks our CPU backend against these files, so
CI needs no torch. Run with Debian's interpreter and python3-torch:

    /usr/bin/python3 scripts/make_reference.py build/llmtrain
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "reference")

CASES = {
    "gpt2_tiny": {"arch": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 4, "vocab_size": 300,
                  "padded_vocab_size": 384, "max_seq_len": 16, "bias": True,
                  "scale_attn_by_inverse_layer_idx": True},
    "gpt2_nobias_untied": {"arch": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 300,
                           "max_seq_len": 16, "bias": False, "tie_embeddings": False},
    "llama_tiny": {"arch": "llama", "n_layer": 2, "n_embd": 32, "n_head": 4, "n_kv_head": 2,
                   "vocab_size": 300, "max_seq_len": 16, "intermediate_size": 48, "rope_theta": 10000.0},
}
B, T = 2, 12


# ---- minimal safetensors I/O (the format is simple; no extra package needed) ----
DT = {"F32": ("f", 4, torch.float32), "F64": ("d", 8, torch.float64), "I32": ("i", 4, torch.int32)}


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
        dtype = DT[info["dtype"]][2]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=dtype).reshape(info["shape"])
        out[name] = t.clone()
    return out


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, (dtype, t) in tensors.items():
        t = t.detach().to(DT[dtype][2]).contiguous()
        raw = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)


# ---- the models, written from the papers / HF semantics, in float64 ----
def gpt2_forward(W, cfg, idx):
    C, NH, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    HS = C // NH
    eps = cfg["layer_norm_epsilon"]
    bias = cfg.get("bias", True)
    pos = torch.arange(idx.shape[1])
    x = W["transformer.wte.weight"][idx] + W["transformer.wpe.weight"][pos]
    mask = torch.ones(T, T, dtype=torch.bool).tril()

    def ln(x, p):
        return F.layer_norm(x, (C,), W[p + ".weight"], W[p + ".bias"] if bias else None, eps)

    def conv1d(x, p):  # HF Conv1D: x @ W[in, out] + b
        y = x @ W[p + ".weight"]
        return y + W[p + ".bias"] if bias else y

    for l in range(L):
        p = f"transformer.h.{l}."
        qkv = conv1d(ln(x, p + "ln_1"), p + "attn.c_attn")
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, NH, HS).transpose(1, 2) for t in (q, k, v))
        scale = 1.0 / HS ** 0.5
        if cfg.get("scale_attn_by_inverse_layer_idx"):
            scale /= l + 1
        att = (q @ k.transpose(-1, -2)) * scale
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + conv1d(y, p + "attn.c_proj")
        h = F.gelu(conv1d(ln(x, p + "ln_2"), p + "mlp.c_fc"), approximate="tanh")
        x = x + conv1d(h, p + "mlp.c_proj")
    x = ln(x, "transformer.ln_f")
    head = W["lm_head.weight"] if "lm_head.weight" in W else W["transformer.wte.weight"]
    return x @ head.t()


def llama_forward(W, cfg, idx):
    C, NH, NKV, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"]
    HS = C // NH
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    x = W["model.embed_tokens.weight"][idx]
    inv = theta ** (-torch.arange(0, HS, 2, dtype=torch.float64) / HS)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    mask = torch.ones(T, T, dtype=torch.bool).tril()

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def rot_half(t):
        a, b = t[..., : HS // 2], t[..., HS // 2:]
        return torch.cat([-b, a], -1)

    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].t()).view(B, T, NH, HS).transpose(1, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].t()).view(B, T, NKV, HS).transpose(1, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].t()).view(B, T, NKV, HS).transpose(1, 2)
        q, k = q * cos + rot_half(q) * sin, k * cos + rot_half(k) * sin
        k, v = k.repeat_interleave(NH // NKV, dim=1), v.repeat_interleave(NH // NKV, dim=1)
        att = ((q @ k.transpose(-1, -2)) / HS ** 0.5).masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ W[p + "self_attn.o_proj.weight"].t()
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = F.silu(h @ W[p + "mlp.gate_proj.weight"].t()) * (h @ W[p + "mlp.up_proj.weight"].t())
        x = x + g @ W[p + "mlp.down_proj.weight"].t()
    x = rms(x, W["model.norm.weight"])
    head = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
    return x @ head.t()


CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def to_ours(name, t, arch, V, Vp):
    """HF layout -> llmtrain layout: transpose GPT-2 Conv1D weights, pad vocabulary rows."""
    if arch == "gpt2" and name.endswith(CONV1D):
        t = t.t()
    if name in ("transformer.wte.weight", "model.embed_tokens.weight", "lm_head.weight") and Vp > V:
        t = torch.cat([t, torch.zeros(Vp - V, t.shape[1], dtype=t.dtype)], 0)
    return t.contiguous()


def make_case(binary, name, model_cfg):
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = os.path.join(tmp, "c.json")
        shard = os.path.join(tmp, "s_train_000001.bin")  # --dry-run checks that the data exists
        with open(shard, "wb") as f:
            f.write(struct.pack("<256i", 20240520, 1, 1024, *([0] * 253)) + bytes(2048))
        with open(cfg_path, "w") as f:
            json.dump({"model": model_cfg, "data": {"train": shard, "seq_len": T, "micro_batch": B, "delimiter": 0},
                       "run": {"seed": 1234}}, f)
        subprocess.run([binary, "export", "--init", "--config", cfg_path, "--out", tmp + "/hf"], check=True,
                       stdout=subprocess.DEVNULL)
        hf_cfg = json.load(open(tmp + "/hf/config.json"))
        W32 = read_safetensors(tmp + "/hf/model.safetensors")
        if not hf_cfg.get("bias", True):  # a bias-free GPT-2 is exported with zero biases: not ours
            W32 = {k: v for k, v in W32.items() if not k.endswith(".bias")}
        resolved = json.loads(subprocess.run([binary, "train", cfg_path, "--dry-run"], check=True,
                                             capture_output=True, text=True).stdout)["model"]
    arch, V, Vp = resolved["arch"], resolved["vocab_size"], resolved["padded_vocab_size"]
    # Make every parameter "interesting" (gains != 1, biases != 0) before the reference run.
    gen = torch.Generator().manual_seed(0)
    W = {k: (v.double() + 0.05 * torch.randn(v.shape, generator=gen, dtype=torch.float64)).float().double()
         .requires_grad_(True) for k, v in W32.items()}
    idx = torch.randint(0, V, (B, T), generator=gen)
    tgt = torch.randint(0, V, (B, T), generator=gen)
    tgt[0, 3] = -1  # ignored targets are part of the contract
    tgt[1, 7] = -1
    fwd = gpt2_forward if arch == "gpt2" else llama_forward
    logits = fwd(W, hf_cfg, idx)
    loss = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1), ignore_index=-1)
    loss.backward()
    tensors = {"input_ids": ("I32", idx.int()), "targets": ("I32", tgt.int()), "logits": ("F32", logits),
               "loss": ("F64", loss.reshape(1))}
    for k, w in W.items():
        tensors["param." + k] = ("F32", to_ours(k, w.detach(), arch, V, Vp))
        tensors["grad." + k] = ("F32", to_ours(k, w.grad, arch, V, Vp))
    os.makedirs(OUT, exist_ok=True)
    write_safetensors(os.path.join(OUT, name + ".safetensors"), tensors,
                      {"model": json.dumps(resolved), "torch": torch.__version__})
    print(f"{name}: loss {loss.item():.6f}, {len(W)} tensors")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "llmtrain")
    torch.manual_seed(0)
    for name, cfg in CASES.items():
        make_case(binary, name, cfg)


if __name__ == "__main__":
    main()
