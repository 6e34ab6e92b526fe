// Hugging Face export: HF config.json and model.safetensors (vocab trimmed, Conv1D transposed).
#include "tools/export.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmtrain/safetensors.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace llmtrain {

bool is_hf_conv1d(const Model& model, const ParamInfo& p) {
  if (model.config().is_llama() || p.shape.size() != 2) return false;
  auto ends = [&](const std::string& s) {
    return p.name.size() >= s.size() && p.name.compare(p.name.size() - s.size(), s.size(), s) == 0;
  };
  return ends("attn.c_attn.weight") || ends("attn.c_proj.weight") || ends("mlp.c_fc.weight") ||
         ends("mlp.c_proj.weight");
}

void export_hf(const std::string& out_dir, const Model& model, const float* host) {
  const ModelConfig& c = model.config();
  fs::create_directories(out_dir);
  std::vector<std::vector<float>> storage;
  std::vector<SafetensorsEntry> ts;
  for (const auto& p : model.layout().params()) {
    const float* src = host + p.offset;
    std::vector<int64_t> shape = p.shape;
    bool vocab = (p.role == ParamRole::embedding && p.name != "transformer.wpe.weight") || p.role == ParamRole::lm_head;
    if (vocab) shape[0] = c.vocab_size;  // drop the padding rows (row-major: a prefix)
    if (is_hf_conv1d(model, p)) {
      const int64_t R = p.shape[0], K = p.shape[1];
      storage.emplace_back((size_t)R * K);
      auto& t = storage.back();
      for (int64_t i = 0; i < R; ++i)
        for (int64_t j = 0; j < K; ++j) t[(size_t)j * R + i] = src[(size_t)i * K + j];
      src = t.data();
      shape = {K, R};
    }
    size_t n = 1;
    for (auto d : shape) n *= (size_t)d;
    ts.push_back({p.name, DType::F32, shape, src, n * sizeof(float)});
  }
  write_safetensors((fs::path(out_dir) / "model.safetensors").string(), ts, {{"format", "pt"}});

  json cfg;
  if (!c.is_llama()) {
    cfg = {{"architectures", {"GPT2LMHeadModel"}},
           {"model_type", "gpt2"},
           {"vocab_size", c.vocab_size},
           {"n_positions", c.max_seq_len},
           {"n_ctx", c.max_seq_len},
           {"n_embd", c.n_embd},
           {"n_layer", c.n_layer},
           {"n_head", c.n_head},
           {"n_inner", c.intermediate_size},
           {"activation_function", "gelu_new"},
           {"layer_norm_epsilon", c.norm_eps},
           {"scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx},
           {"tie_word_embeddings", c.tie_embeddings},
           {"bias", c.bias},
           {"initializer_range", c.init_std},
           {"bos_token_id", 50256},
           {"eos_token_id", 50256}};
  } else {
    cfg = {{"architectures", {"LlamaForCausalLM"}},
           {"model_type", "llama"},
           {"vocab_size", c.vocab_size},
           {"hidden_size", c.n_embd},
           {"intermediate_size", c.intermediate_size},
           {"num_hidden_layers", c.n_layer},
           {"num_attention_heads", c.n_head},
           {"num_key_value_heads", c.kv_heads()},
           {"max_position_embeddings", c.max_seq_len},
           {"rms_norm_eps", c.norm_eps},
           {"rope_theta", c.rope_theta},
           {"hidden_act", "silu"},
           {"tie_word_embeddings", c.tie_embeddings},
           {"initializer_range", c.init_std}};
  }
  std::ofstream(fs::path(out_dir) / "config.json") << cfg.dump(2) << "\n";
}

}  // namespace llmtrain
