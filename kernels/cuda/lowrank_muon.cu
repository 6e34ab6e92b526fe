// Low-rank Muon's device helpers: the column gather of the sketch X[:, idx] (column-major for
// cuSOLVER) and a counter-based uniform fill. The CPU twin is kernels/cpu/lowrank_muon.cpp.
#include "cuda/optim_common.cuh"

namespace llmtrain::cuda::optim {
namespace {

__global__ void gather_cols_kernel(const float* __restrict__ X, int64_t m, int64_t n, const int64_t* __restrict__ idx,
                                   int64_t k, float* __restrict__ S) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < m * k; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e % m, j = e / m;  // S column-major: e = i + j m
    S[e] = X[i * n + idx[j]];
  }
}

__global__ void fill_uniform_kernel(float* p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xBF58476D1CE4E5B9ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    p[i] = scale * ((float)(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f);
  }
}

}  // namespace

void gather_cols_colmajor(const float* X, int64_t m, int64_t n, const int64_t* idx, int64_t k, float* S,
                          cudaStream_t s) {
  gather_cols_kernel<<<grid_for(m * k), kThreads, 0, s>>>(X, m, n, idx, k, S);
  CUDA_CHECK_LAUNCH();
}

void fill_uniform(float* p, int64_t n, uint64_t seed, float scale, cudaStream_t s) {
  if (n <= 0) return;
  fill_uniform_kernel<<<grid_for(n), kThreads, 0, s>>>(p, n, seed, scale);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda::optim
