// Export to a Hugging Face model directory: config.json (GPT2Config / LlamaConfig fields) and
// model.safetensors in HF layout: vocabulary rows trimmed to vocab_size, and GPT-2's Conv1D
// weights (c_attn, c_proj, c_fc) transposed to [in, out] — the only tensors whose layout differs.
#pragma once
#include <string>

#include "llmtrain/model.h"

namespace llmtrain {

void export_hf(const std::string& out_dir, const Model& model, const float* host_params);
// True for the GPT-2 Conv1D weights that HF stores as [in, out].
bool is_hf_conv1d(const Model& model, const ParamInfo& p);

}  // namespace llmtrain
