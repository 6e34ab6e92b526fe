#!/usr/bin/env python3
"""Makes a CUDA source compilable by g++ against tests/emu/cuda_emu.h (the CPU emulator).

Two rewrites, nothing else, and line numbers are kept (a #line directive names the original file,
so compiler errors, ASan and backtraces point at the real source):
  kernel<<<grid, block, smem, stream>>>(args)  ->  ::emu::launch(kernel, grid, block, smem, stream)(args)
      (the kernel expression may be qualified and carry template arguments: attn_fwd_kernel<HS>)
  extern __shared__ [__align__(n)] T name[];    ->  T* const name = static_cast<T*>(::emu::dynamic_smem());

usage: emu_rewrite.py INPUT OUTPUT
"""
import re
import sys

SMEM_RE = re.compile(
    r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?([A-Za-z_][\w:\s\*]*?)\s+(\w+)\s*\[\s*\]\s*;")


def kernel_start(src, end):
    """Start index of the kernel expression that ends just before src[end]."""
    i = end
    while i > 0 and src[i - 1].isspace():
        i -= 1
    if i > 0 and src[i - 1] == ">":  # template arguments: match the angle brackets backwards
        depth = 0
        while i > 0:
            i -= 1
            if src[i] == ">":
                depth += 1
            elif src[i] == "<":
                depth -= 1
                if depth == 0:
                    break
        while i > 0 and src[i - 1].isspace():
            i -= 1
    while i > 0 and (src[i - 1].isalnum() or src[i - 1] in "_:"):
        i -= 1
    return i


def rewrite_launches(src):
    out = []
    pos = 0
    while True:
        lt = src.find("<<<", pos)
        if lt < 0:
            out.append(src[pos:])
            return "".join(out)
        gt = src.find(">>>", lt)
        if gt < 0:
            raise SystemExit("emu_rewrite: unterminated <<< launch")
        start = kernel_start(src, lt)
        if start < pos or start == lt:
            raise SystemExit("emu_rewrite: cannot find the kernel name before <<<")
        out.append(src[pos:start])
        out.append("::emu::launch(" + src[start:lt].strip() + ", " + src[lt + 3:gt] + ")")
        pos = gt + 3


def main():
    src_path, dst_path = sys.argv[1], sys.argv[2]
    with open(src_path, encoding="utf-8") as f:
        src = f.read()
    src = SMEM_RE.sub(lambda m: "%s* const %s = static_cast<%s*>(::emu::dynamic_smem());"
                      % (m.group(1).strip(), m.group(2), m.group(1).strip()), src)
    src = rewrite_launches(src)
    with open(dst_path, "w", encoding="utf-8") as f:
        f.write('#line 1 "%s"\n' % src_path)
        f.write(src)


if __name__ == "__main__":
    main()
