// Evaluation and sampling on any backend: mean validation loss / perplexity over a fixed number
// of batches from the start of the validation stream, and autoregressive sampling.
#pragma once
#include <cstdint>
#include <vector>

#include "llmtrain/backend.h"
#include "llmtrain/data.h"
#include "llmtrain/rng.h"

namespace llmtrain {

struct EvalResult {
  double loss = 0;        // mean per-token loss
  double perplexity = 0;  // exp(loss)
  int64_t tokens = 0;
  double loss_sum = 0;    // summed per-token loss (for reducing across ranks)
};

// Resets the loader and averages the loss over `batches` batches of B x T (all tokens weighted equally).
EvalResult evaluate(Backend& backend, DataLoader& loader, int batches, int B, int T);

// Samples `n` tokens after `prompt` (non-empty). temperature 0 = greedy. The context is the last
// `max_T` tokens. Each step recomputes the full forward (simple and exact; fine for short samples).
std::vector<int32_t> sample_tokens(Backend& backend, std::vector<int32_t> prompt, int n, float temperature,
                                   int max_T, Rng& rng);

}  // namespace llmtrain
