// SwiGLU gating of LLaMA's MLP: out = silu(gate) * up with silu(g) = g * sigmoid(g); the gate and
// up projections are separate matmuls, so this op only combines them. fp32 runs in vector chunks
// on the exp of cpu/common.h (libm's expf is scalar). Elementwise, so any split over threads gives
// the same bits.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu/ops.h"
#include "cpu/common.h"

namespace llmtrain::cpu {
namespace {
// Runs body(i, n) over chunks [i, i + n) of one vector (fp32) or one element (fp64).
template <typename F, typename Body>
inline void for_each_chunk(int64_t N, Body body) {
  constexpr int W = std::is_same_v<F, float> ? simd::kLanes : 1;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i += W) body(i, (int)std::min<int64_t>(W, N - i));
}

// silu'(g) = s + g s (1 - s), s = sigmoid(g). T is a vector of floats or a double.
template <typename T>
inline void swiglu_eval(T g, T up, T d, T* dgate, T* dup) {
  T s, slope;
  simd::sigmoid(g, &s, &slope);
  *dgate = d * up * (s + g * slope);
  *dup = d * g * s;
}
}  // namespace

template <typename F>
void swiglu_forward(F* out, const F* gate, const F* up, int64_t N) {
  for_each_chunk<F>(N, [=](int64_t i, int n) {
    if constexpr (std::is_same_v<F, float>) {
      const simd::vf g = simd::load_partial(gate + i, n);
      simd::vf s, slope;
      simd::sigmoid(g, &s, &slope);
      simd::store_partial(out + i, g * s * simd::load_partial(up + i, n), n);
    } else {
      F s, slope;
      simd::sigmoid(gate[i], &s, &slope);
      out[i] = gate[i] * s * up[i];
    }
  });
}

template <typename F>
void swiglu_backward(F* dgate, F* dup, const F* dout, const F* gate, const F* up, int64_t N) {
  for_each_chunk<F>(N, [=](int64_t i, int n) {
    if constexpr (std::is_same_v<F, float>) {
      simd::vf dg, du;
      swiglu_eval(simd::load_partial(gate + i, n), simd::load_partial(up + i, n), simd::load_partial(dout + i, n), &dg,
                  &du);
      if (dgate) simd::store_partial(dgate + i, simd::load_partial(dgate + i, n) + dg, n);
      if (dup) simd::store_partial(dup + i, simd::load_partial(dup + i, n) + du, n);
    } else {
      F dg, du;
      swiglu_eval(gate[i], up[i], dout[i], &dg, &du);
      if (dgate) dgate[i] += dg;
      if (dup) dup[i] += du;
    }
  });
}

template void swiglu_forward<float>(float*, const float*, const float*, int64_t);
template void swiglu_forward<double>(double*, const double*, const double*, int64_t);
template void swiglu_backward<float>(float*, float*, const float*, const float*, const float*, int64_t);
template void swiglu_backward<double>(double*, double*, const double*, const double*, const double*, int64_t);

}  // namespace llmtrain::cpu
