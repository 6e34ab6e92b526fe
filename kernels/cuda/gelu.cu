// GELU (tanh approximation, as GPT-2) forward and backward on bf16 activations. Memory-bound: each
// thread moves 8 elements per 128-bit access and computes in fp32. The matmul wrapper can also fuse
// the forward into the cuBLASLt epilogue; this kernel is the standalone path and the backward.
#include "common.cuh"
#include "cuda/ops.h"

namespace llmtrain::cuda {
namespace {

// ================================ kernels ================================

constexpr float kGeluK = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluC = 0.044715f;

__device__ __forceinline__ float gelu_f(float x) {
  float u = kGeluK * (x + kGeluC * x * x * x);
  return 0.5f * x * (1.0f + tanhf(u));
}
__device__ __forceinline__ float gelu_grad_f(float x) {
  float u = kGeluK * (x + kGeluC * x * x * x);
  float th = tanhf(u);
  float du = kGeluK * (1.0f + 3.0f * kGeluC * x * x);
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

__global__ void gelu_forward_kernel(bf16* out, const bf16* inp, int64_t n) {
  int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i + 8 <= n) {
    float x[8], y[8];
    unpack8(load16(inp + i), x);
#pragma unroll
    for (int j = 0; j < 8; ++j) y[j] = gelu_f(x[j]);
    store16(out + i, pack8(y));
  } else {
    for (; i < n; ++i) out[i] = to_bf(gelu_f(to_f(inp[i])));
  }
}

__global__ void gelu_backward_kernel(bf16* dinp, const bf16* dout, const bf16* inp, int64_t n, bool acc) {
  int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i + 8 <= n) {
    float x[8], g[8], d[8];
    unpack8(load16(inp + i), x);
    unpack8(load16(dout + i), g);
    if (acc) {
      unpack8(load16(dinp + i), d);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) d[j] = 0.0f;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) d[j] += gelu_grad_f(x[j]) * g[j];
    store16(dinp + i, pack8(d));
  } else {
    for (; i < n; ++i) {
      float d = acc ? to_f(dinp[i]) : 0.0f;
      dinp[i] = to_bf(d + gelu_grad_f(to_f(inp[i])) * to_f(dout[i]));
    }
  }
}

}  // namespace

// ================================ launchers ================================

void gelu_forward(bf16* out, const bf16* inp, int64_t N, cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(out) && is_aligned16(inp), "gelu_forward: pointers must be 16-byte aligned");
  if (N <= 0) return;
  const int threads = 256;
  int64_t blocks = ceil_div<int64_t>(ceil_div<int64_t>(N, 8), threads);
  gelu_forward_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(out, inp, N);
  CUDA_CHECK_LAUNCH();
}

void gelu_backward(bf16* dinp, const bf16* dout, const bf16* inp, int64_t N, cudaStream_t stream, bool accumulate) {
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(dinp) && is_aligned16(dout) && is_aligned16(inp),
                        "gelu_backward: pointers must be 16-byte aligned");
  if (N <= 0) return;
  const int threads = 256;
  int64_t blocks = ceil_div<int64_t>(ceil_div<int64_t>(N, 8), threads);
  gelu_backward_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(dinp, dout, inp, N, accumulate);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda
