// Fused softmax + cross-entropy, the loss at the top of both models. Logits rows are Vp wide
// (vocabulary padded for fast matmuls) but only the first V columns are real tokens: the padding
// never enters the softmax and gets zero gradient. A negative target marks a row to ignore
// (loss 0, zero gradient). Fusing lets backward skip the probabilities tensor: it recomputes them
// from the logits (exp after subtracting the row max, so nothing overflows; in fp32 a vectorised
// exp, since a 50k-wide vocabulary makes this loop as costly as the lm_head matmul; the exp-sum is
// accumulated in double). Rows are independent, so threads split rows.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "cpu/ops.h"
#include "cpu/common.h"

namespace llmtrain::cpu {

template <typename F>
void softmax_xent_forward(F* losses, const F* logits, const int32_t* targets, int N, int V, int Vp) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const int tgt = targets[n];
    if (tgt < 0) {
      losses[n] = F(0);
      continue;
    }
    assert(tgt < V);
    const F* x = logits + (std::ptrdiff_t)n * Vp;
    // -log softmax(x)[tgt] = log(sum exp(x - m)) + m - x[tgt], with m the row max.
    const F m = simd::row_max(x, V);
    const double s = simd::exp_sum(x, m, (F*)nullptr, V);
    losses[n] = (F)(std::log(s) + (double)(m - x[tgt]));
  }
}

template <typename F>
void softmax_xent_backward(F* dlogits, const F* logits, const int32_t* targets, const F* dloss, int N, int V,
                           int Vp) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const int tgt = targets[n];
    const F* x = logits + (std::ptrdiff_t)n * Vp;
    F* dx = dlogits + (std::ptrdiff_t)n * Vp;
    if (tgt < 0) {
      std::fill(dx, dx + Vp, F(0));
      continue;
    }
    assert(tgt < V);
    // dx = dloss * (softmax - onehot); the exponentials are parked in dx, then normalised.
    const F m = simd::row_max(x, V);
    const double s = simd::exp_sum(x, m, dx, V);
    const F scale = (F)((double)dloss[n] / s);
    for (int j = 0; j < V; ++j) dx[j] *= scale;
    dx[tgt] -= dloss[n];
    std::fill(dx + V, dx + Vp, F(0));
  }
}

template void softmax_xent_forward<float>(float*, const float*, const int32_t*, int, int, int);
template void softmax_xent_forward<double>(double*, const double*, const int32_t*, int, int, int);
template void softmax_xent_backward<float>(float*, const float*, const int32_t*, const float*, int, int, int);
template void softmax_xent_backward<double>(double*, const double*, const int32_t*, const double*, int, int, int);

}  // namespace llmtrain::cpu
