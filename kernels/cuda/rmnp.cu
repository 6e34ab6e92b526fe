// RMNP's fused row kernel (momentum, Nesterov, row l2 norm, shape scale, decoupled decay and the
// update, with the row held in registers: 20 bytes per parameter) and the plain row normalisation,
// the twins of kernels/cpu/rmnp.cpp. One block per row; deterministic in-block reductions.
#include "cuda/optim_common.cuh"

namespace llmtrain::cuda::optim {
namespace {

__device__ __forceinline__ int find_unit(const RowUnit* units, int nunits, int64_t row) {
  int lo = 0, hi = nunits - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (units[mid].row0 <= row)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// The row lives in registers: VPT float4 per thread, one read of g/m/w and one write of m/w.
template <int VPT>
__global__ void rmnp_vec_kernel(const RowUnit* __restrict__ units, int nunits, int cols, RmnpArgs a) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  const RowUnit u = units[find_unit(units, nunits, row)];
  const int64_t base = (row - u.row0) * (int64_t)cols;
  float4 uu[VPT], ww[VPT];
  float ss = 0.0f;
  const MomArgs ma{a.b, a.omb, a.sum_form, a.nesterov};
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int col = 4 * (k * (int)blockDim.x + (int)threadIdx.x);
    if (col < cols) {
      const int64_t j = base + col;
      float4 g = ld4(u.g + j), m = ld4(u.m + j);
      ww[k] = ld4(u.w + j);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float r = mom_elem(at(g, e), at(m, e), ma);
        at(uu[k], e) = r;
        ss += r * r;
      }
      st4(u.m + j, m);
    }
  }
  ss = block_sum(ss, red);
  const float d = fmaxf(sqrtf(ss), a.eps);
  const float step = a.lr * u.scale;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int col = 4 * (k * (int)blockDim.x + (int)threadIdx.x);
    if (col < cols) {
      const int64_t j = base + col;
      float4 w = ww[k];
#pragma unroll
      for (int e = 0; e < 4; ++e) at(w, e) = at(w, e) * a.keep - step * (at(uu[k], e) / d);
      st4(u.w + j, w);
      store_bf4(u.wbf, j, w);
    }
  }
}

// Any width: pass 1 updates M and sums U^2; pass 2 rebuilds U from the new M and G (the same thread
// wrote those M values) and updates W. Used for rows too wide for registers or not float4-aligned.
__global__ void rmnp_generic_kernel(const RowUnit* __restrict__ units, int nunits, int cols, RmnpArgs a) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  const RowUnit u = units[find_unit(units, nunits, row)];
  const int64_t base = (row - u.row0) * (int64_t)cols;
  const MomArgs ma{a.b, a.omb, a.sum_form, a.nesterov};
  float ss = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float m = u.m[base + c];
    const float r = mom_elem(u.g[base + c], m, ma);
    u.m[base + c] = m;
    ss += r * r;
  }
  ss = block_sum(ss, red);
  const float d = fmaxf(sqrtf(ss), a.eps);
  const float step = a.lr * u.scale;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float g = u.g[base + c], mj = u.m[base + c];
    const float r = a.nesterov ? (a.sum_form ? g + a.b * mj : a.omb * g + a.b * mj) : mj;
    const float w = u.w[base + c] * a.keep - step * (r / d);
    u.w[base + c] = w;
    store_bf(u.wbf, base + c, w);
  }
}

__global__ void normalize_rows_kernel(const RowUnit* __restrict__ units, int nunits, int cols, float eps) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  const RowUnit u = units[find_unit(units, nunits, row)];
  const int64_t base = (row - u.row0) * (int64_t)cols;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) ss += u.g[base + c] * u.g[base + c];
  ss = block_sum(ss, red);
  const float d = fmaxf(sqrtf(ss), eps);
  for (int c = threadIdx.x; c < cols; c += blockDim.x) u.w[base + c] = u.g[base + c] / d;
}

}  // namespace

void rmnp_rows(const RowUnit* units, int nunits, int64_t total_rows, int cols, bool vec, const RmnpArgs& a,
               cudaStream_t s) {
  if (total_rows <= 0 || nunits <= 0) return;
  LLMTRAIN_CUDA_REQUIRE(total_rows < (int64_t)1 << 31, "rmnp_rows: too many rows for one launch");
  const int64_t f4 = ceil_div<int64_t>(cols, 4);
  auto threads_for = [&](int vpt) { return (int)std::max<int64_t>(32, ceil_div<int64_t>(ceil_div<int64_t>(f4, vpt), 32) * 32); };
  const dim3 grid((unsigned)total_rows);
  if (vec && f4 <= 512 * 1) {
    rmnp_vec_kernel<1><<<grid, threads_for(1), 0, s>>>(units, nunits, cols, a);
  } else if (vec && f4 <= 512 * 2) {
    rmnp_vec_kernel<2><<<grid, threads_for(2), 0, s>>>(units, nunits, cols, a);
  } else if (vec && f4 <= 512 * 4) {
    rmnp_vec_kernel<4><<<grid, threads_for(4), 0, s>>>(units, nunits, cols, a);
  } else if (vec && f4 <= 512 * 8) {
    rmnp_vec_kernel<8><<<grid, threads_for(8), 0, s>>>(units, nunits, cols, a);
  } else {
    rmnp_generic_kernel<<<grid, 512, 0, s>>>(units, nunits, cols, a);
  }
  CUDA_CHECK_LAUNCH();
}

void normalize_rows_multi(const RowUnit* units, int nunits, int64_t total_rows, int cols, float eps, cudaStream_t s) {
  if (total_rows <= 0 || nunits <= 0) return;
  LLMTRAIN_CUDA_REQUIRE(total_rows < (int64_t)1 << 31, "normalize_rows_multi: too many rows for one launch");
  const int threads = cols >= 2048 ? 512 : cols >= 512 ? 256 : 128;
  normalize_rows_kernel<<<(unsigned)total_rows, threads, 0, s>>>(units, nunits, cols, eps);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda::optim
