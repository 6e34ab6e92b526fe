// GELU activation of GPT-2's MLP, in the tanh approximation GPT-2 was trained with:
// gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Since 0.5 (1 + tanh(u)) is
// the logistic sigmoid of 2u, it is computed as x * sigmoid(2u): in fp32 that runs on the
// vectorised exp of cpu/common.h (libm's tanhf, one element at a time, made this op cost more than
// the matmul next to it). Elementwise, so any split over threads gives the same bits.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu/ops.h"
#include "cpu/common.h"

namespace llmtrain::cpu {
namespace {
constexpr double kSqrt2OverPi = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kCubic = 0.044715;

// y = gelu(x) and its derivative dy/dx = s + x s (1 - s) 2 u'(x), s = sigmoid(2u),
// u'(x) = sqrt(2/pi) (1 + 3 * 0.044715 x^2). T is a vector of floats or a double; S its scalar.
template <typename T, typename S>
inline void gelu_eval(T x, T* y, T* dy) {
  const S k = (S)kSqrt2OverPi, a = (S)kCubic;
  const T x2 = x * x;
  T s, slope;
  simd::sigmoid(S(2) * k * (x + a * x2 * x), &s, &slope);
  *y = x * s;
  *dy = s + x * slope * (S(2) * k) * (S(1) + S(3) * a * x2);
}

// Runs f(x, y, dy) over the elements in chunks of one vector (fp32) or one by one (fp64).
template <typename F, typename Body>
inline void for_each_chunk(int64_t N, Body body) {
  constexpr int W = std::is_same_v<F, float> ? simd::kLanes : 1;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i += W) body(i, (int)std::min<int64_t>(W, N - i));
}
}  // namespace

template <typename F>
void gelu_forward(F* out, const F* inp, int64_t N) {
  for_each_chunk<F>(N, [=](int64_t i, int n) {
    if constexpr (std::is_same_v<F, float>) {
      simd::vf y, dy;
      gelu_eval<simd::vf, float>(simd::load_partial(inp + i, n), &y, &dy);
      simd::store_partial(out + i, y, n);
    } else {
      F dy;
      gelu_eval<F, F>(inp[i], out + i, &dy);
    }
  });
}

template <typename F>
void gelu_backward(F* dinp, const F* dout, const F* inp, int64_t N) {
  for_each_chunk<F>(N, [=](int64_t i, int n) {
    if constexpr (std::is_same_v<F, float>) {
      simd::vf y, dy;
      gelu_eval<simd::vf, float>(simd::load_partial(inp + i, n), &y, &dy);
      simd::store_partial(dinp + i, simd::load_partial(dinp + i, n) + dy * simd::load_partial(dout + i, n), n);
    } else {
      F y, dy;
      gelu_eval<F, F>(inp[i], &y, &dy);
      dinp[i] += dy * dout[i];
    }
  });
}

template void gelu_forward<float>(float*, const float*, int64_t);
template void gelu_forward<double>(double*, const double*, int64_t);
template void gelu_backward<float>(float*, const float*, const float*, int64_t);
template void gelu_backward<double>(double*, const double*, const double*, int64_t);

}  // namespace llmtrain::cpu
