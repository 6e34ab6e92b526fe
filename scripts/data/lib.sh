# Shared by the dataset recipes in scripts/data/: paths, the llmtrain binary, and a resumable,
# parallel downloader (curl). Sourced, not run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LLMTRAIN=${LLMTRAIN:-$ROOT/build/llmtrain}
DATA=${DATA:-$ROOT/data}         # shards go to $DATA/<corpus>/, where the configs look
RAW=${RAW:-$DATA/raw}            # downloads go here (tens to hundreds of GB)
JOBS=${JOBS:-8}                  # parallel downloads
HF=${HF_ENDPOINT:-https://huggingface.co}

need() { command -v "$1" >/dev/null || { echo "$(basename "$0"): needs $1" >&2; exit 2; }; }
need curl
[ -x "$LLMTRAIN" ] || { echo "$(basename "$0"): $LLMTRAIN not found; build first or set LLMTRAIN=..." >&2; exit 2; }

# fetch URL DEST: downloads to DEST.part (continuing a partial one) and renames when complete, so
# an existing DEST is always whole and is skipped on a rerun. $HF_TOKEN is sent when set.
fetch() {
  local url="$1" dest="$2"
  [ -s "$dest" ] && return 0
  mkdir -p "$(dirname "$dest")"
  local auth=()
  [ -n "${HF_TOKEN:-}" ] && auth=(-H "Authorization: Bearer $HF_TOKEN")
  curl -fL --retry 8 --retry-delay 10 --retry-all-errors -C - -sS "${auth[@]}" -o "$dest.part" "$url"
  mv "$dest.part" "$dest"
  echo "  got $dest"
}
export -f fetch

# fetch_all DIR < "URL NAME" lines: JOBS downloads at a time into DIR.
fetch_all() {
  local dir="$1"
  mkdir -p "$dir"
  export HF_TOKEN="${HF_TOKEN:-}"
  xargs -P "$JOBS" -L 1 bash -c 'fetch "$0" "'"$dir"'/$1"'
}
