// LayerNorm over the channel dimension (GPT-2): out = (x - mean) * rstd * weight + bias, with the
// per-row mean and rstd = 1/sqrt(var + eps) saved for backward. Row statistics are summed in
// double so fp32 activations with a large mean lose nothing to cancellation. The backward has two
// kinds of output: dinp is per row (rows split across threads), while dweight and dbias are sums
// over rows, computed by splitting channels across threads so no two threads add to one element.
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "cpu/ops.h"

namespace llmtrain::cpu {

template <typename F>
void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* weight, const F* bias, int N, int C,
                       float eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const F* x = inp + (std::ptrdiff_t)n * C;
    F* o = out + (std::ptrdiff_t)n * C;
    double s = 0;
    for (int c = 0; c < C; ++c) s += (double)x[c];
    const double m = s / C;
    // Two-pass variance: the sum of squared deviations, not E[x^2] - m^2.
    double v = 0;
    for (int c = 0; c < C; ++c) {
      const double d = (double)x[c] - m;
      v += d * d;
    }
    const double r = 1.0 / std::sqrt(v / C + (double)eps);
    const F mf = (F)m, rf = (F)r;
    for (int c = 0; c < C; ++c) {
      const F xn = (x[c] - mf) * rf;
      o[c] = xn * (weight ? weight[c] : F(1)) + (bias ? bias[c] : F(0));
    }
    mean[n] = mf;
    rstd[n] = rf;
  }
}

template <typename F>
void layernorm_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight,
                        const F* mean, const F* rstd, int N, int C) {
  if (dinp) {
    // dx = rstd * (g - mean(g) - xn * mean(g * xn)) with g = dout * weight, xn the normalised x.
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      const F* x = inp + (std::ptrdiff_t)n * C;
      const F* d = dout + (std::ptrdiff_t)n * C;
      F* dx = dinp + (std::ptrdiff_t)n * C;
      const F m = mean[n], r = rstd[n];
      double sg = 0, sgx = 0;
      for (int c = 0; c < C; ++c) {
        const F g = d[c] * (weight ? weight[c] : F(1));
        sg += (double)g;
        sgx += (double)g * (double)((x[c] - m) * r);
      }
      const F mg = (F)(sg / C), mgx = (F)(sgx / C);
      for (int c = 0; c < C; ++c) {
        const F g = d[c] * (weight ? weight[c] : F(1));
        const F xn = (x[c] - m) * r;
        dx[c] += r * (g - mg - xn * mgx);
      }
    }
  }
  if (dweight || dbias) {
    // Column sums over rows, one channel slice per work item, accumulated in double.
    constexpr int CH = 64;
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += CH) {
      const int ce = std::min(C, c0 + CH);
      double aw[CH] = {}, ab[CH] = {};
      for (int n = 0; n < N; ++n) {
        const F* x = inp + (std::ptrdiff_t)n * C;
        const F* d = dout + (std::ptrdiff_t)n * C;
        const F m = mean[n], r = rstd[n];
        for (int c = c0; c < ce; ++c) {
          aw[c - c0] += (double)d[c] * (double)((x[c] - m) * r);
          ab[c - c0] += (double)d[c];
        }
      }
      for (int c = c0; c < ce; ++c) {
        if (dweight) dweight[c] += (F)aw[c - c0];
        if (dbias) dbias[c] += (F)ab[c - c0];
      }
    }
  }
}

template void layernorm_forward<float>(float*, float*, float*, const float*, const float*, const float*, int, int,
                                       float);
template void layernorm_forward<double>(double*, double*, double*, const double*, const double*, const double*, int,
                                        int, float);
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                        const float*, const float*, int, int);
template void layernorm_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                         const double*, const double*, int, int);

}  // namespace llmtrain::cpu
