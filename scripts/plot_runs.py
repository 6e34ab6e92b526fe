#!/usr/bin/env python3
"""Plot training runs: loss curves (train, smoothed, and validation) and, when the runs logged
them, the matrix optimizer's diagonal-dominance ratios r_avg / r_min / r_max (RMNP paper,
Appendix B) over steps.

Reads each run directory's config.json and metrics.jsonl (one JSON object per line; a torn last
line from a crashed run is skipped). Arguments may be run directories, sweep directories (their
sweep.json lists the runs) or directories that hold run directories. `llmtrain report --plot`
calls this script; it also runs on its own:

    python3 scripts/plot_runs.py --out curves.png runs/sweep_lr
    python3 scripts/plot_runs.py --out cmp.png --x tokens --ema 0.95 runs/a runs/b

Needs matplotlib (Debian: apt-get install -y python3-matplotlib); draws with the Agg backend, so
no display is required.
"""
import argparse
import json
import math
import os
import sys


def is_run_dir(d):
    return os.path.isfile(os.path.join(d, "config.json")) or os.path.isfile(os.path.join(d, "metrics.jsonl"))


def expand(args):
    """Run directories for the given arguments, in the same way `llmtrain report` expands them."""
    out, seen = [], set()

    def add(d):
        key = os.path.normpath(d)
        if key not in seen:
            seen.add(key)
            out.append(d)

    for a in args:
        if not os.path.isdir(a):
            sys.exit(f"plot_runs.py: {a}: not a directory (expected a run or sweep directory)")
        if is_run_dir(a):
            add(a)
            continue
        sweep = os.path.join(a, "sweep.json")
        if os.path.isfile(sweep):
            with open(sweep) as f:
                for r in json.load(f).get("runs", []):
                    if isinstance(r, dict) and isinstance(r.get("name"), str):
                        add(os.path.join(a, r["name"]))
            continue
        subs = sorted(os.path.join(a, e) for e in os.listdir(a) if is_run_dir(os.path.join(a, e)))
        if not subs:
            sys.exit(f"plot_runs.py: {a}: no run here (no config.json or metrics.jsonl, no sweep.json)")
        for s in subs:
            add(s)
    return out


def read_metrics(path):
    """Records in step order; a resumed run's rewritten steps replace the earlier ones."""
    recs = []
    if not os.path.isfile(path):
        return recs
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue  # torn line of a crashed run
            if not isinstance(r, dict) or not isinstance(r.get("step"), int):
                continue
            while recs and recs[-1]["step"] >= r["step"]:
                recs.pop()
            recs.append(r)
    return recs


def label_of(d):
    try:
        with open(os.path.join(d, "config.json")) as f:
            name = json.load(f).get("run", {}).get("name", "")
        if name:
            return name
    except (OSError, ValueError, AttributeError):
        pass
    return os.path.basename(os.path.normpath(d))


def num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def diag_group(d, prefer):
    """The diagnostics object of the preferred group, else of the first group that has ratios."""
    if not isinstance(d, dict):
        return None
    if isinstance(d.get(prefer), dict):
        return d[prefer]
    for v in d.values():
        if isinstance(v, dict) and any(k in v for k in ("r_avg", "r_min", "r_max")):
            return v
    return None


def ema(values, alpha):
    """Bias-corrected exponential moving average (as Adam corrects its moments): the first points
    are averages of what has been seen so far, not pulled toward zero or toward the first value."""
    out, s, w = [], 0.0, 0.0
    for v in values:
        s = alpha * s + (1 - alpha) * v
        w = alpha * w + (1 - alpha)
        out.append(s / w)
    return out


def ema_for(n, alpha):
    """The smoothing actually used for a curve of n points: at most ~1/20 of the curve's length, so
    that a short run's smoothed curve does not lag behind its raw one by a large part of the run."""
    if n < 2 or alpha <= 0:
        return 0.0
    return min(alpha, max(0.0, 1.0 - 20.0 / n))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", help="run, sweep or parent directories")
    ap.add_argument("--out", required=True, help="output image (PNG, PDF or SVG by extension)")
    ap.add_argument("--title", default="", help="figure title")
    ap.add_argument("--x", choices=["step", "tokens"], default="step", help="x axis (tokens: cumulative tokens)")
    ap.add_argument("--ema", type=float, default=0.9,
                    help="EMA smoothing of the training loss (0 = none; short runs get less, see ema_for)")
    ap.add_argument("--group", default="matrix", help="optimizer group whose diagnostics are drawn")
    args = ap.parse_args()
    if not 0 <= args.ema < 1:
        sys.exit("plot_runs.py: --ema must be in [0, 1)")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_runs.py: matplotlib is missing (Debian: apt-get install -y python3-matplotlib)")

    runs = []
    for d in expand(args.dirs):
        recs = read_metrics(os.path.join(d, "metrics.jsonl"))
        if recs:
            runs.append((label_of(d), recs))
        else:
            print(f"plot_runs.py: {d}: no metrics yet, left out", file=sys.stderr)
    if not runs:
        sys.exit("plot_runs.py: nothing to plot")

    def xs_of(recs):
        if args.x == "step":
            return [r["step"] for r in recs]
        total, xs = 0, []
        for r in recs:
            total += r.get("tokens", 0) if num(r.get("tokens")) else 0
            xs.append(total)
        return xs

    has_diag = any(diag_group(r.get("diagnostics"), args.group) for _, recs in runs for r in recs)
    ncols = 3 if has_diag else 2
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4.5), squeeze=False)
    ax_train, ax_val = axes[0][0], axes[0][1]
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    xlabel = "step" if args.x == "step" else "tokens"

    for i, (name, recs) in enumerate(runs):
        c = colors[i % len(colors)]
        xs = xs_of(recs)
        pts = [(x, r["loss"]) for x, r in zip(xs, recs) if num(r.get("loss"))]
        if pts:
            px, py = zip(*pts)
            a = ema_for(len(py), args.ema)
            if a > 0:
                ax_train.plot(px, py, color=c, alpha=0.2, linewidth=0.8)
                ax_train.plot(px, ema(py, a), color=c, linewidth=1.5, label=name)
            else:
                ax_train.plot(px, py, color=c, linewidth=1.5, label=name)
        vpts = []
        for x, r in zip(xs, recs):
            if num(r.get("val_loss")):
                vpts.append((x, r["val_loss"]))
            elif num(r.get("val_ppl")) and r["val_ppl"] > 0:
                vpts.append((x, math.log(r["val_ppl"])))
        if vpts:
            vx, vy = zip(*vpts)
            ax_val.plot(vx, vy, color=c, marker="o", markersize=3, linewidth=1.5,
                        label=f"{name} ({math.exp(vy[-1]):.2f} ppl)")
        if has_diag:
            ax_d = axes[0][2]
            dpts = [(x, diag_group(r.get("diagnostics"), args.group)) for x, r in zip(xs, recs)]
            dpts = [(x, g) for x, g in dpts if g]
            for key, style in (("r_avg", "-"), ("r_min", "--"), ("r_max", ":")):
                kp = [(x, g[key]) for x, g in dpts if num(g.get(key)) and g[key] > 0]
                if kp:
                    kx, ky = zip(*kp)
                    # One legend entry per run (its r_avg line); the line styles are in the title.
                    label = (name if len(runs) > 1 else key) if key == "r_avg" or len(runs) == 1 else None
                    ax_d.plot(kx, ky, color=c, linestyle=style, linewidth=1.3, label=label)

    n_max = max(len(recs) for _, recs in runs)
    a_used = ema_for(n_max, args.ema)
    ax_train.set_title("training loss" + (f" (EMA {a_used:.2g})" if a_used > 0 else ""))
    ax_val.set_title("validation loss")
    for ax in (ax_train, ax_val):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss (nats/token)")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    if not ax_val.lines:
        ax_val.text(0.5, 0.5, "no validation points logged", ha="center", va="center", transform=ax_val.transAxes)
    if has_diag:
        ax_d = axes[0][2]
        ax_d.axhline(1.0, color="red", linestyle="--", linewidth=1)
        ax_d.set_yscale("log")
        ax_d.set_title(f"diagonal dominance of V V^T ({args.group} group)\n"
                       "r_avg solid, r_min dashed, r_max dotted; red: ratio 1", fontsize=10)
        ax_d.set_xlabel(xlabel)
        ax_d.set_ylabel("ratio (diag / mean |off-diag|)")
        ax_d.grid(True, alpha=0.3, which="both")
        ax_d.legend(fontsize=7)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"plot_runs.py: wrote {args.out} ({len(runs)} run{'s' if len(runs) != 1 else ''})", file=sys.stderr)


if __name__ == "__main__":
    main()
