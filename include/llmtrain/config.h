// Run configuration: the JSON file a user trains from (sections model, data, optimizer, schedule,
// run), validated strictly at load: an unknown key, a wrong type or an impossible value is an
// InputError naming the file and the dotted key. `--set key=value` overrides are applied to the
// JSON before validation so they are checked exactly like file values.
//
// Inheritance: a file may name `"base": "path"` or `"base": ["a", "b"]` (paths relative to the file
// that names them). The bases load first, recursively and in list order, then the file's own keys
// merge on top as a JSON merge patch (RFC 7386): objects merge key by key (optimizer groups
// included), null deletes the inherited key, anything else (lists too) replaces. `--set` applies to
// the fully merged JSON and replaces the value at its key (null deletes it). The resolved config
// (RunConfig::resolved) is fully expanded and has no "base".
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace llmtrain {

struct ModelConfig {
  std::string arch = "gpt2";  // "gpt2" | "llama"
  std::string preset;         // optional named size the explicit fields override
  int n_layer = 12;
  int n_embd = 768;
  int n_head = 12;
  int n_kv_head = 0;          // LLaMA GQA; 0 = n_head
  int vocab_size = 50257;
  int padded_vocab_size = 0;  // 0 = round vocab_size up to a multiple of 128
  int max_seq_len = 1024;
  int intermediate_size = 0;  // 0 = 4C (GPT-2) or the LLaMA rule 256*ceil(8C/3/256)
  bool bias = true;           // GPT-2 biases on/off (LLaMA has none)
  bool tie_embeddings = true; // GPT-2 ties lm_head to wte; LLaMA does not
  float norm_eps = 1e-5f;
  float rope_theta = 10000.f;
  bool scale_attn_by_inverse_layer_idx = false;
  float init_std = 0.02f;
  // A Hugging Face model directory to start training from: it decides the architecture (keys the
  // section sets must agree with its config.json) and gives the initial weights (llmtrain/hf.h).
  std::string init_from;

  int head_size() const { return n_embd / n_head; }
  int kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
  bool is_llama() const { return arch == "llama"; }
};

struct DataConfig {
  std::string train;            // shard file or glob
  std::string val;              // shard file or glob ("" = no validation)
  std::string mode = "packed";  // "packed" | "document"
  int seq_len = 1024;           // T
  int micro_batch = 8;          // B per rank per micro-step
  int64_t batch_tokens = 0;     // global tokens per optimizer step (0 = B*T*world, no accumulation)
  bool shuffle = true;
  int32_t delimiter = -1;       // document delimiter token (-1: GPT-2 EOT for gpt2, 1 for llama)
  std::string tokenizer = "gpt2";  // for sampling/decoding: "gpt2", a BPE dir or a .model file
};

struct RunSection {
  std::string name;
  std::string dir = "runs/default";
  int64_t steps = 1000;
  uint64_t seed = 1337;
  std::string backend = "cpu";  // "cpu" | "cuda"
  int threads = 0;              // OpenMP threads (0 = all cores)
  float grad_clip = 1.0f;       // 0 disables clipping
  // Data parallelism: gradients are summed in buckets of this many MiB, each started as soon as
  // backward has produced it (overlapping communication with the rest of backward); 0 = one
  // all-reduce of all gradients after backward.
  double grad_bucket_mb = 25.0;
  int log_every = 1;
  int eval_every = 0;           // 0 = only at the end
  int eval_batches = 20;
  int sample_every = 0;         // 0 = only at the end
  int sample_tokens = 32;
  std::string sample_prompt = "";
  float sample_temperature = 1.0f;
  int checkpoint_every = 0;     // 0 = only at the end
  int keep_last = 2;
  int diagnostics_every = 0;    // optimizer diagnostics (dominance ratios) every N steps, 0 = off
  int zero = 0;                 // ZeRO stage: 0 = full optimizer state on every rank, 1 = sharded
  int recompute = 0;            // activation recomputation: 0 none, 1 MLP activation, 2 also ln1/ln2
  std::string bf16_rounding = "nearest";  // CUDA bf16 weight refresh: "nearest" | "stochastic"
  // A step whose loss or gradient norm is NaN/inf: "stop" the run (exit 1 naming the step and the
  // first non-finite tensor) or "skip" its update, stopping after max_nonfinite_skips in a row.
  std::string on_nonfinite = "stop";
  int max_nonfinite_skips = 10;
};

struct RunConfig {
  ModelConfig model;
  DataConfig data;
  nlohmann::json optimizer = nlohmann::json::object();  // validated by parse_optimizer_config
  nlohmann::json schedule = nlohmann::json::object();   // default schedule of every group
  RunSection run;
  std::string source;                                   // file the config came from
  nlohmann::json resolved;                              // the full, defaults-filled config
};

// Loads, applies overrides ("run.steps=10", "optimizer.matrix.type=\"muon\"" or unquoted strings),
// resolves presets and defaults, validates everything. Throws InputError.
RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The file with its bases merged, not yet validated. InputError for a missing file, bad JSON, a bad
// "base" value or an inheritance cycle, naming the chain of files ("a.json -> b.json: base: ...").
nlohmann::json load_config_json(const std::string& path);
RunConfig config_from_json(nlohmann::json j, const std::string& source);
// Applies one "a.b.c=value" override to j (value parsed as JSON, else taken as a string; null
// removes the key).
void apply_override(nlohmann::json& j, const std::string& kv, const std::string& source);
// True if two resolved model sections (RunConfig::resolved["model"]) describe the same model. Float
// fields compare as float32, so a section stored with widened floats (9.999999747378752e-06 for
// 1e-5f, as checkpoints written before shortest decimals have) still matches.
bool same_model_section(const nlohmann::json& a, const nlohmann::json& b);
// Named model sizes ("gpt2-124m", "llama-130m", ...): the "model" object of configs/models/<name>.json,
// looked up in $LLMTRAIN_CONFIG_DIR/models, the source tree's configs/models, ./configs/models.
// Returns false when unknown; InputError when the file is broken.
bool model_preset(const std::string& name, nlohmann::json& out);
std::vector<std::string> model_preset_names();

}  // namespace llmtrain
