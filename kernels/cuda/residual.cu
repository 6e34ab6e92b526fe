// Residual add on bf16 activations: out = a + b, summed in fp32 and rounded once. Its backward is
// the identity (the gradient flows to both branches unchanged), so there is no backward kernel; the
// fused residual + norm forwards in layernorm.cu / rmsnorm.cu cover the hot path.
#include "common.cuh"
#include "cuda/ops.h"

namespace llmtrain::cuda {
namespace {

// ================================ kernels ================================

__global__ void residual_forward_kernel(bf16* out, const bf16* a, const bf16* b, int64_t n) {
  int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i + 8 <= n) {
    float x[8], y[8];
    unpack8(load16(a + i), x);
    unpack8(load16(b + i), y);
#pragma unroll
    for (int j = 0; j < 8; ++j) x[j] += y[j];
    store16(out + i, pack8(x));
  } else {
    for (; i < n; ++i) out[i] = to_bf(to_f(a[i]) + to_f(b[i]));
  }
}

}  // namespace

// ================================ launchers ================================

void residual_forward(bf16* out, const bf16* a, const bf16* b, int64_t N, cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(out) && is_aligned16(a) && is_aligned16(b),
                        "residual_forward: pointers must be 16-byte aligned");
  if (N <= 0) return;
  const int threads = 256;
  int64_t blocks = ceil_div<int64_t>(ceil_div<int64_t>(N, 8), threads);
  residual_forward_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(out, a, b, N);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda
