// What a training checkpoint contains and how it is written and read back (DESIGN.md section 6):
// model.safetensors (HF names, fp32), optimizer_rank<r>.safetensors (every optimizer state tensor,
// "<group>/<name>"), state.json (step, loader position, sampling RNG, optimizer scalars, config,
// code version). The directory handling (temp dir, fsync, rename, latest, keep-last-k) is
// CheckpointManager's.
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

std::string save_checkpoint(CheckpointManager& mgr, const TrainState& st, const Model& model, Backend& backend,
                            const std::vector<OptimizerView>& opts, const RunConfig& cfg, Communicator& comm);
// Loads weights into the backend and optimizer state into `opts`; checks the model config matches.
// Optimizer state sharded with run.zero=1 resumes only with run.zero=1 and the same world size
// (InputError naming both otherwise); state.json records {"zero": {"stage", "world"}}.
TrainState load_checkpoint(const std::string& dir, const Model& model, Backend& backend,
                           const std::vector<OptimizerView>& opts, const RunConfig& cfg, int rank = 0,
                           int world = 1);

// Writes a model's fp32 weights with our names and full (padded) shapes.
void write_model_safetensors(const std::string& path, const Model& model, const float* host_params,
                             const nlohmann::json& config);
// Reads weights by name into host_params (InputError naming the file and tensor on any mismatch).
void read_model_safetensors(const std::string& path, const Model& model, float* host_params);
// The resolved config stored in a checkpoint's state.json (to rebuild the model for eval/generate).
nlohmann::json read_checkpoint_config(const std::string& dir);

}  // namespace llmtrain
