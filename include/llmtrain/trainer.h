// The training loop (DESIGN.md section 2): config -> model -> backend -> data -> forward/backward
// with gradient accumulation -> clip -> optimizer groups -> metrics, eval, samples, checkpoints.
// Backend-agnostic: it only talks to the Backend, Optimizer and DataLoader interfaces.
#pragma once
#include <string>

#include "llmtrain/config.h"

namespace llmtrain {

struct TrainOptions {
  std::string resume;       // "" (fresh run, refuses a run dir that has checkpoints), "auto", or a checkpoint dir
  bool overwrite = false;   // start fresh even if the run dir has checkpoints
  int64_t stop_after = -1;  // stop (with a checkpoint) after this many steps of this invocation; -1 = run to the end
};

// Runs training to completion (or stop_after); returns the process exit code.
int train(const RunConfig& cfg, const TrainOptions& opts);

}  // namespace llmtrain
