// Loading and validating run configs: JSON file with its "base" files merged underneath ->
// overrides -> model preset -> strict typed sections -> RunConfig, plus the resolved JSON (every
// default filled in, no "base") that the trainer prints at start and stores in each checkpoint.
#include "llmtrain/config.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "config/json_section.h"
#include "llmtrain/error.h"
#include "llmtrain/hf.h"
#include "llmtrain/json_float.h"
#include "llmtrain/optim.h"

namespace llmtrain {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Model presets are JSON files, configs/models/<name>.json, each a config fragment holding one
// "model" section (so a run config can also take one as its "base"). Searched in this order:
// $LLMTRAIN_CONFIG_DIR/models (an installed tree), the source tree's configs/models (a build runs
// without installing), ./configs/models.
std::vector<std::string> preset_dirs() {
  std::vector<std::string> dirs;
  if (const char* d = std::getenv("LLMTRAIN_CONFIG_DIR"); d && *d) dirs.push_back(std::string(d) + "/models");
#ifdef LLMTRAIN_SOURCE_DIR
  dirs.push_back(std::string(LLMTRAIN_SOURCE_DIR) + "/configs/models");
#endif
  dirs.push_back("configs/models");
  return dirs;
}

// A preset name is a file stem, never a path ("../x" must not reach outside the models folder).
bool is_preset_name(const std::string& n) {
  if (n.empty() || n[0] == '.') return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  return true;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

json parse_file(const std::string& path, const std::string& what) {
  std::ifstream f(path);
  if (!f) throw InputError(what + ": cannot open config file");
  try {
    return json::parse(f, nullptr, true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    throw InputError(what + ": invalid JSON: " + e.what());
  }
}

// Reads `path` and everything it inherits. `chain` holds the files that led here (for messages and
// cycle detection); each entry is the path as written relative to the working directory.
json load_with_bases(const std::string& path, std::vector<std::string>& chain) {
  std::error_code ec;
  const std::string id = fs::weakly_canonical(path, ec).string();
  for (const auto& c : chain)
    if (fs::weakly_canonical(c, ec).string() == id)
      throw InputError(join(chain, " -> ") + " -> " + path + ": base: inheritance cycle");
  const std::string where = chain.empty() ? path : join(chain, " -> ") + " -> " + path;
  json j = parse_file(path, where);
  if (!j.is_object()) throw InputError(where + ": expected a JSON object, got " + json_brief(j));
  json out = json::object();
  auto it = j.find("base");
  if (it != j.end()) {
    const json list = it->is_array() ? *it : json::array({*it});
    const bool ok = !list.empty() && std::all_of(list.begin(), list.end(), [](const json& b) {
      return b.is_string() && !b.get<std::string>().empty();
    });
    if (!ok)
      throw InputError(where + ": base: expected a config path or a non-empty list of paths, got " + json_brief(*it));
    chain.push_back(path);
    for (const auto& jb : list) {
      const fs::path b = jb.get<std::string>();
      const fs::path bp = b.is_absolute() ? b : (fs::path(path).parent_path() / b).lexically_normal();
      if (!fs::is_regular_file(bp, ec))
        throw InputError(where + ": base: cannot open " + bp.string() +
                         " (paths are relative to the file naming them)");
      out.merge_patch(load_with_bases(bp.string(), chain));
    }
    chain.pop_back();
    j.erase(it);
  }
  out.merge_patch(j);  // RFC 7386: objects merge, null deletes, anything else replaces
  return out;
}

ModelConfig parse_model(const json& jin, const std::string& file) {
  json j = jin;
  ModelConfig m;
  if (j.contains("preset")) {
    if (!j["preset"].is_string())
      throw InputError(file + ": model.preset: expected a string, got " + json_brief(j["preset"]));
    json base;
    std::string name = j["preset"].get<std::string>();
    if (!model_preset(name, base)) {
      std::string list;
      for (const auto& n : model_preset_names()) list += (list.empty() ? "" : ", ") + n;
      throw InputError(file + ": model.preset: unknown preset \"" + name + "\" (known: " + list +
                       "; searched " + join(preset_dirs(), ", ") + ")");
    }
    for (auto it = j.begin(); it != j.end(); ++it) base[it.key()] = it.value();  // explicit wins
    j = base;
  }
  // model.init_from: the architecture keys the section leaves out come from the HF config.json.
  const json section = j;
  if (j.contains("init_from")) j = hf_model_section(section, file);
  JsonSection s(j, "model", file);
  m.preset = s.get_str("preset", "");
  m.init_from = s.get_str("init_from", "");
  m.arch = s.get_enum("arch", "gpt2", {"gpt2", "llama"});
  const bool llama = m.arch == "llama";
  m.n_layer = (int)s.get_int("n_layer", 12, 1, 1024);
  m.n_embd = (int)s.get_int("n_embd", 768, 8, 1 << 16);
  m.n_head = (int)s.get_int("n_head", 12, 1, 4096);
  m.n_kv_head = (int)s.get_int("n_kv_head", 0, 0, 4096);
  m.vocab_size = (int)s.get_int("vocab_size", llama ? 32000 : 50257, 2, 1 << 24);
  m.padded_vocab_size = (int)s.get_int("padded_vocab_size", 0, 0, 1 << 24);
  m.max_seq_len = (int)s.get_int("max_seq_len", 1024, 1, 1 << 20);
  m.intermediate_size = (int)s.get_int("intermediate_size", 0, 0, 1 << 20);
  m.bias = s.get_bool("bias", !llama);
  m.tie_embeddings = s.get_bool("tie_embeddings", !llama);
  m.norm_eps = (float)s.get_num("norm_eps", llama ? 1e-6 : 1e-5, 0.0, 1.0);
  m.rope_theta = (float)s.get_num("rope_theta", 10000.0, 1.0, 1e9);
  m.scale_attn_by_inverse_layer_idx = s.get_bool("scale_attn_by_inverse_layer_idx", false);
  m.init_std = (float)s.get_num("init_std", 0.02, 0.0, 10.0);
  s.finish();

  if (m.n_embd % m.n_head != 0)
    s.fail("n_head", "n_embd (" + std::to_string(m.n_embd) + ") must be divisible by n_head (" +
                         std::to_string(m.n_head) + ")");
  if (m.n_kv_head != 0) {
    if (!llama) s.fail("n_kv_head", "grouped KV heads are a LLaMA option (arch is gpt2)");
    if (m.n_head % m.n_kv_head != 0)
      s.fail("n_kv_head", "n_head (" + std::to_string(m.n_head) + ") must be divisible by n_kv_head (" +
                              std::to_string(m.n_kv_head) + ")");
  }
  if (llama && m.head_size() % 2 != 0) s.fail("n_head", "RoPE needs an even head size");
  if (llama && m.bias) s.fail("bias", "LLaMA has no biases");
  if (llama && m.scale_attn_by_inverse_layer_idx)
    s.fail("scale_attn_by_inverse_layer_idx", "is a GPT-2 option (arch is llama)");
  if (m.padded_vocab_size == 0) m.padded_vocab_size = (m.vocab_size + 127) / 128 * 128;
  if (m.padded_vocab_size < m.vocab_size)
    s.fail("padded_vocab_size", "must be >= vocab_size (" + std::to_string(m.vocab_size) + ")");
  if (m.intermediate_size == 0) {
    if (llama) {
      int h = (8 * m.n_embd) / 3;
      m.intermediate_size = 256 * ((h + 255) / 256);
    } else {
      m.intermediate_size = 4 * m.n_embd;
    }
  }
  if (!m.init_from.empty()) check_init_from(m, section, file);
  return m;
}

DataConfig parse_data(const json& j, const ModelConfig& m, const std::string& file) {
  JsonSection s(j, "data", file);
  DataConfig d;
  d.train = s.get_str("train", "");
  if (d.train.empty()) s.fail("train", "missing (a shard file or glob such as data/demo/demo_train_*.bin)");
  d.val = s.get_str("val", "");
  d.mode = s.get_enum("mode", "packed", {"packed", "document"});
  d.seq_len = (int)s.get_int("seq_len", m.max_seq_len, 1, 1 << 20);
  d.micro_batch = (int)s.get_int("micro_batch", 8, 1, 1 << 20);
  d.batch_tokens = s.get_int("batch_tokens", 0, 0, int64_t(1) << 40);
  d.shuffle = s.get_bool("shuffle", true);
  d.delimiter = (int32_t)s.get_int("delimiter", m.is_llama() ? 1 : 50256, 0, (int64_t(1) << 31) - 1);
  d.tokenizer = s.get_str("tokenizer", "gpt2");
  s.finish();
  if (d.seq_len > m.max_seq_len)
    s.fail("seq_len", "is " + std::to_string(d.seq_len) + " but model.max_seq_len is " +
                          std::to_string(m.max_seq_len));
  if (d.delimiter >= m.vocab_size)
    s.fail("delimiter", "token " + std::to_string(d.delimiter) + " is outside the model vocabulary (" +
                            std::to_string(m.vocab_size) + ")");
  return d;
}

RunSection parse_run(const json& j, const std::string& file) {
  JsonSection s(j, "run", file);
  RunSection r;
  r.name = s.get_str("name", "");
  r.dir = s.get_str("dir", "runs/default");
  r.steps = s.get_int("steps", 1000, 1, int64_t(1) << 40);
  r.seed = (uint64_t)s.get_int("seed", 1337, 0, INT64_MAX);
  r.backend = s.get_enum("backend", "cpu", {"cpu", "cuda"});
  r.threads = (int)s.get_int("threads", 0, 0, 4096);
  r.grad_clip = (float)s.get_num("grad_clip", 1.0, 0.0, 1e9);
  r.grad_bucket_mb = s.get_num("grad_bucket_mb", 25.0, 0.0, 1e6);
  r.log_every = (int)s.get_int("log_every", 1, 1, 1 << 30);
  r.eval_every = (int)s.get_int("eval_every", 0, 0, 1 << 30);
  r.eval_batches = (int)s.get_int("eval_batches", 20, 1, 1 << 30);
  r.sample_every = (int)s.get_int("sample_every", 0, 0, 1 << 30);
  r.sample_tokens = (int)s.get_int("sample_tokens", 32, 0, 1 << 20);
  r.sample_prompt = s.get_str("sample_prompt", "");
  r.sample_temperature = (float)s.get_num("sample_temperature", 1.0, 0.0, 100.0);
  r.checkpoint_every = (int)s.get_int("checkpoint_every", 0, 0, 1 << 30);
  r.keep_last = (int)s.get_int("keep_last", 2, 1, 1 << 20);
  r.diagnostics_every = (int)s.get_int("diagnostics_every", 0, 0, 1 << 30);
  r.zero = (int)s.get_int("zero", 0, 0, 1);
  r.recompute = (int)s.get_int("recompute", 0, 0, 2);
  r.bf16_rounding = s.get_enum("bf16_rounding", "nearest", {"nearest", "stochastic"});
  r.on_nonfinite = s.get_enum("on_nonfinite", "stop", {"stop", "skip"});
  r.max_nonfinite_skips = (int)s.get_int("max_nonfinite_skips", 10, 1, 1 << 30);
  s.finish();
  return r;
}

json model_to_json(const ModelConfig& m) {
  json j{{"arch", m.arch},
         {"n_layer", m.n_layer},
              {"n_embd", m.n_embd},
              {"n_head", m.n_head},
              {"n_kv_head", m.n_kv_head},
              {"vocab_size", m.vocab_size},
              {"padded_vocab_size", m.padded_vocab_size},
              {"max_seq_len", m.max_seq_len},
              {"intermediate_size", m.intermediate_size},
              {"bias", m.bias},
              {"tie_embeddings", m.tie_embeddings},
              {"norm_eps", json_float(m.norm_eps)},
              {"rope_theta", json_float(m.rope_theta)},
              {"scale_attn_by_inverse_layer_idx", m.scale_attn_by_inverse_layer_idx},
              {"init_std", json_float(m.init_std)}};
  // Every field is explicit, so the preset is informational; an empty one would not load back.
  if (!m.preset.empty()) j["preset"] = m.preset;
  if (!m.init_from.empty()) j["init_from"] = m.init_from;
  return j;
}

}  // namespace

bool model_preset(const std::string& name, json& out) {
  if (!is_preset_name(name)) return false;
  std::error_code ec;
  for (const auto& dir : preset_dirs()) {
    const std::string p = dir + "/" + name + ".json";
    if (!fs::is_regular_file(p, ec)) continue;
    const json j = load_config_json(p);
    if (!j.contains("model") || !j["model"].is_object() || j.size() != 1)
      throw InputError(p + ": a model preset holds exactly one \"model\" object");
    out = j["model"];
    return true;
  }
  return false;
}

std::vector<std::string> model_preset_names() {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& dir : preset_dirs())
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      if (it->path().extension() == ".json" && is_preset_name(it->path().stem().string()))
        names.insert(it->path().stem().string());
  return {names.begin(), names.end()};
}

json load_config_json(const std::string& path) {
  std::vector<std::string> chain;
  return load_with_bases(path, chain);
}

bool same_model_section(const json& a, const json& b) {
  auto norm = [](json j) {
    for (const char* k : {"norm_eps", "rope_theta", "init_std"})
      if (j.is_object() && j.contains(k) && j[k].is_number()) j[k] = json_float((float)j[k].get<double>());
    return j;
  };
  return norm(a) == norm(b);
}

void apply_override(json& j, const std::string& kv, const std::string& source) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError("--set " + kv + ": expected key=value, e.g. run.steps=100");
  std::string key = kv.substr(0, eq), val = kv.substr(eq + 1);
  json v;
  try {
    v = json::parse(val);
  } catch (const json::parse_error&) {
    v = val;  // bare words are strings: optimizer.matrix.type=muon
  }
  json* cur = &j;
  std::stringstream ss(key);
  std::string part, done;
  std::vector<std::string> parts;
  while (std::getline(ss, part, '.')) parts.push_back(part);
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].empty()) throw InputError("--set " + kv + ": empty key component");
    if (!cur->is_object())
      throw InputError("--set " + kv + ": " + done + " is not an object in " + source);
    if (i + 1 == parts.size()) {
      if (v.is_null())
        cur->erase(parts[i]);  // as in a file's merge: null removes the key, its default applies
      else
        (*cur)[parts[i]] = v;
    } else {
      if (!cur->contains(parts[i])) (*cur)[parts[i]] = json::object();
      cur = &(*cur)[parts[i]];
    }
    done += (done.empty() ? "" : ".") + parts[i];
  }
}

RunConfig config_from_json(json j, const std::string& source) {
  if (j.is_object() && j.contains("base"))
    throw InputError(source + ": base: inheritance is resolved when a file is loaded (load_config), not here");
  JsonSection top(j, "", source);
  RunConfig c;
  c.source = source;
  const json empty = json::object();
  const json* jm = top.get_raw("model");
  const json* jd = top.get_raw("data");
  const json* jo = top.get_raw("optimizer");
  const json* js = top.get_raw("schedule");
  const json* jr = top.get_raw("run");
  top.finish();
  if (!jm) throw InputError(source + ": model: missing section");
  if (!jd) throw InputError(source + ": data: missing section");
  c.model = parse_model(*jm, source);
  c.data = parse_data(*jd, c.model, source);
  c.run = parse_run(jr ? *jr : empty, source);
  c.schedule = js ? *js : empty;
  c.optimizer = jo ? *jo : empty;
  // Validate optimizer and schedule now so a typo fails before any data is read.
  Schedule def = parse_schedule(c.schedule, source, "schedule");
  auto groups = parse_optimizer_config(c.optimizer, def, source);
  (void)groups;

  c.resolved = json{{"model", model_to_json(c.model)},
                    {"data",
                     {{"train", c.data.train},
                      {"val", c.data.val},
                      {"mode", c.data.mode},
                      {"seq_len", c.data.seq_len},
                      {"micro_batch", c.data.micro_batch},
                      {"batch_tokens", c.data.batch_tokens},
                      {"shuffle", c.data.shuffle},
                      {"delimiter", c.data.delimiter},
                      {"tokenizer", c.data.tokenizer}}},
                    {"optimizer", c.optimizer},
                    {"schedule", c.schedule},
                    {"run",
                     {{"name", c.run.name},
                      {"dir", c.run.dir},
                      {"steps", c.run.steps},
                      {"seed", c.run.seed},
                      {"backend", c.run.backend},
                      {"threads", c.run.threads},
                      {"grad_clip", json_float(c.run.grad_clip)},
                      {"grad_bucket_mb", c.run.grad_bucket_mb},
                      {"log_every", c.run.log_every},
                      {"eval_every", c.run.eval_every},
                      {"eval_batches", c.run.eval_batches},
                      {"sample_every", c.run.sample_every},
                      {"sample_tokens", c.run.sample_tokens},
                      {"sample_prompt", c.run.sample_prompt},
                      {"sample_temperature", json_float(c.run.sample_temperature)},
                      {"checkpoint_every", c.run.checkpoint_every},
                      {"keep_last", c.run.keep_last},
                      {"diagnostics_every", c.run.diagnostics_every},
                      {"zero", c.run.zero},
                      {"recompute", c.run.recompute},
                      {"bf16_rounding", c.run.bf16_rounding},
                      {"on_nonfinite", c.run.on_nonfinite},
                      {"max_nonfinite_skips", c.run.max_nonfinite_skips}}}};
  return c;
}

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  json j = load_config_json(path);
  for (const auto& kv : overrides) apply_override(j, kv, path);
  return config_from_json(std::move(j), path);
}

}  // namespace llmtrain
