// `llmtrain eval`, `llmtrain generate` and `llmtrain export`: commands that load a trained
// checkpoint (a step directory or a run directory, whose latest checkpoint is used).
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
#include "llmtrain/model.h"
#include "llmtrain/tokenizer.h"
#include "train/checkpoint_io.h"
#include "train/export.h"

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
  throw InputError(arg + ": not a checkpoint directory (no state.json) nor a run directory with checkpoints");
}

struct Loaded {
  RunConfig cfg;
  std::unique_ptr<Model> model;
  std::unique_ptr<Backend> backend;
  std::string dir;
};

Loaded load_for_inference(const std::string& arg, const std::string& backend_name, int B, int T,
                          const std::vector<std::string>& sets) {
  Loaded L;
  L.dir = resolve_checkpoint_arg(arg);
  nlohmann::json j = read_checkpoint_config(L.dir);
  for (const auto& kv : sets) apply_override(j, kv, L.dir + "/state.json");
  L.cfg = config_from_json(j, L.dir + "/state.json");
  if (!backend_name.empty()) L.cfg.run.backend = backend_name;
  L.model = std::make_unique<Model>(L.cfg.model);
  // Default backend options on purpose: nearest rounding of the uploaded weights makes evaluation
  // deterministic (the run's stochastic rounding is keyed by training steps, which eval has none
  // of), and recomputation only matters for backward.
  L.backend = make_backend(L.cfg.run.backend, *L.model, B > 0 ? B : L.cfg.data.micro_batch,
                           T > 0 ? T : L.cfg.data.seq_len);
  std::vector<float> host(L.model->num_params());
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
      "  llmtrain eval runs/demo-gpt2-tiny/ckpt/step_00000200 --data 'data/demo/demo_val_*.bin' --batches 100");
  sub->add_option("checkpoint", o->ckpt, "Checkpoint dir or run dir")->required();
  sub->add_option("--data", o->data, "Shard file or glob (default: the run's data.val)");
  sub->add_option("--batches", o->batches, "Number of batches")->check(CLI::PositiveNumber);
  sub->add_option("--batch-size", o->B, "Rows per batch (default: the run's micro_batch)");
  sub->add_option("--seq-len", o->T, "Sequence length (default: the run's seq_len)");
  sub->add_option("--backend", o->backend, "cpu or cuda (default: the run's)");
  sub->add_option("--set", o->sets, "Override a config value of the checkpoint (key.path=value)");
  return {sub, [o]() {
            Loaded L = load_for_inference(o->ckpt, o->backend, o->B, o->T, o->sets);
            const int B = o->B > 0 ? o->B : L.cfg.data.micro_batch, T = o->T > 0 ? o->T : L.cfg.data.seq_len;
            std::string pattern = o->data.empty() ? L.cfg.data.val : o->data;
            if (pattern.empty()) throw InputError("no --data given and the run has no data.val");
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
    std::string ckpt, prompt, backend;
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
      "  llmtrain generate runs/demo-gpt2-tiny --temperature 0   # greedy");
  sub->add_option("checkpoint", o->ckpt, "Checkpoint dir or run dir")->required();
  sub->add_option("--prompt", o->prompt, "Prompt text (documents start with the delimiter token anyway)");
  sub->add_option("--tokens", o->tokens, "Tokens to generate")->check(CLI::PositiveNumber);
  sub->add_option("--temperature", o->temperature, "Sampling temperature (0 = greedy)")->check(CLI::Range(0.0, 100.0));
  sub->add_option("--seed", o->seed, "Sampling seed");
  sub->add_option("--samples", o->samples, "Number of samples")->check(CLI::PositiveNumber);
  sub->add_option("--backend", o->backend, "cpu or cuda (default: the run's)");
  return {sub, [o]() {
            Loaded L = load_for_inference(o->ckpt, o->backend, 1, 0, {});
            auto tok = load_tokenizer(L.cfg.data.tokenizer);
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
      "  llmtrain export runs/demo-gpt2-tiny --out hf/demo        # config.json + model.safetensors (HF layout)\n"
      "  llmtrain export --init --config configs/demo-gpt2-tiny.json --out /tmp/init   # freshly initialised weights");
  sub->add_option("checkpoint", o->ckpt, "Checkpoint dir or run dir");
  sub->add_option("--out", o->out, "Output directory")->required();
  sub->add_flag("--init", o->init, "Export the seeded initial weights of --config instead of a checkpoint");
  sub->add_option("--config", o->config, "Run config (with --init)");
  sub->add_option("--set", o->sets, "Override a config value (with --init)");
  return {sub, [o]() {
            if (o->init) {
              if (o->config.empty()) throw InputError("export --init needs --config");
              RunConfig cfg = load_config(o->config, o->sets);
              Model model(cfg.model);
              std::vector<float> host(model.num_params());
              model.init_params(host.data(), cfg.run.seed);
              export_hf(o->out, model, host.data());
              std::printf("exported initial weights of %s to %s\n", o->config.c_str(), o->out.c_str());
              return 0;
            }
            if (o->ckpt.empty()) throw InputError("export needs a checkpoint (or --init --config CONFIG)");
            std::string dir = resolve_checkpoint_arg(o->ckpt);
            RunConfig cfg = config_from_json(read_checkpoint_config(dir), dir + "/state.json");
            Model model(cfg.model);
            std::vector<float> host(model.num_params());
            read_model_safetensors((fs::path(dir) / "model.safetensors").string(), model, host.data());
            export_hf(o->out, model, host.data());
            std::printf("exported %s to %s\n", dir.c_str(), o->out.c_str());
            return 0;
          }};
}

}  // namespace llmtrain::cli
