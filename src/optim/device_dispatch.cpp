// The on_device entry points of the optimizer layer: make_optimizer(..., on_device) and the
// host <-> device copies of optimizer state used by checkpoints. They forward to the CUDA plugin
// (util/cuda_plugin.h: src/optim/*_cuda.cpp); without one they fail with an InputError saying why
// (the config asked for something this binary cannot do).
#include <cstring>

#include "llmtrain/error.h"
#include "llmtrain/optim.h"
#include "optim/optimizers.h"
#include "util/cuda_plugin.h"

namespace llmtrain {

std::unique_ptr<Optimizer> make_optimizer(const GroupConfig& cfg, const std::vector<ParamRef>& params, uint64_t seed,
                                          bool on_device) {
  if (!on_device) return make_optimizer(cfg, params, seed);
  const nlohmann::json opts = checked_type_options(cfg);
  return cuda_plugin("optimizer." + cfg.name + " (" + cfg.type + " on the device)").make_optimizer(cfg, opts, params, seed);
}

void copy_state_to_host(const StateTensor& s, float* host) {
  if (!s.on_device) {
    if (s.numel) std::memcpy(host, s.data, s.numel * sizeof(float));
    return;
  }
  cuda_plugin("optimizer state " + s.name).state_copy(host, s.data, s.numel * sizeof(float), true);
}

void copy_state_from_host(const StateTensor& s, const float* host) {
  if (!s.on_device) {
    if (s.numel) std::memcpy(s.data, host, s.numel * sizeof(float));
    return;
  }
  cuda_plugin("optimizer state " + s.name).state_copy(s.data, host, s.numel * sizeof(float), false);
}

}  // namespace llmtrain
