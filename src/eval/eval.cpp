// Validation loss and sampling, shared by the trainer and the eval / generate subcommands.
#include "llmtrain/eval.h"

#include <algorithm>
#include <cmath>

#include "llmtrain/error.h"

namespace llmtrain {

EvalResult evaluate(Backend& backend, DataLoader& loader, int batches, int B, int T) {
  loader.reset();
  std::vector<int32_t> in((size_t)B * T), tg((size_t)B * T);
  double sum = 0;
  int64_t count = 0;
  for (int i = 0; i < batches; ++i) {
    loader.next_batch(in.data(), tg.data());
    int64_t valid = 0;
    sum += backend.forward(in.data(), tg.data(), B, T, &valid);
    count += valid;
  }
  EvalResult r;
  r.tokens = count;
  r.loss_sum = sum;
  r.loss = count > 0 ? sum / (double)count : 0.0;
  r.perplexity = std::exp(r.loss);
  return r;
}

std::vector<int32_t> sample_tokens(Backend& backend, std::vector<int32_t> prompt, int n, float temperature,
                                   int max_T, Rng& rng) {
  if (prompt.empty()) throw RuntimeError("sample_tokens: empty prompt");
  const int V = backend.model().config().vocab_size;
  std::vector<float> logits(V);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    const int T = std::min<int>((int)prompt.size(), max_T);
    const int32_t* ctx = prompt.data() + (prompt.size() - T);
    backend.forward(ctx, nullptr, 1, T, nullptr);
    backend.logits_at(0, T - 1, logits.data());
    int32_t next = 0;
    if (temperature <= 0.f) {
      next = (int32_t)(std::max_element(logits.begin(), logits.end()) - logits.begin());
    } else {
      // Softmax in double, then inverse-CDF with our portable RNG (reproducible across platforms).
      double mx = -1e300;
      for (float x : logits) mx = std::max(mx, (double)x / temperature);
      double z = 0;
      std::vector<double> p(V);
      for (int j = 0; j < V; ++j) z += (p[j] = std::exp((double)logits[j] / temperature - mx));
      double u = rng.uniform() * z, c = 0;
      next = V - 1;
      for (int j = 0; j < V; ++j) {
        c += p[j];
        if (u < c) {
          next = j;
          break;
        }
      }
    }
    out.push_back(next);
    prompt.push_back(next);
  }
  return out;
}

}  // namespace llmtrain
