#!/usr/bin/env python3
"""An llmtrain export loaded by transformers: strict load, tokenizer, logits and loss.

For a machine with PyTorch and transformers (a lent GPU machine; CPU works too). Given an HF
directory written by `llmtrain export` and a token shard, it checks, printing one line per check:

  load        from_pretrained(dir) reports no missing, unexpected or mismatched keys
  generation  generation_config.json loads and carries the config's bos/eos ids
  tokenizer   AutoTokenizer loads the exported tokenizer files and round-trips a text
              (GPT-2: "Hello world" is [15496, 995], as tiktoken says)
  logits      transformers' logits on the batch vs an independent numpy float64 forward of the
              same files (scripts/hf_numpy_loss.py): relative error <= --logits-tol
  loss        transformers' loss vs `llmtrain eval DIR --data SHARD` on the same rows (same
              flags) or vs --expect-loss: |difference| <= --loss-tol

The batch is llmtrain eval's: packed, unshuffled rows 0 .. batches*batch_size-1 of the shard.
Exit status: 0 all checks passed, 1 a check failed, 2 bad arguments or missing packages.

    python3 scripts/hf_crosscheck.py --hf /tmp/export --shard data/demo/demo_val_000000.bin \\
        --llmtrain build/llmtrain --batches 2 --batch-size 4 --seq-len 256
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--hf", required=True, help="HF directory written by llmtrain export")
    ap.add_argument("--shard", required=True, help="llm.c token shard for the batch")
    ap.add_argument("--llmtrain", help="llmtrain binary: the loss to compare comes from `llmtrain eval`")
    ap.add_argument("--eval-backend", default="", help="--backend for llmtrain eval (default: cpu)")
    ap.add_argument("--expect-loss", type=float, help="compare with this loss instead of running llmtrain")
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto")
    ap.add_argument("--logits-tol", type=float, default=1e-4, help="relative error of the logits (fp32 vs float64)")
    ap.add_argument("--loss-tol", type=float, default=1e-4, help="absolute loss difference")
    a = ap.parse_args()
    if not os.path.isfile(os.path.join(a.hf, "config.json")):
        print(f"hf_crosscheck: {a.hf}: no config.json", file=sys.stderr)
        return 2
    if a.llmtrain is None and a.expect_loss is None:
        print("hf_crosscheck: pass --llmtrain BIN or --expect-loss X", file=sys.stderr)
        return 2
    try:
        import numpy as np
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
        sys.path.insert(0, HERE)
        import hf_numpy_loss as ref
    except ImportError as e:
        print(f"hf_crosscheck: missing package: {e}", file=sys.stderr)
        return 2

    results = []

    def report(name, ok, detail):
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'} {name:<10} {detail}", flush=True)

    def guarded(name, fn):
        try:
            fn()
        except Exception as e:  # a check that crashes is a failed check; the others still run
            report(name, False, f"{type(e).__name__}: {e}")

    print(f"hf_crosscheck: {a.hf} | torch {torch.__version__} | transformers {transformers.__version__}")
    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    # Exact fp32 GEMMs: TF32 would cost ~1e-3 relative error and hide real differences.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with open(os.path.join(a.hf, "config.json")) as f:
        cfg = json.load(f)

    state = {}

    def load():
        # No dtype argument (renamed between transformers 4 and 5): the export is float32 throughout.
        model, info = AutoModelForCausalLM.from_pretrained(a.hf, output_loading_info=True, attn_implementation="eager")
        model = model.float()
        bad = {k: v for k, v in info.items()
               if k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs") and v}
        state["model"] = model.to(device).eval()
        report("load", not bad, f"{type(model).__name__} on {device}" + (f": {bad}" if bad else ", no missing/unexpected keys"))

    def generation():
        g = GenerationConfig.from_pretrained(a.hf)
        ok = g.bos_token_id == cfg.get("bos_token_id") and g.eos_token_id == cfg.get("eos_token_id")
        report("generation", ok, f"bos {g.bos_token_id} eos {g.eos_token_id} pad {g.pad_token_id}")

    def tokenizer():
        files = [f for f in ("vocab.json", "merges.txt", "tokenizer.model") if os.path.exists(os.path.join(a.hf, f))]
        if not files:
            report("tokenizer", True, "no tokenizer files exported (skipped)")
            return
        try:
            tok = AutoTokenizer.from_pretrained(a.hf)
        except Exception as e:  # the fast tokenizer's conversion needs extra packages: try the slow one
            print(f"     tokenizer  fast tokenizer failed ({type(e).__name__}: {e}); trying use_fast=False")
            tok = AutoTokenizer.from_pretrained(a.hf, use_fast=False)
        text = "Hello world, this is a test."
        ids = tok(text, add_special_tokens=False)["input_ids"]
        back = tok.decode(ids)
        ok = back.strip() == text
        detail = f"{type(tok).__name__}: {len(ids)} ids, decode {'matches' if ok else 'differs: ' + repr(back)}"
        if cfg["model_type"] == "gpt2" and "vocab.json" in files:
            hw = tok("Hello world", add_special_tokens=False)["input_ids"]
            ok = ok and hw == [15496, 995]
            detail += f"; 'Hello world' -> {hw}"
        report("tokenizer", ok, detail)

    for name, fn in (("load", load), ("generation", generation), ("tokenizer", tokenizer)):
        guarded(name, fn)

    def numerics():
        if "model" not in state:
            report("logits", False, "model did not load")
            return
        _, W = ref.load_hf_dir(a.hf)
        inputs, targets = ref.packed_rows(ref.read_shard(a.shard), a.batches * a.batch_size, a.seq_len)
        worst, total, n = 0.0, 0.0, 0
        for b in range(a.batches):
            s = slice(b * a.batch_size, (b + 1) * a.batch_size)
            with torch.no_grad():
                out = state["model"](torch.from_numpy(inputs[s]).to(device)).logits.double().cpu().numpy()
            want = ref.logits(cfg, W, inputs[s])
            worst = max(worst, float(np.linalg.norm(out - want) / max(np.linalg.norm(want), 1e-30)))
            lg = torch.from_numpy(out)
            loss = torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), torch.from_numpy(targets[s]).reshape(-1),
                                                     reduction="sum")
            total += float(loss)
            n += targets[s].size
        report("logits", worst <= a.logits_tol, f"relative error {worst:.3e} vs numpy float64 (tol {a.logits_tol:g})")
        hf_loss = total / n
        if a.expect_loss is not None:
            want_loss, source = a.expect_loss, "--expect-loss"
        else:
            cmd = [a.llmtrain, "eval", a.hf, "--data", a.shard, "--batches", str(a.batches), "--batch-size",
                   str(a.batch_size), "--seq-len", str(a.seq_len)]
            if a.eval_backend:
                cmd += ["--backend", a.eval_backend]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                report("loss", False, f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-500:]}")
                return
            want_loss, source = json.loads(p.stdout.strip().splitlines()[-1])["loss"], "llmtrain eval"
        diff = abs(hf_loss - want_loss)
        report("loss", diff <= a.loss_tol,
               f"transformers {hf_loss:.8f} vs {source} {want_loss:.8f}: |diff| {diff:.2e} (tol {a.loss_tol:g}, {n} tokens)")

    guarded("logits", numerics)
    failed = results.count(False)
    print(f"hf_crosscheck: {len(results) - failed}/{len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
