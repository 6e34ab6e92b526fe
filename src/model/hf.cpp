// Reading Hugging Face GPT-2 / LLaMA directories into our models, the config.json mapping both
// ways, and model.init_from (see llmtrain/hf.h).
#include "llmtrain/hf.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "llmtrain/error.h"
#include "llmtrain/json_float.h"
#include "llmtrain/safetensors.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace llmtrain {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string brief(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// Typed reads of HF config keys: a missing key takes `def`; a wrong type names file and key.
struct HfKeys {
  const json& j;
  const std::string& file;
  const json* find(std::initializer_list<const char*> names) const {
    for (const char* n : names)
      if (j.contains(n) && !j[n].is_null()) return &j[n];
    return nullptr;
  }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw InputError(file + ": " + key + ": " + what);
  }
  int64_t integer(std::initializer_list<const char*> names, int64_t def, bool required = false) const {
    const json* v = find(names);
    if (!v) {
      if (required) fail(*names.begin(), "missing");
      return def;
    }
    if (!v->is_number_integer() || v->get<int64_t>() < 0) fail(*names.begin(), "expected a non-negative integer, got " + v->dump());
    return v->get<int64_t>();
  }
  double number(const char* name, double def) const {
    const json* v = find({name});
    if (!v) return def;
    if (!v->is_number()) fail(name, "expected a number, got " + v->dump());
    return v->get<double>();
  }
  bool boolean(const char* name, bool def) const {
    const json* v = find({name});
    if (!v) return def;
    if (!v->is_boolean()) fail(name, "expected true or false, got " + v->dump());
    return v->get<bool>();
  }
  std::string str(const char* name, const std::string& def) const {
    const json* v = find({name});
    if (!v) return def;
    if (!v->is_string()) fail(name, "expected a string, got " + v->dump());
    return v->get<std::string>();
  }
};

// The architecture keys of a model section and their resolved values: what init_from fills in and
// compares. padded_vocab_size and init_std are ours alone (they do not change the HF model).
json arch_json(const ModelConfig& m) {
  return json{{"arch", m.arch},
              {"n_layer", m.n_layer},
              {"n_embd", m.n_embd},
              {"n_head", m.n_head},
              {"n_kv_head", m.kv_heads()},
              {"vocab_size", m.vocab_size},
              {"max_seq_len", m.max_seq_len},
              {"intermediate_size", m.intermediate_size},
              {"bias", m.bias},
              {"tie_embeddings", m.tie_embeddings},
              {"norm_eps", json_float(m.norm_eps)},
              {"rope_theta", json_float(m.rope_theta)},
              {"scale_attn_by_inverse_layer_idx", m.scale_attn_by_inverse_layer_idx}};
}

// The HF config key behind each of our architecture keys, for error messages.
std::string hf_key(const std::string& ours, bool llama) {
  static const std::map<std::string, std::pair<const char*, const char*>> k{
      {"arch", {"model_type", "model_type"}},
      {"n_layer", {"n_layer", "num_hidden_layers"}},
      {"n_embd", {"n_embd", "hidden_size"}},
      {"n_head", {"n_head", "num_attention_heads"}},
      {"n_kv_head", {"n_head", "num_key_value_heads"}},
      {"vocab_size", {"vocab_size", "vocab_size"}},
      {"max_seq_len", {"n_positions", "max_position_embeddings"}},
      {"intermediate_size", {"n_inner", "intermediate_size"}},
      {"bias", {"bias", "attention_bias"}},
      {"tie_embeddings", {"tie_word_embeddings", "tie_word_embeddings"}},
      {"norm_eps", {"layer_norm_epsilon", "rms_norm_eps"}},
      {"rope_theta", {"rope_theta", "rope_theta"}},
      {"scale_attn_by_inverse_layer_idx", {"scale_attn_by_inverse_layer_idx", "scale_attn_by_inverse_layer_idx"}}};
  auto it = k.find(ours);
  return it == k.end() ? ours : (llama ? it->second.second : it->second.first);
}

const std::string& init_from_dir(const json& section, const std::string& file) {
  const json& v = section.at("init_from");
  if (!v.is_string() || v.get_ref<const std::string&>().empty())
    throw InputError(file + ": model.init_from: expected the path of a Hugging Face model directory, got " + v.dump());
  return v.get_ref<const std::string&>();
}

// Tensor name -> the safetensors file holding it, for one file or an index of shards.
class HfTensors {
 public:
  explicit HfTensors(const std::string& dir) {
    const fs::path single = fs::path(dir) / "model.safetensors", index = fs::path(dir) / "model.safetensors.index.json";
    if (fs::exists(single)) {
      open(single.string());
      return;
    }
    if (!fs::exists(index))
      throw InputError(dir + ": no model.safetensors or model.safetensors.index.json (only safetensors weights are read)");
    json j;
    try {
      std::ifstream f(index);
      j = json::parse(f);
    } catch (const json::exception& e) {
      throw InputError(index.string() + ": invalid JSON: " + e.what());
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw InputError(index.string() + ": no \"weight_map\" object");
    std::map<std::string, size_t> shard_of;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw InputError(index.string() + ": weight_map." + it.key() + ": expected a file name");
      const std::string f = it.value().get<std::string>();
      if (!shard_of.count(f)) shard_of[f] = open((fs::path(dir) / f).string());
      const SafetensorsReader& r = *readers_[shard_of[f]];
      if (!r.contains(it.key())) throw InputError(r.path() + ": no tensor " + it.key() + " (listed in " + index.string() + ")");
    }
  }
  const std::map<std::string, const SafetensorsReader*>& by_name() const { return where_; }

 private:
  size_t open(const std::string& path) {
    readers_.push_back(std::make_unique<SafetensorsReader>(path));
    for (const auto& n : readers_.back()->names()) {
      if (where_.count(n)) throw InputError(path + ": tensor " + n + " is also in " + where_[n]->path());
      where_[n] = readers_.back().get();
    }
    return readers_.size() - 1;
  }
  std::vector<std::unique_ptr<SafetensorsReader>> readers_;
  std::map<std::string, const SafetensorsReader*> where_;
};

// Buffers HF models carry that are not parameters.
bool is_ignored_buffer(const std::string& name) {
  return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias") || ends_with(name, ".rotary_emb.inv_freq");
}

}  // namespace

bool is_hf_conv1d(const ModelConfig& c, const ParamInfo& p) {
  if (c.is_llama() || p.shape.size() != 2) return false;
  return ends_with(p.name, "attn.c_attn.weight") || ends_with(p.name, "attn.c_proj.weight") ||
         ends_with(p.name, "mlp.c_fc.weight") || ends_with(p.name, "mlp.c_proj.weight");
}

bool has_vocab_rows(const ParamInfo& p) {
  return (p.role == ParamRole::embedding && p.name != "transformer.wpe.weight") || p.role == ParamRole::lm_head;
}

json hf_config_json(const ModelConfig& c, const HfTokenIds& ids) {
  auto id = [](int32_t v) { return v >= 0 ? json(v) : json(nullptr); };
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
           {"layer_norm_epsilon", json_float(c.norm_eps)},
           {"scale_attn_weights", true},
           {"scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx},
           {"tie_word_embeddings", c.tie_embeddings},
           {"initializer_range", json_float(c.init_std)},
           // Dropout is a training choice of the HF side; ours trains without it.
           {"attn_pdrop", 0.0},
           {"embd_pdrop", 0.0},
           {"resid_pdrop", 0.0}};
    // HF GPT-2 always has biases: a bias-free model is exported with zero biases, and this key (not
    // an HF one) lets us read it back as bias-free.
    if (!c.bias) cfg["bias"] = false;
  } else {
    cfg = {{"architectures", {"LlamaForCausalLM"}},
           {"model_type", "llama"},
           {"vocab_size", c.vocab_size},
           {"hidden_size", c.n_embd},
           {"intermediate_size", c.intermediate_size},
           {"num_hidden_layers", c.n_layer},
           {"num_attention_heads", c.n_head},
           {"num_key_value_heads", c.kv_heads()},
           {"head_dim", c.head_size()},
           {"max_position_embeddings", c.max_seq_len},
           {"rms_norm_eps", json_float(c.norm_eps)},
           {"rope_theta", json_float(c.rope_theta)},
           {"rope_scaling", nullptr},
           {"hidden_act", "silu"},
           {"attention_bias", false},
           {"mlp_bias", false},
           {"attention_dropout", 0.0},
           {"tie_word_embeddings", c.tie_embeddings},
           {"initializer_range", json_float(c.init_std)}};
  }
  cfg["bos_token_id"] = id(ids.bos);
  cfg["eos_token_id"] = id(ids.eos);
  cfg["pad_token_id"] = id(ids.pad);
  cfg["torch_dtype"] = "float32";
  return cfg;
}

ModelConfig model_config_from_hf(const json& hf, const std::string& file) {
  if (!hf.is_object()) throw InputError(file + ": expected a JSON object");
  HfKeys k{hf, file};
  const std::string type = k.str("model_type", "");
  ModelConfig m;
  if (type == "gpt2") {
    m.arch = "gpt2";
    m.n_layer = (int)k.integer({"n_layer", "num_hidden_layers"}, 0, true);
    m.n_embd = (int)k.integer({"n_embd", "hidden_size"}, 0, true);
    m.n_head = (int)k.integer({"n_head", "num_attention_heads"}, 0, true);
    m.vocab_size = (int)k.integer({"vocab_size"}, 50257);
    m.max_seq_len = (int)k.integer({"n_positions", "max_position_embeddings"}, 1024);
    m.intermediate_size = (int)k.integer({"n_inner"}, 4 * (int64_t)m.n_embd);
    m.norm_eps = (float)k.number("layer_norm_epsilon", 1e-5);
    m.scale_attn_by_inverse_layer_idx = k.boolean("scale_attn_by_inverse_layer_idx", false);
    m.tie_embeddings = k.boolean("tie_word_embeddings", true);
    m.bias = k.boolean("bias", true);
    m.init_std = (float)k.number("initializer_range", 0.02);
    const std::string act = k.str("activation_function", "gelu_new");
    // All three are GELU's tanh approximation, the one our kernels compute.
    if (act != "gelu_new" && act != "gelu_pytorch_tanh" && act != "gelu_fast")
      k.fail("activation_function", "\"" + act + "\" is not supported (GELU with the tanh approximation: gelu_new)");
    if (!k.boolean("scale_attn_weights", true)) k.fail("scale_attn_weights", "false is not supported");
    if (k.boolean("add_cross_attention", false)) k.fail("add_cross_attention", "cross-attention is not supported");
  } else if (type == "llama") {
    m.arch = "llama";
    m.n_layer = (int)k.integer({"num_hidden_layers"}, 0, true);
    m.n_embd = (int)k.integer({"hidden_size"}, 0, true);
    m.n_head = (int)k.integer({"num_attention_heads"}, 0, true);
    m.n_kv_head = (int)k.integer({"num_key_value_heads"}, m.n_head);
    if (m.n_kv_head == m.n_head) m.n_kv_head = 0;  // our spelling of "no grouping"
    m.vocab_size = (int)k.integer({"vocab_size"}, 32000);
    m.max_seq_len = (int)k.integer({"max_position_embeddings"}, 2048);
    m.intermediate_size = (int)k.integer({"intermediate_size"}, 0, true);
    m.norm_eps = (float)k.number("rms_norm_eps", 1e-6);
    m.rope_theta = (float)k.number("rope_theta", 10000.0);
    m.tie_embeddings = k.boolean("tie_word_embeddings", false);
    m.bias = false;
    m.init_std = (float)k.number("initializer_range", 0.02);
    const std::string act = k.str("hidden_act", "silu");
    if (act != "silu") k.fail("hidden_act", "\"" + act + "\" is not supported (SwiGLU: silu)");
    if (k.boolean("attention_bias", false)) k.fail("attention_bias", "biases are not supported in LLaMA");
    if (k.boolean("mlp_bias", false)) k.fail("mlp_bias", "biases are not supported in LLaMA");
    if (const json* rs = k.find({"rope_scaling"})) k.fail("rope_scaling", rs->dump() + " is not supported (plain RoPE only)");
    if (m.n_head > 0 && m.n_embd % m.n_head == 0) {
      const int64_t hd = k.integer({"head_dim"}, m.n_embd / m.n_head);
      if (hd != m.n_embd / m.n_head)
        k.fail("head_dim", std::to_string(hd) + " is not supported (only hidden_size / num_attention_heads = " +
                               std::to_string(m.n_embd / m.n_head) + ")");
    }
  } else {
    k.fail("model_type", (type.empty() ? std::string("missing") : "\"" + type + "\"") + ": only gpt2 and llama are supported");
  }
  const bool llama = m.is_llama();
  if (m.n_layer < 1) k.fail(hf_key("n_layer", llama), "must be at least 1");
  if (m.n_head < 1 || m.n_embd % m.n_head != 0)
    k.fail(hf_key("n_head", llama), std::to_string(m.n_head) + " does not divide " + hf_key("n_embd", llama) + " " +
                                        std::to_string(m.n_embd));
  if (m.n_kv_head > 0 && m.n_head % m.n_kv_head != 0)
    k.fail("num_key_value_heads", std::to_string(m.n_kv_head) + " does not divide num_attention_heads " + std::to_string(m.n_head));
  if (llama && m.head_size() % 2 != 0) k.fail("hidden_size", "RoPE needs an even head size");
  if (m.vocab_size < 2) k.fail("vocab_size", "must be at least 2");
  if (m.max_seq_len < 1) k.fail(hf_key("max_seq_len", llama), "must be at least 1");
  if (m.intermediate_size < 1) k.fail(hf_key("intermediate_size", llama), "must be at least 1");
  m.padded_vocab_size = (m.vocab_size + 127) / 128 * 128;
  return m;
}

HfTokenIds token_ids_from_hf(const json& hf) {
  auto id = [&](const char* key) -> int32_t {
    if (!hf.contains(key)) return -1;
    const json& v = hf[key];
    if (v.is_number_integer()) return v.get<int32_t>();
    if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int32_t>();  // a list of eos ids
    return -1;
  };
  return {id("bos_token_id"), id("eos_token_id"), id("pad_token_id")};
}

bool is_hf_model_dir(const std::string& dir) {
  std::error_code ec;
  const fs::path d(dir);
  return fs::is_regular_file(d / "config.json", ec) &&
         (fs::is_regular_file(d / "model.safetensors", ec) || fs::is_regular_file(d / "model.safetensors.index.json", ec));
}

json read_hf_config_json(const std::string& dir) {
  const std::string path = (fs::path(dir) / "config.json").string();
  std::ifstream f(path);
  if (!f) throw InputError(path + ": cannot open (not a Hugging Face model directory?)");
  try {
    return json::parse(f);
  } catch (const json::parse_error& e) {
    throw InputError(path + ": invalid JSON: " + e.what());
  }
}

void read_hf_weights(const std::string& dir, const Model& model, float* host) {
  const ModelConfig& c = model.config();
  HfTensors files(dir);
  // HF name -> our name (OpenAI's GPT-2 files name the tensors of GPT2Model without "transformer.").
  std::map<std::string, std::string> ours_of;
  for (const auto& [name, reader] : files.by_name()) {
    std::string ours = name;
    if (!c.is_llama() && name.rfind("transformer.", 0) != 0 && name != "lm_head.weight") ours = "transformer." + name;
    ours_of[name] = ours;
  }
  std::map<std::string, std::string> hf_of;
  for (const auto& [hf, ours] : ours_of) hf_of[ours] = hf;

  std::vector<float> buf;
  for (const auto& p : model.layout().params()) {
    float* dst = host + p.offset;
    auto it = hf_of.find(p.name);
    if (it == hf_of.end())
      throw InputError(dir + ": no tensor " + p.name + " in the model files (config.json describes a model that has it)");
    const SafetensorsReader& r = *files.by_name().at(it->second);
    const SafetensorsEntry& e = r.get(it->second);
    std::vector<int64_t> want = p.shape;
    if (has_vocab_rows(p)) want[0] = c.vocab_size;
    const bool conv = is_hf_conv1d(c, p);
    if (conv) want = {p.shape[1], p.shape[0]};
    if (e.shape != want)
      throw InputError(r.path() + ": tensor " + it->second + " has shape " + shape_str(e.shape) + ", config.json implies " +
                       shape_str(want));
    const size_t n = (size_t)e.numel();
    if (conv) {
      buf.resize(n);
      r.read_f32(it->second, buf.data(), n);
      const int64_t R = p.shape[0], K = p.shape[1];  // ours [R, K] = HF [K, R] transposed
      for (int64_t i = 0; i < K; ++i)
        for (int64_t j = 0; j < R; ++j) dst[(size_t)j * K + i] = buf[(size_t)i * R + j];
    } else {
      r.read_f32(it->second, dst, n);
      if (n < p.numel) std::fill(dst + n, dst + p.numel, 0.0f);  // padded vocabulary rows
    }
  }
  // Tensors the model has no place for: zero biases of a bias-free GPT-2 export, a tied lm_head
  // stored anyway (both must hold what the model implies), buffers; anything else is an error.
  for (const auto& [hf, ours] : ours_of) {
    if (model.layout().contains(ours) || is_ignored_buffer(hf)) continue;
    const SafetensorsReader& r = *files.by_name().at(hf);
    const size_t n = (size_t)r.get(hf).numel();
    buf.resize(n);
    const std::string weight = ends_with(ours, ".bias") ? ours.substr(0, ours.size() - 4) + "weight" : "";
    if (!c.is_llama() && !c.bias && !weight.empty() && model.layout().contains(weight) &&
        r.get(hf).shape == std::vector<int64_t>{model.layout().find(weight).rows()}) {
      r.read_f32(hf, buf.data(), n);
      for (float v : buf)
        if (v != 0.0f)
          throw InputError(r.path() + ": tensor " + hf + " holds non-zero values but config.json says \"bias\": false "
                           "(remove that key to load the model with its biases)");
      continue;
    }
    if (ours == "lm_head.weight" && c.tie_embeddings) {
      const ParamInfo& wte = model.layout()[(size_t)model.index().wte];
      if (n == (size_t)c.vocab_size * (size_t)wte.cols()) {
        r.read_f32(hf, buf.data(), n);
        if (std::equal(buf.begin(), buf.end(), host + wte.offset)) continue;
      }
      throw InputError(r.path() + ": tensor " + hf + " differs from the token embeddings, but config.json says "
                       "tie_word_embeddings is true");
    }
    throw InputError(r.path() + ": tensor " + hf + " has no place in the model config.json describes");
  }
}

HfModel load_hf_model(const std::string& dir) {
  const json j = read_hf_config_json(dir);
  HfModel h;
  h.config = model_config_from_hf(j, (fs::path(dir) / "config.json").string());
  h.ids = token_ids_from_hf(j);
  Model model(h.config);
  h.weights.assign(model.num_params(), 0.0f);
  read_hf_weights(dir, model, h.weights.data());
  return h;
}

json hf_model_section(const json& section, const std::string& file) {
  const std::string& dir = init_from_dir(section, file);
  ModelConfig m;
  try {
    m = model_config_from_hf(read_hf_config_json(dir), (fs::path(dir) / "config.json").string());
  } catch (const InputError& e) {
    throw InputError(file + ": model.init_from: " + e.what());
  }
  json out = arch_json(m);
  // The architecture decides which other keys are valid: a conflict there is reported first.
  if (section.contains("arch") && section["arch"] != out["arch"])
    throw InputError(file + ": model.arch: " + brief(section["arch"]) + ", but model.init_from " +
                     (fs::path(dir) / "config.json").string() + " has " + brief(out["arch"]) + " (model_type)");
  out["n_kv_head"] = m.n_kv_head;  // 0 without grouping: GPT-2 sections may not set it
  out["init_std"] = json_float(m.init_std);
  for (auto it = section.begin(); it != section.end(); ++it) out[it.key()] = it.value();  // the run's keys win
  return out;
}

void check_init_from(const ModelConfig& run, const json& section, const std::string& file) {
  const std::string& dir = init_from_dir(section, file);
  const std::string path = (fs::path(dir) / "config.json").string();
  const ModelConfig hf = model_config_from_hf(read_hf_config_json(dir), path);
  const json a = arch_json(run), b = arch_json(hf);
  for (auto it = a.begin(); it != a.end(); ++it) {
    if (!section.contains(it.key()) || it.value() == b[it.key()]) continue;
    // The value as written (n_kv_head 0 compares as n_head, intermediate_size 0 as its rule).
    throw InputError(file + ": model." + it.key() + ": " + brief(section[it.key()]) + ", but model.init_from " + path +
                     " has " + brief(b[it.key()]) + " (" + hf_key(it.key(), hf.is_llama()) + ")");
  }
}

void init_run_params(const RunConfig& cfg, const Model& model, float* host) {
  if (cfg.model.init_from.empty()) {
    model.init_params(host, cfg.run.seed);
    return;
  }
  // The config was checked against the HF config.json at load; the weights are read into this
  // model's layout (whatever padded_vocab_size the run chose).
  std::fill(host, host + model.num_params(), 0.0f);
  read_hf_weights(cfg.model.init_from, model, host);
}

}  // namespace llmtrain
