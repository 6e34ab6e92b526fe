// Token + position embedding, the first op of both models: out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]
// (LLaMA passes wpe = nullptr and uses RoPE instead). The backward is a scatter-add into the
// embedding tables, where different tokens can hit the same row; to stay deterministic without
// atomics, threads split the channels, and each walks the tokens in order for its slice.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "cpu/ops.h"

namespace llmtrain::cpu {

template <typename F>
void embedding_forward(F* out, const int32_t* inp, const F* wte, const F* wpe, int B, int T, int C) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const std::ptrdiff_t bt = (std::ptrdiff_t)b * T + t;
      F* o = out + bt * C;
      const F* e = wte + (std::ptrdiff_t)inp[bt] * C;
      if (wpe) {
        const F* p = wpe + (std::ptrdiff_t)t * C;
        for (int c = 0; c < C; ++c) o[c] = e[c] + p[c];
      } else {
        for (int c = 0; c < C; ++c) o[c] = e[c];
      }
    }
}

template <typename F>
void embedding_backward(F* dwte, F* dwpe, const F* dout, const int32_t* inp, int B, int T, int C) {
  // A channel slice per work item: repeated tokens add into the same dwte row in token order.
  constexpr int CH = 64;
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < C; c0 += CH) {
    const int ce = std::min(C, c0 + CH);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        const std::ptrdiff_t bt = (std::ptrdiff_t)b * T + t;
        const F* d = dout + bt * C;
        if (dwte) {
          F* g = dwte + (std::ptrdiff_t)inp[bt] * C;
          for (int c = c0; c < ce; ++c) g[c] += d[c];
        }
        if (dwpe) {
          F* g = dwpe + (std::ptrdiff_t)t * C;
          for (int c = c0; c < ce; ++c) g[c] += d[c];
        }
      }
  }
}

template void embedding_forward<float>(float*, const int32_t*, const float*, const float*, int, int, int);
template void embedding_forward<double>(double*, const int32_t*, const double*, const double*, int, int, int);
template void embedding_backward<float>(float*, float*, const float*, const int32_t*, int, int, int);
template void embedding_backward<double>(double*, double*, const double*, const int32_t*, int, int, int);

}  // namespace llmtrain::cpu
