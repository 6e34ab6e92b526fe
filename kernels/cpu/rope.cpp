// Rotary position embedding (LLaMA), in Hugging Face's "rotate_half" layout: within a head, dim i
// pairs with dim i + HS/2 (not with its neighbour, as in the original paper), and the pair at
// position t turns by the angle t * theta^(-2i/HS). The rotation is applied in place to q and k
// after their projections. Being orthogonal, its adjoint is the rotation by -angle, which is what
// backward applies to the gradient (also in place).
#include <cmath>
#include <cstddef>

#include "cpu/ops.h"

namespace llmtrain::cpu {

void rope_tables(float* cos_t, float* sin_t, int T, int HS, float theta) {
  const int half = HS / 2;
  // Angles in double, rounded once at the end: t * freq reaches ~1e4 rad at long contexts.
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < half; ++i) {
      const double freq = std::pow((double)theta, -2.0 * i / HS);
      const double ang = (double)t * freq;
      cos_t[(std::ptrdiff_t)t * half + i] = (float)std::cos(ang);
      sin_t[(std::ptrdiff_t)t * half + i] = (float)std::sin(ang);
    }
}

namespace {
// Rotates every (i, i + HS/2) pair of every head by `sign` * angle(t, i).
template <typename F>
void rope_rotate(F* x, const float* cos_t, const float* sin_t, int B, int T, int H, int HS, int stride, F sign) {
  const int half = HS / 2;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const float* cs = cos_t + (std::ptrdiff_t)t * half;
      const float* sn = sin_t + (std::ptrdiff_t)t * half;
      F* row = x + ((std::ptrdiff_t)b * T + t) * stride;
      for (int h = 0; h < H; ++h) {
        F* x1 = row + (std::ptrdiff_t)h * HS;
        F* x2 = x1 + half;
        for (int i = 0; i < half; ++i) {
          const F c = (F)cs[i], s = sign * (F)sn[i];
          const F a = x1[i], bb = x2[i];
          x1[i] = a * c - bb * s;
          x2[i] = bb * c + a * s;
        }
      }
    }
}
}  // namespace

template <typename F>
void rope_forward(F* x, const float* cos_t, const float* sin_t, int B, int T, int H, int HS, int stride) {
  rope_rotate<F>(x, cos_t, sin_t, B, T, H, HS, stride, F(1));
}

template <typename F>
void rope_backward(F* dx, const float* cos_t, const float* sin_t, int B, int T, int H, int HS, int stride) {
  rope_rotate<F>(dx, cos_t, sin_t, B, T, H, HS, stride, F(-1));
}

template void rope_forward<float>(float*, const float*, const float*, int, int, int, int, int);
template void rope_forward<double>(double*, const float*, const float*, int, int, int, int, int);
template void rope_backward<float>(float*, const float*, const float*, int, int, int, int, int);
template void rope_backward<double>(double*, const float*, const float*, int, int, int, int, int);

}  // namespace llmtrain::cpu
