// The training loop: config -> model -> backend -> data -> forward/backward with gradient
// accumulation -> clip -> optimizer groups -> metrics, eval, samples, checkpoints. Backend-agnostic:
// it only talks to the Backend, Optimizer, Communicator and DataLoader interfaces.
//
// Trainer splits it the usual way: the constructor does the set-up (lock the run directory, build
// model, backend, optimizer groups, ZeRO-1 shares and loaders, then resume or start fresh),
// train_step() takes one optimizer step and returns its record, and fit() is the loop that adds the
// metrics line, console progress and the eval / sample / checkpoint hooks at their cadence.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "llmtrain/checkpoint.h"
#include "llmtrain/config.h"
#include "llmtrain/optim.h"
#include "llmtrain/rng.h"

namespace llmtrain {

class Backend;
class Communicator;
class DataLoader;
class MetricsWriter;
class Model;
class RunLock;
class Tokenizer;
namespace dist {
class GradReducer;
class Zero1;
}  // namespace dist

struct TrainOptions {
  std::string resume;       // "" (fresh run, refuses a run dir that has checkpoints), "auto", or a checkpoint dir
  bool overwrite = false;   // start fresh, first removing the previous run's checkpoints and metrics
  int64_t stop_after = -1;  // stop (with a checkpoint) after this many steps of this invocation; -1 = run to the end
};

// What one optimizer step did.
struct StepResult {
  int64_t step = 0;        // the step just taken, counted from 1
  double loss = 0;         // mean over every valid target of the global batch
  double grad_norm = 0;    // global L2 norm of the gradients, before clipping
  int64_t tokens = 0;      // valid targets in the global batch
  std::vector<std::pair<std::string, float>> lr;  // each group's scheduled lr
  double step_s = 0;       // wall time of the whole step
  double optim_s = 0;      // of which the optimizer groups (and the ZeRO-1 all-gather)
  bool skipped = false;    // non-finite loss or gradient norm: no update (run.on_nonfinite=skip)
};

class Trainer {
 public:
  // Everything up to the first step; InputError for anything the user can fix (config, data, a
  // run directory in use or holding another run, a bad checkpoint), naming file and key.
  Trainer(const RunConfig& cfg, const TrainOptions& opts);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Runs to run.steps (or opts.stop_after steps) and returns the exit code.
  int fit();
  // One optimizer step: grad_accum micro-batches, gradient reduction, the finite check, clipping,
  // each group's update. A non-finite loss or gradient norm throws RuntimeError with
  // run.on_nonfinite=stop (naming the step and the first non-finite tensor) and skips the update
  // with skip (RuntimeError after run.max_nonfinite_skips such steps in a row).
  StepResult train_step();
  // Writes a checkpoint of the current step (collective on every rank).
  void save();

  int64_t step() const { return step_; }
  int64_t nonfinite_skipped() const { return nonfinite_skipped_; }
  Backend& backend() { return *backend_; }
  const Model& model() const { return *model_; }

 private:
  struct Group {
    GroupConfig cfg;
    std::vector<ParamRef> params;
    std::vector<ParamRef> local;  // what this rank's optimizer updates: params, or its ZeRO-1 share
    std::unique_ptr<Optimizer> opt;
  };

  void build_optimizers();
  void build_loaders();
  void start_or_resume();
  void nonfinite_step(StepResult& r);
  nlohmann::json record(const StepResult& r);
  void evaluate(nlohmann::json& rec);
  void sample();
  void print_progress(const StepResult& r, const nlohmann::json& rec, int64_t steps_this_run);

  RunConfig cfg_;
  TrainOptions opts_;
  int B_ = 0, T_ = 0, grad_accum_ = 1, rank_ = 0, world_ = 1;
  bool main_rank_ = true, reduce_ = false;
  int64_t batch_tokens_ = 0, total_steps_ = 0;
  std::unique_ptr<RunLock> lock_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<dist::Zero1> zero_;
  std::vector<Group> groups_;
  std::unique_ptr<DataLoader> train_loader_, val_loader_;
  std::unique_ptr<Tokenizer> tok_;
  CheckpointManager ckpt_;
  Rng sample_rng_;
  std::unique_ptr<MetricsWriter> metrics_;
  std::unique_ptr<dist::GradReducer> reducer_;
  std::vector<int32_t> inputs_, targets_;
  int64_t step_ = 0, nonfinite_skipped_ = 0, nonfinite_in_a_row_ = 0;
  double ema_step_s_ = 0;
};

// Runs training to completion (or stop_after); returns the process exit code.
int train(const RunConfig& cfg, const TrainOptions& opts);

// Micro-steps per optimizer step with `world` ranks: data.batch_tokens / (micro_batch * seq_len *
// world), InputError naming data.batch_tokens when that does not divide.
int grad_accum_steps(const RunConfig& cfg, int world);

// What `train --dry-run` checks beyond the config: the data globs resolve to valid shards and the
// global batch divides for `world` ranks. Returns a one-line summary; InputError naming the key.
std::string check_run_inputs(const RunConfig& cfg, int world);

}  // namespace llmtrain
