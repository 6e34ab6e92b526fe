#!/usr/bin/env bash
# Regenerates the SentencePiece test fixture tests/fixtures/spm/: tiny.model, a 1000-piece BPE model
# with byte fallback and identity normalisation (the LLaMA recipe, in miniature) trained by Debian's spm_train on train.txt
# (sentences from public-domain State of the Union addresses, see data/demo/README.md), and
# sample.ids, the ids spm_encode gives for each line of sample.txt, which tests/test_tokenizer.cpp
# compares with our SentencePiece tokenizer. Also t5style.model (+ t5style.ids): a 500-piece unigram
# model with T5's special ids (pad 0, EOS 1, unk 2, no BOS), for the EOS-delimited case.
# Needs the `sentencepiece` package.
#   bash scripts/make_spm_fixture.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
D=$ROOT/tests/fixtures/spm
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
spm_train --input="$D/train.txt" --model_prefix="$WORK/tiny" --model_type=bpe --vocab_size=1000 \
  --character_coverage=1.0 --byte_fallback=true \
  --normalization_rule_name=identity --remove_extra_whitespaces=false --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 \
  --num_threads=1 --input_sentence_size=0 --shuffle_input_sentence=false --minloglevel=1
cp "$WORK/tiny.model" "$D/tiny.model"
spm_encode --model="$D/tiny.model" --output_format=id < "$D/sample.txt" > "$D/sample.ids"
spm_train --input="$D/train.txt" --model_prefix="$WORK/t5style" --model_type=unigram --vocab_size=500 \
  --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1 --normalization_rule_name=identity \
  --num_threads=1 --input_sentence_size=0 --shuffle_input_sentence=false --minloglevel=1
cp "$WORK/t5style.model" "$D/t5style.model"
spm_encode --model="$D/t5style.model" --output_format=id < "$D/sample.txt" > "$D/t5style.ids"
echo "wrote $D/t5style.model ($(stat -c %s "$D/t5style.model") bytes) and $D/t5style.ids"
echo "wrote $D/tiny.model ($(stat -c %s "$D/tiny.model") bytes) and $D/sample.ids"
