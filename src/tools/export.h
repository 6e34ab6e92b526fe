// Export to a Hugging Face model directory that transformers loads as is:
//   config.json             GPT2Config / LlamaConfig fields, bos/eos/pad ids, shortest-decimal floats
//   generation_config.json  the same token ids
//   model.safetensors       fp32, HF layout: vocabulary rows trimmed to vocab_size, GPT-2's Conv1D
//                           weights transposed to [in, out], zero biases for a bias-free GPT-2 (HF
//                           GPT-2 always has them), no lm_head when tied (HF re-ties it)
//   tokenizer files         GPT-2 BPE: vocab.json + merges.txt; SentencePiece: tokenizer.model; both
//                           with tokenizer_config.json (none when data.tokenizer cannot be loaded or
//                           does not fit the model's vocabulary)
// llmtrain/hf.h reads such a directory back (eval, generate, model.init_from).
#pragma once
#include <string>

#include "llmtrain/config.h"
#include "llmtrain/model.h"

namespace llmtrain {

struct HfExportResult {
  std::string tokenizer;  // what was written for the tokenizer ("" when nothing), for the report
};

HfExportResult export_hf(const std::string& out_dir, const RunConfig& cfg, const Model& model, const float* host_params);

}  // namespace llmtrain
