// RMSNorm over the channel dimension (LLaMA): out = x * rstd * weight with rstd =
// 1/sqrt(mean(x^2) + eps), saved per row for backward. Like LayerNorm without centring and bias;
// the same split applies: dinp per row across threads, dweight as column sums over channel slices.
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "cpu/ops.h"

namespace llmtrain::cpu {

template <typename F>
void rmsnorm_forward(F* out, F* rstd, const F* inp, const F* weight, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const F* x = inp + (std::ptrdiff_t)n * C;
    F* o = out + (std::ptrdiff_t)n * C;
    double ss = 0;
    for (int c = 0; c < C; ++c) ss += (double)x[c] * (double)x[c];
    const F r = (F)(1.0 / std::sqrt(ss / C + (double)eps));
    for (int c = 0; c < C; ++c) o[c] = x[c] * r * (weight ? weight[c] : F(1));
    rstd[n] = r;
  }
}

template <typename F>
void rmsnorm_backward(F* dinp, F* dweight, const F* dout, const F* inp, const F* weight, const F* rstd, int N,
                      int C) {
  if (dinp) {
    // dx = rstd * (g - xn * mean(g * xn)) with g = dout * weight and xn = x * rstd.
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      const F* x = inp + (std::ptrdiff_t)n * C;
      const F* d = dout + (std::ptrdiff_t)n * C;
      F* dx = dinp + (std::ptrdiff_t)n * C;
      const F r = rstd[n];
      double sgx = 0;
      for (int c = 0; c < C; ++c) sgx += (double)(d[c] * (weight ? weight[c] : F(1))) * (double)(x[c] * r);
      const F mgx = (F)(sgx / C);
      for (int c = 0; c < C; ++c) {
        const F g = d[c] * (weight ? weight[c] : F(1));
        dx[c] += r * (g - x[c] * r * mgx);
      }
    }
  }
  if (dweight) {
    constexpr int CH = 64;
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += CH) {
      const int ce = std::min(C, c0 + CH);
      double aw[CH] = {};
      for (int n = 0; n < N; ++n) {
        const F* x = inp + (std::ptrdiff_t)n * C;
        const F* d = dout + (std::ptrdiff_t)n * C;
        const F r = rstd[n];
        for (int c = c0; c < ce; ++c) aw[c - c0] += (double)d[c] * (double)(x[c] * r);
      }
      for (int c = c0; c < ce; ++c) dweight[c] += (F)aw[c - c0];
    }
  }
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int, int, float);
template void rmsnorm_forward<double>(double*, double*, const double*, const double*, int, int, float);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*, const float*, int,
                                      int);
template void rmsnorm_backward<double>(double*, double*, const double*, const double*, const double*, const double*,
                                       int, int);

}  // namespace llmtrain::cpu
