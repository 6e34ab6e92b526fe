// Hugging Face model directories (config.json + model.safetensors, or shards listed in
// model.safetensors.index.json): what maps between them and our models, and reading one in. HF
// names are our names; what differs is GPT-2's Conv1D weights (HF stores [in, out], we store
// [out, in]), the vocabulary rows (HF has vocab_size, we pad to padded_vocab_size with zero rows),
// and GPT-2 biases (HF GPT-2 always has them; our bias-free GPT-2 exports them as zeros and says
// "bias": false in config.json, which is not an HF key, so HF ignores it and we read it back).
// Writing a directory is the export tool's job (src/train/export.h); reading is here, in the core,
// because training can start from one (model.init_from).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmtrain/config.h"
#include "llmtrain/model.h"

namespace llmtrain {

// Token ids an HF config carries; -1 where there is none.
struct HfTokenIds {
  int32_t bos = -1, eos = -1, pad = -1;
};

// True for the GPT-2 Conv1D weights (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) that HF
// stores as [in, out].
bool is_hf_conv1d(const ModelConfig& c, const ParamInfo& p);
// True for the tensors with one row per vocabulary entry (token embeddings, untied lm_head): HF
// holds vocab_size rows, we hold padded_vocab_size.
bool has_vocab_rows(const ParamInfo& p);

// config.json of an HF model: GPT2Config or LlamaConfig fields, floats as their shortest decimals.
nlohmann::json hf_config_json(const ModelConfig& c, const HfTokenIds& ids);
// The model an HF config.json describes (`file` names it in errors). InputError naming the key for
// what our models cannot represent (another model_type, rope_scaling, biases in LLaMA, ...).
ModelConfig model_config_from_hf(const nlohmann::json& hf, const std::string& file);
HfTokenIds token_ids_from_hf(const nlohmann::json& hf);

// True if dir has a config.json and model.safetensors or model.safetensors.index.json.
bool is_hf_model_dir(const std::string& dir);
// dir/config.json, parsed (InputError naming the file when missing or not JSON).
nlohmann::json read_hf_config_json(const std::string& dir);

// Reads the weights of HF directory `dir` into `host` in `model`'s layout (Conv1D transposed back,
// vocabulary rows padded with zeros), converting F16/BF16/F64 to fp32. Every tensor the model needs
// must be there with its HF shape; a tensor the model has no place for is an InputError, except the
// causal-mask buffers old GPT-2 files carry (h.N.attn.bias, h.N.attn.masked_bias) and LLaMA's
// rotary_emb.inv_freq. GPT-2 names may lack the "transformer." prefix (as in OpenAI's files).
void read_hf_weights(const std::string& dir, const Model& model, float* host);

struct HfModel {
  ModelConfig config;
  std::vector<float> weights;  // Model(config)'s layout
  HfTokenIds ids;
};
// config.json + weights of an HF GPT-2 or LLaMA directory.
HfModel load_hf_model(const std::string& dir);

// model.init_from during config parsing. `section` is the run's model section as written (preset
// expanded); hf_model_section() returns it with every architecture key it leaves out filled from
// dir's config.json, and check_init_from() then compares every architecture key the run did set
// (resolved value `run`) with the HF one: InputError "<file>: model.<key>: <run value>, but
// <dir>/config.json has <hf value>".
nlohmann::json hf_model_section(const nlohmann::json& section, const std::string& file);
void check_init_from(const ModelConfig& run, const nlohmann::json& section, const std::string& file);

// The weights a run starts from: model.init_from's when set, else the seeded initialisation.
void init_run_params(const RunConfig& cfg, const Model& model, float* host);

}  // namespace llmtrain
