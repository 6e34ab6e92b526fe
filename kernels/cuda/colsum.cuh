// Deterministic column reductions over [N, C] row-major data, the shape of every parameter gradient
// that sums over tokens (bias, LayerNorm/RMSNorm gains). Pass 1: a fixed grid of
// (C/256 column strips) x (P row groups); each warp reads 256 contiguous channels of a row per
// step (8 per lane, one 128-bit load) and keeps fp32 sums in registers; the block's 8 warps are
// combined in warp order into partial[p][s][c]. Pass 2: one thread per column adds the P partials
// in index order into the fp32 gradient. No atomics: the result depends only on N, C and the data.
#pragma once
#include "common.cuh"

namespace llmtrain::cuda::colsum {

constexpr int kPartials = 128;  // row groups P; fixes the scratch size and the summation order
constexpr int kWarps = 8;
constexpr int kStrip = 256;  // channels per block: 32 lanes x 8

inline size_t scratch_bytes(int C, int nsums) {
  return static_cast<size_t>(kPartials) * nsums * C * sizeof(float);
}
inline int partials_for(int N) { return N <= 0 ? 1 : (ceil_div(N, kWarps) < kPartials ? ceil_div(N, kWarps) : kPartials); }

// Loader: __device__ void operator()(int n, int c0, float (&v)[NS][8]) fills the NS contributions
// of row n, channels c0..c0+7 (c0 + 8 <= C guaranteed).
template <int NS, class Loader>
__global__ void __launch_bounds__(kWarps * 32) partial_kernel(float* partial, int N, int C, Loader ld) {
  __shared__ float sm[kWarps][NS][kStrip];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int c0 = blockIdx.x * kStrip + lane * 8;
  float acc[NS][8];
#pragma unroll
  for (int s = 0; s < NS; ++s)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[s][j] = 0.0f;
  if (c0 < C) {
    for (int n = blockIdx.y * kWarps + warp; n < N; n += gridDim.y * kWarps) {
      float v[NS][8];
      ld(n, c0, v);
#pragma unroll
      for (int s = 0; s < NS; ++s)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[s][j] += v[s][j];
    }
  }
#pragma unroll
  for (int s = 0; s < NS; ++s)
#pragma unroll
    for (int j = 0; j < 8; ++j) sm[warp][s][lane * 8 + j] = acc[s][j];
  __syncthreads();
  const int c = blockIdx.x * kStrip + threadIdx.x;
  if (c < C) {
#pragma unroll
    for (int s = 0; s < NS; ++s) {
      float sum = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += sm[w][s][threadIdx.x];
      partial[(static_cast<size_t>(blockIdx.y) * NS + s) * C + c] = sum;
    }
  }
}

template <int NS>
__global__ void final_kernel(float* out0, float* out1, const float* partial, int P, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
#pragma unroll
  for (int s = 0; s < NS; ++s) {
    float* out = s == 0 ? out0 : out1;
    if (out == nullptr) continue;
    float sum = 0.0f;
    for (int p = 0; p < P; ++p) sum += partial[(static_cast<size_t>(p) * NS + s) * C + c];
    out[c] += sum;
  }
}

// Runs both passes: out0 (and out1 when NS == 2) += column sums. Either output may be nullptr.
template <int NS, class Loader>
void run(float* out0, float* out1, int N, int C, const Loader& ld, void* scratch, cudaStream_t stream) {
  static_assert(NS == 1 || NS == 2, "colsum: one or two sums");
  if (out0 == nullptr && out1 == nullptr) return;
  LLMTRAIN_CUDA_REQUIRE(C % 8 == 0, "column reduction: C must be a multiple of 8");
  LLMTRAIN_CUDA_REQUIRE(scratch != nullptr, "column reduction: scratch is required (colsum_scratch_bytes)");
  if (N <= 0 || C <= 0) return;
  const int P = partials_for(N);
  auto* partial = static_cast<float*>(scratch);
  dim3 grid(ceil_div(C, kStrip), P);
  partial_kernel<NS, Loader><<<grid, kWarps * 32, 0, stream>>>(partial, N, C, ld);
  CUDA_CHECK_LAUNCH();
  final_kernel<NS><<<ceil_div(C, 256), 256, 0, stream>>>(out0, out1, partial, P, C);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda::colsum
