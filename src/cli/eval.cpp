// `llmtrain eval`, `llmtrain generate` and `llmtrain export`: commands that load a trained model:
// a checkpoint (a step directory, or a run directory whose latest checkpoint is used) or, for eval
// and generate, a Hugging Face GPT-2 / LLaMA directory.
#include <omp.h>

#include <filesystem>
#include <fstream>

#include "cli/commands.h"
#include "llmtrain/backend.h"
#include "llmtrain/checkpoint.h"
#include "llmtrain/config.h"
#include "llmtrain/data.h"
#include "llmtrain/error.h"
#include "llmtrain/eval.h"
#include "llmtrain/hf.h"
#include "llmtrain/model.h"
#include "llmtrain/tokenizer.h"
#include "train/checkpoint_io.h"
#include "tools/export.h"

namespace fs = std::filesystem;

namespace llmtrain::cli {
namespace {

// A checkpoint step dir (checksums verified), or a run dir whose newest intact checkpoint is taken
// (each newer damaged one named on stderr).
std::string resolve_checkpoint_arg(const std::string& arg) {
  std::error_code ec;
  if (fs::exists(fs::path(arg) / "state.json", ec)) {
    const std::string problem = checkpoint_problem(arg, /*checksums=*/true);
    if (!problem.empty()) throw InputError(problem);
    return arg;
  }
  std::vector<std::string> skipped;
  const auto d = CheckpointManager(arg, 0).find_latest(/*verify=*/true, &skipped);
  for (const auto& s : skipped) std::fprintf(stderr, "llmtrain: skipping a damaged checkpoint: %s\n", s.c_str());
  if (d) return *d;
  if (!skipped.empty()) throw InputError(arg + ": no intact checkpoint; the newest: " + skipped.front());
  throw InputError(arg + ": not a checkpoint directory (no state.json), a run directory with checkpoints, "
                   "nor a Hugging Face model directory (config.json + model.safetensors)");
}

// The resolved config a checkpoint was written with. model.init_from is dropped: the weights come
// from the checkpoint, and the HF directory the run started from need not exist any more.
nlohmann::json checkpoint_config(const std::string& dir) {
  nlohmann::json j = read_checkpoint_config(dir);
  if (j.contains("model") && j["model"].is_object()) j["model"].erase("init_from");
  return j;
}

// What a Hugging Face directory holds for sampling: its own GPT-2 vocabulary or SentencePiece
// model, else the bundled GPT-2 vocabulary for a GPT-2 with its vocabulary size.
std::string hf_tokenizer_spec(const std::string& dir, const ModelConfig& m) {
  if (gpt2_vocab_files(dir)) return dir;
  if (fs::is_regular_file(fs::path(dir) / "tokenizer.model")) return (fs::path(dir) / "tokenizer.model").string();
  if (!m.is_llama() && m.vocab_size == 50257) return "gpt2";
  return "none";
}

// A run config for an HF directory: the model from its config.json (model.init_from), the document
// delimiter from its bos (else eos) token id.
RunConfig hf_run_config(const std::string& dir, const std::vector<std::string>& sets) {
  const std::string source = (fs::path(dir) / "config.json").string();
  const nlohmann::json hf = read_hf_config_json(dir);
  const ModelConfig m = model_config_from_hf(hf, source);
  const HfTokenIds ids = token_ids_from_hf(hf);
  int32_t delim = ids.bos >= 0 ? ids.bos : ids.eos >= 0 ? ids.eos : 0;
  if (delim >= m.vocab_size) delim = 0;
  // data.train is required of a run config; nothing here reads it.
  nlohmann::json j{{"model", {{"init_from", dir}}},
                   {"data",
                    {{"train", "(none: " + dir + " is a Hugging Face model)"},
                     {"delimiter", delim},
                     {"tokenizer", hf_tokenizer_spec(dir, m)}}}};
  for (const auto& kv : sets) apply_override(j, kv, source);
  return config_from_json(j, source);
}

std::string tokenizer_note(const HfExportResult& r) {
  return r.tokenizer.empty() ? " (no tokenizer files)" : " (tokenizer: " + r.tokenizer + ")";
}

struct Loaded {
  RunConfig cfg;
  std::unique_ptr<Model> model;
  std::unique_ptr<Backend> backend;
  std::string dir;
  bool hf = false;
};

Loaded load_for_inference(const std::string& arg, const std::string& backend_name, int B, int T,
                          const std::vector<std::string>& sets) {
  Loaded L;
  L.hf = !fs::exists(fs::path(arg) / "state.json") && is_hf_model_dir(arg);
  if (L.hf) {
    L.dir = arg;
    L.cfg = hf_run_config(arg, sets);
  } else {
    L.dir = resolve_checkpoint_arg(arg);
    nlohmann::json j = checkpoint_config(L.dir);
    for (const auto& kv : sets) apply_override(j, kv, L.dir + "/state.json");
    L.cfg = config_from_json(j, L.dir + "/state.json");
  }
  if (!backend_name.empty()) L.cfg.run.backend = backend_name;
  L.model = std::make_unique<Model>(L.cfg.model);
  // Default backend options on purpose: nearest rounding of the uploaded weights makes evaluation
  // deterministic (the run's stochastic rounding is keyed by training steps, which eval has none
  // of), and recomputation only matters for backward.
  L.backend = make_backend(L.cfg.run.backend, *L.model, B > 0 ? B : L.cfg.data.micro_batch,
                           T > 0 ? T : L.cfg.data.seq_len);
  std::vector<float> host(L.model->num_params());
  if (L.hf)
    init_run_params(L.cfg, *L.model, host.data());  // the HF weights (model.init_from)
  else
    read_model_safetensors((fs::path(L.dir) / "model.safetensors").string(), *L.model, host.data());
  L.backend->upload_params(host.data());
  return L;
}

}  // namespace

Command add_eval_command(CLI::App& app) {
  struct Opts {
    std::string ckpt, data, backend;
    int batches = 50, B = 0, T = 0;
    std::vector<std::string> sets;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("eval", "Validation loss and perplexity of a checkpoint");
  sub->footer(
      "Examples:\n"
      "  llmtrain eval runs/demo-gpt2-tiny                     # latest checkpoint, the run's val data\n"
      "  llmtrain eval runs/demo-gpt2-tiny/ckpt/step_00000200 --data 'data/demo/demo_val_*.bin' --batches 100\n"
      "  llmtrain eval hf/gpt2 --data 'data/demo/demo_val_*.bin' --batch-size 4 --seq-len 256  # an HF model");
  sub->add_option("checkpoint", o->ckpt, "Checkpoint dir, run dir, or Hugging Face model dir")->required();
  sub->add_option("--data", o->data, "Shard file or glob (default: the run's data.val)");
  sub->add_option("--batches", o->batches, "Number of batches")->check(CLI::PositiveNumber);
  sub->add_option("--batch-size", o->B, "Rows per batch (default: the run's micro_batch)");
  sub->add_option("--seq-len", o->T, "Sequence length (default: the run's seq_len)");
  sub->add_option("--backend", o->backend, "cpu or cuda (default: the run's)");
  sub->add_option("--set", o->sets, "Override a config value of the checkpoint (key.path=value)");
  return {sub, [o]() {
            Loaded L = load_for_inference(o->ckpt, o->backend, o->B, o->T, o->sets);
            if (o->T > L.cfg.model.max_seq_len)
              throw InputError("--seq-len " + std::to_string(o->T) + " exceeds the model's max_seq_len " +
                               std::to_string(L.cfg.model.max_seq_len));
            const int B = o->B > 0 ? o->B : L.cfg.data.micro_batch, T = o->T > 0 ? o->T : L.cfg.data.seq_len;
            std::string pattern = o->data.empty() ? L.cfg.data.val : o->data;
            if (pattern.empty())
              throw InputError(L.hf ? "no --data given (a Hugging Face model directory names no validation data)"
                                    : "no --data given and the run has no data.val");
            LoaderOptions lo;
            lo.files = resolve_shards(pattern, "--data");
            lo.mode = L.cfg.data.mode;
            lo.B = B;
            lo.T = T;
            lo.seed = L.cfg.run.seed;
            lo.shuffle = false;
            lo.delimiter = L.cfg.data.delimiter;
            lo.vocab_limit = L.cfg.model.vocab_size;
            DataLoader loader(lo);
            EvalResult r = evaluate(*L.backend, loader, o->batches, B, T);
            nlohmann::json out{{"checkpoint", L.dir}, {"data", pattern}, {"tokens", r.tokens},
                               {"loss", r.loss},      {"perplexity", r.perplexity}};
            std::printf("%s\n", out.dump().c_str());
            return 0;
          }};
}

Command add_generate_command(CLI::App& app) {
  struct Opts {
    std::string ckpt, prompt, backend, tokenizer;
    int tokens = 64;
    float temperature = 0.8f;
    uint64_t seed = 42;
    int samples = 1;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("generate", "Sample text from a checkpoint");
  sub->footer(
      "Examples:\n"
      "  llmtrain generate runs/demo-gpt2-tiny --prompt \"Once upon a time\" --tokens 50\n"
      "  llmtrain generate runs/demo-gpt2-tiny --temperature 0   # greedy\n"
      "  llmtrain generate hf/gpt2 --prompt \"Hello\"              # a Hugging Face model (its own tokenizer files)");
  sub->add_option("checkpoint", o->ckpt, "Checkpoint dir, run dir, or Hugging Face model dir")->required();
  sub->add_option("--prompt", o->prompt, "Prompt text (documents start with the delimiter token anyway)");
  sub->add_option("--tokens", o->tokens, "Tokens to generate")->check(CLI::PositiveNumber);
  sub->add_option("--temperature", o->temperature, "Sampling temperature (0 = greedy)")->check(CLI::Range(0.0, 100.0));
  sub->add_option("--seed", o->seed, "Sampling seed");
  sub->add_option("--samples", o->samples, "Number of samples")->check(CLI::PositiveNumber);
  sub->add_option("--backend", o->backend, "cpu or cuda (default: the run's)");
  sub->add_option("--tokenizer", o->tokenizer,
                  "Tokenizer (default: the run's data.tokenizer, or the HF directory's own files)");
  return {sub, [o]() {
            Loaded L = load_for_inference(o->ckpt, o->backend, 1, 0, {});
            auto tok = load_tokenizer(o->tokenizer.empty() ? L.cfg.data.tokenizer : o->tokenizer);
            Rng rng(o->seed);
            for (int s = 0; s < o->samples; ++s) {
              std::vector<int32_t> prompt{L.cfg.data.delimiter};
              auto p = tok->encode(o->prompt);
              prompt.insert(prompt.end(), p.begin(), p.end());
              auto ids = sample_tokens(*L.backend, prompt, o->tokens, o->temperature, L.cfg.data.seq_len, rng);
              std::printf("%s%s\n", o->prompt.c_str(), tok->decode(ids).c_str());
              if (s + 1 < o->samples) std::printf("----\n");
            }
            return 0;
          }};
}

Command add_export_command(CLI::App& app) {
  struct Opts {
    std::string ckpt, out, config;
    std::vector<std::string> sets;
    uint64_t seed = 0;
    bool init = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("export", "Export weights as a Hugging Face model directory");
  sub->footer(
      "Examples:\n"
      "  llmtrain export runs/demo-gpt2-tiny --out hf/demo        # config.json, model.safetensors, tokenizer files\n"
      "  llmtrain export --init --config configs/demo-gpt2-tiny.json --out /tmp/init   # freshly initialised weights");
  sub->add_option("checkpoint", o->ckpt, "Checkpoint dir or run dir");
  sub->add_option("--out", o->out, "Output directory (config.json, model.safetensors, tokenizer files)")->required();
  sub->add_flag("--init", o->init, "Export the seeded initial weights of --config instead of a checkpoint");
  sub->add_option("--config", o->config, "Run config (with --init)");
  sub->add_option("--set", o->sets, "Override a config value (with --init)");
  return {sub, [o]() {
            if (o->init) {
              if (o->config.empty()) throw InputError("export --init needs --config");
              RunConfig cfg = load_config(o->config, o->sets);
              Model model(cfg.model);
              std::vector<float> host(model.num_params());
              init_run_params(cfg, model, host.data());
              const std::string tok = tokenizer_note(export_hf(o->out, cfg, model, host.data()));
              std::printf("exported initial weights of %s to %s%s\n", o->config.c_str(), o->out.c_str(), tok.c_str());
              return 0;
            }
            if (o->ckpt.empty()) throw InputError("export needs a checkpoint (or --init --config CONFIG)");
            std::string dir = resolve_checkpoint_arg(o->ckpt);
            RunConfig cfg = config_from_json(checkpoint_config(dir), dir + "/state.json");
            Model model(cfg.model);
            std::vector<float> host(model.num_params());
            read_model_safetensors((fs::path(dir) / "model.safetensors").string(), model, host.data());
            const std::string tok = tokenizer_note(export_hf(o->out, cfg, model, host.data()));
            std::printf("exported %s to %s%s\n", dir.c_str(), o->out.c_str(), tok.c_str());
            return 0;
          }};
}

}  // namespace llmtrain::cli
