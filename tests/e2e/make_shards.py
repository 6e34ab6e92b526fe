#!/usr/bin/env python3
"""Writes small llm.c-format shards for the end-to-end tests (stdlib only).

Tokens come from a seeded order-2 Markov chain over a small vocabulary so that a tiny model has
something to learn; documents start with the delimiter token 0.
usage: make_shards.py OUT_DIR NAME VOCAB TRAIN_TOKENS VAL_TOKENS [--bad-magic|--truncate|--uint32]
"""
import random
import struct
import sys


def write_shard(path, tokens, magic=20240520, version=1, truncate=False):
    header = [0] * 256
    header[0], header[1], header[2] = magic, version, len(tokens)
    fmt = "<%dH" if version == 1 else "<%dI"
    data = struct.pack("<256i", *header) + struct.pack(fmt % len(tokens), *tokens)
    if truncate:
        data = data[: len(data) - 2 * max(1, len(tokens) // 3)]
    with open(path, "wb") as f:
        f.write(data)


def stream(vocab, n, seed):
    rng = random.Random(seed)
    table = {}
    out, a, b = [], 0, 0
    while len(out) < n:
        if rng.random() < 0.01:
            out.append(0)  # document delimiter
            a, b = 0, 0
            continue
        key = (a, b)
        if key not in table:
            table[key] = [rng.randrange(1, vocab) for _ in range(3)]
        nxt = rng.choice(table[key]) if rng.random() < 0.9 else rng.randrange(1, vocab)
        out.append(nxt)
        a, b = b, nxt
    out[0] = 0
    return out


def main():
    out_dir, name, vocab, ntrain, nval = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    flags = set(sys.argv[6:])
    version = 7 if "--uint32" in flags else 1
    magic = 20240801 if version == 7 else 20240520
    if "--bad-magic" in flags:
        magic = 12345
    write_shard(f"{out_dir}/{name}_val_000000.bin", stream(vocab, nval, 1), magic, version)
    write_shard(f"{out_dir}/{name}_train_000001.bin", stream(vocab, ntrain, 2), magic, version,
                truncate="--truncate" in flags)


if __name__ == "__main__":
    main()
