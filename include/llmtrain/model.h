// Model description: the parameter layout of a GPT-2 or LLaMA model (HF names, [out,in] matrices,
// roles) over one contiguous fp32 buffer, its seeded initialisation (identical on every backend,
// since it is computed on the host with our own portable RNG), and FLOP counts for MFU.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "llmtrain/config.h"
#include "llmtrain/params.h"

namespace llmtrain {

// Indices into the layout for one transformer block. -1 where the architecture has no such tensor.
struct BlockParams {
  // GPT-2
  int ln1_w = -1, ln1_b = -1, qkv_w = -1, qkv_b = -1, attn_proj_w = -1, attn_proj_b = -1;
  int ln2_w = -1, ln2_b = -1, fc_w = -1, fc_b = -1, fc_proj_w = -1, fc_proj_b = -1;
  // LLaMA
  int q_w = -1, k_w = -1, v_w = -1, o_w = -1, gate_w = -1, up_w = -1, down_w = -1;
};

struct ModelParams {
  int wte = -1, wpe = -1, lnf_w = -1, lnf_b = -1, lm_head = -1;  // lm_head == -1 when tied
  std::vector<BlockParams> blocks;
};

class Model {
 public:
  explicit Model(const ModelConfig& cfg);
  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  const ModelParams& index() const { return idx_; }
  size_t num_params() const { return layout_.total(); }
  // Parameter count without the padded vocabulary rows (what a Hugging Face model would report).
  size_t num_params_unpadded() const;
  // N(0, init_std) for matrices and embeddings, init_std/sqrt(2L) for residual projections,
  // zeros for biases and padded vocabulary rows, ones for norm gains.
  void init_params(float* params, uint64_t seed) const;
  // Training FLOPs per token with the llm.c formula 6N + 6*L*C*T (N = all parameters, as llm.c counts).
  double flops_per_token(int T) const;
  // Offset of transformer block l's first tensor (blocks are contiguous in the layout, between the
  // embeddings and the final norm); block_begin(n_layer) is where the tensors after the blocks start.
  size_t block_begin(int l) const { return block_begin_.at((size_t)l); }

 private:
  ModelConfig cfg_;
  ParamLayout layout_;
  ModelParams idx_;
  std::vector<size_t> block_begin_;  // n_layer + 1 offsets
};

}  // namespace llmtrain
