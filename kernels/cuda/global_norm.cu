// Sum of squares of the fp32 gradient buffer for clipping by global norm, deterministically: a
// fixed grid of kPartials blocks, each summing a fixed grid-stride subset in double with a fixed
// reduction tree, then one block adds the partials in index order. The result depends only on the
// data and n, never on scheduling. Also the in-place scale used to apply the clip factor.
#include "common.cuh"
#include "cuda/ops.h"

namespace llmtrain::cuda {
namespace {

constexpr int kPartials = 1024;
constexpr int kThreads = 256;

// ================================ kernels ================================

__global__ void sumsq_partial_kernel(double* partial, const float* x, int64_t n) {
  __shared__ double sm[32];
  // Each thread reads 4 floats per step; within a thread fp32 products are summed in double.
  const int64_t nvec = n / 4;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  double acc = 0.0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec; i += stride) {
    F32x4 v = load16(x + i * 4);
#pragma unroll
    for (int j = 0; j < 4; ++j) acc += static_cast<double>(v.v[j]) * v.v[j];
  }
  if (blockIdx.x == 0) {
    for (int64_t i = nvec * 4 + threadIdx.x; i < n; i += blockDim.x) acc += static_cast<double>(x[i]) * x[i];
  }
  double s = block_sum(acc, sm);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sumsq_final_kernel(double* out, const double* partial, int np) {
  __shared__ double sm[32];
  double acc = 0.0;
  for (int i = threadIdx.x; i < np; i += blockDim.x) acc += partial[i];
  double s = block_sum(acc, sm);
  if (threadIdx.x == 0) *out = s;
}

__global__ void scale_kernel(float* x, float s, int64_t n) {
  int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (i + 4 <= n) {
    F32x4 v = load16(x + i);
#pragma unroll
    for (int j = 0; j < 4; ++j) v.v[j] *= s;
    store16(x + i, v);
  } else {
    for (; i < n; ++i) x[i] *= s;
  }
}

}  // namespace

// ================================ launchers ================================

size_t global_norm_scratch_bytes() { return kPartials * sizeof(double); }

void global_norm_squared(double* out, const float* x, int64_t n, void* scratch, cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(x), "global_norm_squared: x must be 16-byte aligned");
  LLMTRAIN_CUDA_REQUIRE(scratch != nullptr, "global_norm_squared: scratch is required");
  auto* partial = static_cast<double*>(scratch);
  sumsq_partial_kernel<<<kPartials, kThreads, 0, stream>>>(partial, x, n);
  CUDA_CHECK_LAUNCH();
  sumsq_final_kernel<<<1, kThreads, 0, stream>>>(out, partial, kPartials);
  CUDA_CHECK_LAUNCH();
}

void scale_inplace(float* x, float s, int64_t n, cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(x), "scale_inplace: x must be 16-byte aligned");
  if (n <= 0) return;
  unsigned blocks = static_cast<unsigned>(ceil_div<int64_t>(ceil_div<int64_t>(n, 4), 256));
  scale_kernel<<<blocks, 256, 0, stream>>>(x, s, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda
