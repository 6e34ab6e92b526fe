// The on_device entry points of the optimizer layer: make_optimizer(..., on_device) and the
// host <-> device copies of optimizer state used by checkpoints. On a build without CUDA they fail
// with an InputError (the config asked for something this binary cannot do); with CUDA they forward
// to src/cuda/optim_factory.cpp.
#include <cstring>

#include "llmtrain/error.h"
#include "llmtrain/optim.h"
#include "optim/optimizers.h"

namespace llmtrain {

#if !defined(LLMTRAIN_HAVE_CUDA)
namespace {
[[noreturn]] void no_cuda(const std::string& what) {
  throw InputError(what + ": this build has no CUDA (nvcc was not found at configure time); use the cpu backend");
}
}  // namespace
#endif

std::unique_ptr<Optimizer> make_optimizer(const GroupConfig& cfg, const std::vector<ParamRef>& params, uint64_t seed,
                                          bool on_device) {
  if (!on_device) return make_optimizer(cfg, params, seed);
  const nlohmann::json opts = checked_type_options(cfg);
#if defined(LLMTRAIN_HAVE_CUDA)
  return make_device_optimizer(cfg, opts, params, seed);
#else
  no_cuda("optimizer." + cfg.name + " (" + cfg.type + " on the device)");
#endif
}

void copy_state_to_host(const StateTensor& s, float* host) {
  if (!s.on_device) {
    if (s.numel) std::memcpy(host, s.data, s.numel * sizeof(float));
    return;
  }
#if defined(LLMTRAIN_HAVE_CUDA)
  device_state_copy(host, s.data, s.numel * sizeof(float), true);
#else
  no_cuda("optimizer state " + s.name);
#endif
}

void copy_state_from_host(const StateTensor& s, const float* host) {
  if (!s.on_device) {
    if (s.numel) std::memcpy(s.data, host, s.numel * sizeof(float));
    return;
  }
#if defined(LLMTRAIN_HAVE_CUDA)
  device_state_copy(s.data, host, s.numel * sizeof(float), false);
#else
  no_cuda("optimizer state " + s.name);
#endif
}

}  // namespace llmtrain
