#!/usr/bin/env python3
"""One OpenWebText subset tar (urlsf_subsetNN.tar: .xz archives of .txt documents) -> one .jsonl.gz
with a {"text": ...} line per document, archives and documents in name order. Standard library only.

    python3 scripts/data/owt_to_jsonl.py urlsf_subset00.tar urlsf_subset00.jsonl.gz
"""
import gzip
import io
import json
import sys
import tarfile


def main(src: str, dst: str) -> None:
    docs = 0
    with tarfile.open(src, "r") as outer, gzip.open(dst, "wt", encoding="utf-8", compresslevel=1) as out:
        members = sorted((m for m in outer.getmembers() if m.isfile() and m.name.endswith(".xz")), key=lambda m: m.name)
        for m in members:
            data = outer.extractfile(m).read()
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:xz") as inner:
                for t in sorted((t for t in inner.getmembers() if t.isfile()), key=lambda t: t.name):
                    text = inner.extractfile(t).read().decode("utf-8", errors="replace")
                    out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                    docs += 1
    print(f"{src}: {docs} documents -> {dst}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
