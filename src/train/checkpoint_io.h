// What a training checkpoint contains and how it is written and read back: model.safetensors (HF
// names, fp32), optimizer_rank<r>.safetensors (every optimizer state tensor, "<group>/<name>"),
// state.json (step, loader position, sampling RNG, optimizer scalars, non-finite step counters,
// config, code version, and the size and CRC-32C of every file). Nothing non-finite is ever written
// or read: weights and optimizer state are checked on both sides. The directory handling (temp dir,
// fsync, rename, latest, keep-last-k, verification) is CheckpointManager's.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmtrain/backend.h"
#include "llmtrain/checkpoint.h"
#include "llmtrain/config.h"
#include "llmtrain/model.h"
#include "llmtrain/comm.h"
#include "llmtrain/optim.h"

namespace llmtrain {

struct TrainState {
  int64_t step = 0;
  nlohmann::json loader;
  uint64_t sample_rng = 0;
  // Steps whose update was skipped for a non-finite loss or gradient (run.on_nonfinite=skip): in
  // all, and how many in a row up to `step` (the stop rule counts on across a resume).
  int64_t nonfinite_skipped = 0;
  int64_t nonfinite_in_a_row = 0;
};

struct OptimizerView {
  std::string group;
  Optimizer* opt;
};

template <typename G>
std::vector<OptimizerView> groups_view(std::vector<G>& groups) {
  std::vector<OptimizerView> v;
  for (auto& g : groups) v.push_back({g.cfg.name, g.opt.get()});
  return v;
}

// Collective over `comm`: every rank writes its optimizer file, rank 0 the model and state.json
// with the manifest of every rank's file. RuntimeError (on every rank, before anything is written)
// if a weight or optimizer state tensor holds a non-finite value, naming it.
std::string save_checkpoint(CheckpointManager& mgr, const TrainState& st, const Model& model, Backend& backend,
                            const std::vector<OptimizerView>& opts, const RunConfig& cfg, Communicator& comm);
// Loads weights into the backend and optimizer state into `opts`; checks the model config matches.
// `dir` is one resolve_resume() returned (complete, checksums verified). Optimizer state sharded
// with run.zero=1 resumes only with run.zero=1 and the same world size (InputError naming both
// otherwise); state.json records {"zero": {"stage", "world"}}. A step beyond run.steps, a
// non-finite tensor or a state.json that breaks its schema is an InputError naming file and key.
TrainState load_checkpoint(const std::string& dir, const Model& model, Backend& backend,
                           const std::vector<OptimizerView>& opts, const RunConfig& cfg, int rank = 0,
                           int world = 1);

// Reads <dir>/state.json and checks it against the schema the trainer writes: every key known and
// of its type, step a non-negative integer (equal to N in a step_N directory name), sample_rng a
// decimal string, the config an object with a model section. InputError "<file>: <key>: ...".
nlohmann::json read_state_json(const std::string& dir);

// Writes a model's fp32 weights with our names and full (padded) shapes.
void write_model_safetensors(const std::string& path, const Model& model, const float* host_params,
                             const nlohmann::json& config);
// Reads weights by name into host_params (InputError naming the file and tensor on any mismatch,
// and on a NaN or infinity: no command trains on, evaluates or exports such weights).
void read_model_safetensors(const std::string& path, const Model& model, float* host_params);
// Index of the first NaN or infinity among n floats; -1 if all are finite.
int64_t first_nonfinite(const float* x, size_t n);
// The resolved config stored in a checkpoint's state.json (to rebuild the model for eval/generate).
nlohmann::json read_checkpoint_config(const std::string& dir);

}  // namespace llmtrain
