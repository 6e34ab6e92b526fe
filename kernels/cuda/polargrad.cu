// PolarGrad's step scale nu = <M, U> on the device: fixed-order fp64 partial dot products and one
// finishing block (deterministic). The CPU twin is kernels/cpu/polargrad.cpp.
#include "cuda/optim_common.cuh"

namespace llmtrain::cuda::optim {
namespace {

template <bool kBf16>
__global__ void dot_partials_kernel(const float* __restrict__ a, const void* __restrict__ b, int64_t n,
                                    double* __restrict__ partials) {
  __shared__ double red[32];
  const int64_t len = (n + kNormParts - 1) / kNormParts;
  const int64_t lo = blockIdx.x * len, hi = min(n, lo + len);
  double s = 0.0;
  for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) s += (double)a[j] * (double)load_d<kBf16>(b, j);
  s = block_sum(s, red);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void dot_finish_kernel(const double* __restrict__ partials, float* __restrict__ out) {
  double s = 0.0;
  for (int p = 0; p < kNormParts; ++p) s += partials[p];
  *out = (float)s;
}

}  // namespace

void dot_to_scale(const float* a, const void* b, bool b_bf16, int64_t n, double* partials, float* scale_out,
                  cudaStream_t s) {
  if (b_bf16)
    dot_partials_kernel<true><<<kNormParts, kThreads, 0, s>>>(a, b, n, partials);
  else
    dot_partials_kernel<false><<<kNormParts, kThreads, 0, s>>>(a, b, n, partials);
  CUDA_CHECK_LAUNCH();
  dot_finish_kernel<<<1, 1, 0, s>>>(partials, scale_out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda::optim
