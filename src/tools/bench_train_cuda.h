// `llmtrain bench train CONFIG --fwd-bwd-only`: the CUDA backend's forward + backward throughput on
// the config's model and micro-batch, without data files and without an optimizer (random tokens,
// weights from the seeded init). It measures the model half of a training step; the device
// optimizer update (when this build has one for the config's groups) is timed separately as
// optim_ms; gradient all-reduce and data loading come on top (`bench train` without the flag runs
// the trainer for the full step).
#pragma once
#include <ostream>

#include "llmtrain/config.h"

namespace llmtrain::cuda {

// Prints one JSON object (tokens/s, ms per micro-step, MFU against the detected GPU's nominal dense
// bf16 peak, device memory) to `out`; returns 0.
int bench_forward_backward(const RunConfig& cfg, const std::string& config_path, int steps, int warmup,
                           std::ostream& out);

}  // namespace llmtrain::cuda
