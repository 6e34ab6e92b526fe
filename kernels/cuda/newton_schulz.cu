// The element-wise pieces of the device Newton-Schulz iteration (the GEMMs are cuBLASLt, see
// src/optim/matrix_common_cuda.cpp's NsEngine): Frobenius pre-normalisation (fixed-order partial
// sums, no atomics) with the cast to bf16, the bf16 -> fp32 cast of the result, and the tile
// mirror that completes a symmetric product computed as a block column plus a diagonal block.
// The CPU reference iteration is kernels/cpu/newton_schulz.cpp.
#include "cuda/optim_common.cuh"

namespace llmtrain::cuda::optim {
namespace {

__global__ void sumsq_partials_kernel(const float* __restrict__ x, int64_t n_each, float* __restrict__ partials) {
  __shared__ double red[32];
  const int mat = blockIdx.y, p = blockIdx.x;
  const int64_t len = (n_each + kNormParts - 1) / kNormParts;
  const int64_t lo = p * len, hi = min(n_each, lo + len);
  const float* xm = x + (int64_t)mat * n_each;
  double s = 0.0;
  for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) s += (double)xm[j] * (double)xm[j];
  s = block_sum(s, red);
  if (threadIdx.x == 0) partials[mat * kNormParts + p] = (float)s;
}

__global__ void cast_scaled_kernel(const float* __restrict__ x, bf16* __restrict__ out, int64_t n_each,
                                   const float* __restrict__ partials, float norm_factor) {
  __shared__ float denom;
  const int mat = blockIdx.y;
  if (threadIdx.x == 0) {
    double s = 0.0;
    for (int p = 0; p < kNormParts; ++p) s += (double)partials[mat * kNormParts + p];
    denom = (float)((double)norm_factor * sqrt(s) + 1e-7);
  }
  __syncthreads();
  const float dn = denom;
  const float* xm = x + (int64_t)mat * n_each;
  bf16* om = out + (int64_t)mat * n_each;
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < n_each; j += (int64_t)gridDim.x * blockDim.x)
    om[j] = __float2bfloat16_rn(xm[j] / dn);
}

// One 32x32 tile per block through shared memory, so both the read of the lower block and the
// write of the upper block are coalesced (column-major: consecutive threads, consecutive rows).
__global__ void mirror_block_kernel(bf16* __restrict__ M, int s, int h, long long stride) {
  __shared__ bf16 tile[32][33];
  bf16* A = M + (long long)blockIdx.z * stride;
  const int r0 = blockIdx.x * 32, c0 = h + blockIdx.y * 32;  // this block writes rows r0.., cols c0..
  for (int j = threadIdx.y; j < 32; j += blockDim.y) {
    const int r = r0 + j, c = c0 + threadIdx.x;  // reads A(c, r), known (c >= h > r)
    if (r < h && c < s) tile[j][threadIdx.x] = A[c + (long long)r * s];
  }
  __syncthreads();
  for (int j = threadIdx.y; j < 32; j += blockDim.y) {
    const int r = r0 + threadIdx.x, c = c0 + j;  // writes A(r, c) = A(c, r) = tile[r - r0][c - c0]
    if (r < h && c < s) A[r + (long long)c * s] = tile[threadIdx.x][j];
  }
}

__global__ void bf16_to_f32_kernel(const bf16* __restrict__ in, float* __restrict__ out, int64_t n) {
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += (int64_t)gridDim.x * blockDim.x)
    out[j] = __bfloat162float(in[j]);
}

}  // namespace

void sumsq_partials(const float* x, int count, int64_t n_each, float* partials, cudaStream_t s) {
  if (count <= 0) return;
  sumsq_partials_kernel<<<dim3(kNormParts, count), kThreads, 0, s>>>(x, n_each, partials);
  CUDA_CHECK_LAUNCH();
}

void cast_scaled_bf16(const float* x, void* out, int count, int64_t n_each, const float* partials, float norm_factor,
                      cudaStream_t s) {
  if (count <= 0) return;
  const int gx = (int)std::max<int64_t>(1, std::min<int64_t>(ceil_div<int64_t>(n_each, kThreads * 8), 1024));
  cast_scaled_kernel<<<dim3(gx, count), kThreads, 0, s>>>(x, static_cast<bf16*>(out), n_each, partials, norm_factor);
  CUDA_CHECK_LAUNCH();
}

void mirror_block_bf16(void* M, int s, int h, int count, long long stride, cudaStream_t st) {
  if (count <= 0 || h <= 0 || h >= s) return;
  const dim3 grid((unsigned)ceil_div(h, 32), (unsigned)ceil_div(s - h, 32), (unsigned)count);
  mirror_block_kernel<<<grid, dim3(32, 8), 0, st>>>(static_cast<bf16*>(M), s, h, stride);
  CUDA_CHECK_LAUNCH();
}

void cast_bf16_to_f32(const void* in, float* out, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  bf16_to_f32_kernel<<<grid_for(n), kThreads, 0, s>>>(static_cast<const bf16*>(in), out, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda::optim
