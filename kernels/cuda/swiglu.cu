// SwiGLU (LLaMA MLP) forward and backward: out = silu(gate) * up, with silu(x) = x * sigmoid(x).
// Memory-bound elementwise kernels, 8 bf16 per 128-bit access, fp32 math.
#include "common.cuh"
#include "cuda/ops.h"

namespace llmtrain::cuda {
namespace {

// ================================ kernels ================================

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void swiglu_forward_kernel(bf16* out, const bf16* gate, const bf16* up, int64_t n) {
  int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i + 8 <= n) {
    float g[8], u[8], y[8];
    unpack8(load16(gate + i), g);
    unpack8(load16(up + i), u);
#pragma unroll
    for (int j = 0; j < 8; ++j) y[j] = g[j] * sigmoid_f(g[j]) * u[j];
    store16(out + i, pack8(y));
  } else {
    for (; i < n; ++i) {
      float g = to_f(gate[i]);
      out[i] = to_bf(g * sigmoid_f(g) * to_f(up[i]));
    }
  }
}

// d silu(g)/dg = s + g s (1 - s), s = sigmoid(g).
__device__ __forceinline__ void swiglu_grad(float g, float u, float d, float& dg, float& du) {
  float s = sigmoid_f(g);
  du = d * g * s;
  dg = d * u * (s + g * s * (1.0f - s));
}

__global__ void swiglu_backward_kernel(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up,
                                       int64_t n, bool acc) {
  int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i + 8 <= n) {
    float g[8], u[8], d[8], dg[8], du[8];
    unpack8(load16(gate + i), g);
    unpack8(load16(up + i), u);
    unpack8(load16(dout + i), d);
    if (acc) {
      unpack8(load16(dgate + i), dg);
      unpack8(load16(dup + i), du);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) dg[j] = du[j] = 0.0f;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float a, b;
      swiglu_grad(g[j], u[j], d[j], a, b);
      dg[j] += a;
      du[j] += b;
    }
    store16(dgate + i, pack8(dg));
    store16(dup + i, pack8(du));
  } else {
    for (; i < n; ++i) {
      float a, b;
      swiglu_grad(to_f(gate[i]), to_f(up[i]), to_f(dout[i]), a, b);
      dgate[i] = to_bf((acc ? to_f(dgate[i]) : 0.0f) + a);
      dup[i] = to_bf((acc ? to_f(dup[i]) : 0.0f) + b);
    }
  }
}

}  // namespace

// ================================ launchers ================================

void swiglu_forward(bf16* out, const bf16* gate, const bf16* up, int64_t N, cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(out) && is_aligned16(gate) && is_aligned16(up),
                        "swiglu_forward: pointers must be 16-byte aligned");
  if (N <= 0) return;
  const int threads = 256;
  int64_t blocks = ceil_div<int64_t>(ceil_div<int64_t>(N, 8), threads);
  swiglu_forward_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(out, gate, up, N);
  CUDA_CHECK_LAUNCH();
}

void swiglu_backward(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up, int64_t N,
                     cudaStream_t stream, bool accumulate) {
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(dgate) && is_aligned16(dup) && is_aligned16(dout) && is_aligned16(gate) &&
                            is_aligned16(up),
                        "swiglu_backward: pointers must be 16-byte aligned");
  if (N <= 0) return;
  const int threads = 256;
  int64_t blocks = ceil_div<int64_t>(ceil_div<int64_t>(N, 8), threads);
  swiglu_backward_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(dgate, dup, dout, gate, up, N,
                                                                                accumulate);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda
