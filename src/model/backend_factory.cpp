// Backend selection by name. The CPU reference backend is always built in; "cuda" comes from the
// CUDA plugin (util/cuda_plugin.h), loaded here on first use.
#include "llmtrain/backend.h"
#include "llmtrain/error.h"
#include "util/cuda_plugin.h"

namespace llmtrain {

BackendOptions backend_options(const RunConfig& cfg) {
  BackendOptions o;
  o.recompute = cfg.run.recompute;
  if (o.recompute < 0 || o.recompute > 2)
    throw InputError(cfg.source + ": run.recompute: must be 0, 1 or 2, got " + std::to_string(o.recompute));
  if (cfg.run.bf16_rounding == "nearest")
    o.bf16_rounding = Bf16Rounding::nearest;
  else if (cfg.run.bf16_rounding == "stochastic")
    o.bf16_rounding = Bf16Rounding::stochastic;
  else
    throw InputError(cfg.source + ": run.bf16_rounding: expected \"nearest\" or \"stochastic\", got \"" +
                     cfg.run.bf16_rounding + "\"");
  o.seed = cfg.run.seed;
  return o;
}

std::unique_ptr<Backend> make_backend(const std::string& name, const Model& model, int max_B, int max_T,
                                      const BackendOptions& opts) {
  if (opts.recompute < 0 || opts.recompute > 2)
    throw InputError("recompute: must be 0, 1 or 2, got " + std::to_string(opts.recompute));
  if (name == "cpu") return make_cpu_backend(model, max_B, max_T, opts);
  if (name == "cuda") return cuda_plugin("run.backend: \"cuda\"").make_backend(model, max_B, max_T, opts);
  throw InputError("run.backend: unknown backend \"" + name + "\" (expected cpu or cuda)");
}

}  // namespace llmtrain
