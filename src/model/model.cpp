// GPT-2 and LLaMA parameter layouts with Hugging Face names, seeded initialisation, FLOP counts.
#include "llmtrain/model.h"

#include <cmath>
#include <cstring>

#include "llmtrain/error.h"
#include "llmtrain/rng.h"

namespace llmtrain {

Model::Model(const ModelConfig& cfg) : cfg_(cfg) {
  const int64_t C = cfg.n_embd, L = cfg.n_layer, Vp = cfg.padded_vocab_size, H = cfg.intermediate_size;
  auto R = ParamRole::hidden_matrix;
  if (!cfg.is_llama()) {
    idx_.wte = (int)layout_.add("transformer.wte.weight", ParamRole::embedding, {Vp, C});
    idx_.wpe = (int)layout_.add("transformer.wpe.weight", ParamRole::embedding, {cfg.max_seq_len, C});
    for (int l = 0; l < L; ++l) {
      std::string p = "transformer.h." + std::to_string(l) + ".";
      BlockParams b;
      b.ln1_w = (int)layout_.add(p + "ln_1.weight", ParamRole::norm_gain, {C}, l);
      if (cfg.bias) b.ln1_b = (int)layout_.add(p + "ln_1.bias", ParamRole::bias, {C}, l);
      b.qkv_w = (int)layout_.add(p + "attn.c_attn.weight", R, {3 * C, C}, l);
      if (cfg.bias) b.qkv_b = (int)layout_.add(p + "attn.c_attn.bias", ParamRole::bias, {3 * C}, l);
      b.attn_proj_w = (int)layout_.add(p + "attn.c_proj.weight", R, {C, C}, l);
      if (cfg.bias) b.attn_proj_b = (int)layout_.add(p + "attn.c_proj.bias", ParamRole::bias, {C}, l);
      b.ln2_w = (int)layout_.add(p + "ln_2.weight", ParamRole::norm_gain, {C}, l);
      if (cfg.bias) b.ln2_b = (int)layout_.add(p + "ln_2.bias", ParamRole::bias, {C}, l);
      b.fc_w = (int)layout_.add(p + "mlp.c_fc.weight", R, {H, C}, l);
      if (cfg.bias) b.fc_b = (int)layout_.add(p + "mlp.c_fc.bias", ParamRole::bias, {H}, l);
      b.fc_proj_w = (int)layout_.add(p + "mlp.c_proj.weight", R, {C, H}, l);
      if (cfg.bias) b.fc_proj_b = (int)layout_.add(p + "mlp.c_proj.bias", ParamRole::bias, {C}, l);
      idx_.blocks.push_back(b);
    }
    idx_.lnf_w = (int)layout_.add("transformer.ln_f.weight", ParamRole::norm_gain, {C});
    if (cfg.bias) idx_.lnf_b = (int)layout_.add("transformer.ln_f.bias", ParamRole::bias, {C});
    if (!cfg.tie_embeddings) idx_.lm_head = (int)layout_.add("lm_head.weight", ParamRole::lm_head, {Vp, C});
  } else {
    const int64_t HS = cfg.head_size(), NH = cfg.n_head, NKV = cfg.kv_heads();
    idx_.wte = (int)layout_.add("model.embed_tokens.weight", ParamRole::embedding, {Vp, C});
    for (int l = 0; l < L; ++l) {
      std::string p = "model.layers." + std::to_string(l) + ".";
      BlockParams b;
      b.ln1_w = (int)layout_.add(p + "input_layernorm.weight", ParamRole::norm_gain, {C}, l);
      b.q_w = (int)layout_.add(p + "self_attn.q_proj.weight", R, {NH * HS, C}, l);
      b.k_w = (int)layout_.add(p + "self_attn.k_proj.weight", R, {NKV * HS, C}, l);
      b.v_w = (int)layout_.add(p + "self_attn.v_proj.weight", R, {NKV * HS, C}, l);
      b.o_w = (int)layout_.add(p + "self_attn.o_proj.weight", R, {C, NH * HS}, l);
      b.ln2_w = (int)layout_.add(p + "post_attention_layernorm.weight", ParamRole::norm_gain, {C}, l);
      b.gate_w = (int)layout_.add(p + "mlp.gate_proj.weight", R, {H, C}, l);
      b.up_w = (int)layout_.add(p + "mlp.up_proj.weight", R, {H, C}, l);
      b.down_w = (int)layout_.add(p + "mlp.down_proj.weight", R, {C, H}, l);
      idx_.blocks.push_back(b);
    }
    idx_.lnf_w = (int)layout_.add("model.norm.weight", ParamRole::norm_gain, {C});
    if (!cfg.tie_embeddings) idx_.lm_head = (int)layout_.add("lm_head.weight", ParamRole::lm_head, {Vp, C});
  }
  // Each block must be one contiguous range, in block order (the overlapped gradient reduction
  // relies on it): block l begins at its first tensor, block_begin(L) where the last block ends.
  block_begin_.assign((size_t)L + 1, layout_.total());
  int prev = -1;
  size_t blocks_end = 0;
  for (const auto& p : layout_.params()) {
    if (p.layer < 0) continue;
    if ((p.layer != prev && p.layer != prev + 1) || (prev >= 0 && p.offset != blocks_end))
      throw RuntimeError("model layout: " + p.name + " breaks the order of the transformer blocks");
    if (p.layer != prev) block_begin_[(size_t)p.layer] = p.offset;
    prev = p.layer;
    blocks_end = p.offset + p.numel;
  }
  if (prev != L - 1) throw RuntimeError("model layout: not every transformer block has tensors");
  if (L > 0) block_begin_[(size_t)L] = blocks_end;
}

size_t Model::num_params_unpadded() const {
  size_t n = 0;
  for (const auto& p : layout_.params()) {
    if ((p.role == ParamRole::embedding || p.role == ParamRole::lm_head) && p.name != "transformer.wpe.weight")
      n += (size_t)cfg_.vocab_size * (size_t)p.cols();  // real vocabulary rows only
    else
      n += p.numel;
  }
  return n;
}

static bool is_residual_projection(const std::string& name) {
  auto ends = [&](const char* s) {
    size_t n = std::strlen(s);
    return name.size() >= n && name.compare(name.size() - n, n, s) == 0;
  };
  return ends("attn.c_proj.weight") || ends("mlp.c_proj.weight") || ends("self_attn.o_proj.weight") ||
         ends("mlp.down_proj.weight");
}

void Model::init_params(float* params, uint64_t seed) const {
  const double std_base = cfg_.init_std;
  const double std_resid = cfg_.init_std / std::sqrt(2.0 * cfg_.n_layer);
  const auto& ps = layout_.params();
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < ps.size(); ++i) {
    const ParamInfo& p = ps[i];
    float* w = params + p.offset;
    if (p.role == ParamRole::norm_gain) {
      for (size_t j = 0; j < p.numel; ++j) w[j] = 1.0f;
      continue;
    }
    if (p.role == ParamRole::bias) {
      std::memset(w, 0, p.numel * sizeof(float));
      continue;
    }
    // One stream per tensor, keyed by its name's position: independent of thread scheduling.
    Rng rng(mix_seed(seed, i + 1));
    const double sd = is_residual_projection(p.name) ? std_resid : std_base;
    for (size_t j = 0; j < p.numel; ++j) w[j] = static_cast<float>(sd * rng.normal());
    if (p.role == ParamRole::embedding || p.role == ParamRole::lm_head) {
      if (p.name != "transformer.wpe.weight" && p.rows() > cfg_.vocab_size)
        std::memset(w + (size_t)cfg_.vocab_size * p.cols(), 0,
                    (size_t)(p.rows() - cfg_.vocab_size) * p.cols() * sizeof(float));
    }
  }
}

double Model::flops_per_token(int T) const {
  double N = (double)num_params();
  return 6.0 * N + 6.0 * cfg_.n_layer * cfg_.n_embd * (double)T;
}

}  // namespace llmtrain
