// Kernels of the device optimizers (see optim_kernels.h for the contracts). The element formulas
// are written exactly as in src/optim/*.cpp, operation for operation, so that a GPU update differs
// from the CPU one only by rounding (fused multiply-adds, sqrt/division are IEEE on both). Every
// multi-tensor kernel runs one 256-thread block per chunk; float4 accesses when the unit allows.
#include <algorithm>

#include "common.cuh"
#include "cuda/optim_kernels.h"

namespace llmtrain::cuda::optim {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ void store_bf(void* p, int64_t j, float x) {
  if (p) static_cast<bf16*>(p)[j] = __float2bfloat16_rn(x);
}
__device__ __forceinline__ void store_bf4(void* p, int64_t j, float4 x) {
  if (p) {
    __nv_bfloat162 lo = __floats2bfloat162_rn(x.x, x.y), hi = __floats2bfloat162_rn(x.z, x.w);
    __nv_bfloat162* q = reinterpret_cast<__nv_bfloat162*>(static_cast<bf16*>(p) + j);
    q[0] = lo;
    q[1] = hi;
  }
}
__device__ __forceinline__ float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ void st4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }
__device__ __forceinline__ float& at(float4& v, int k) { return (&v.x)[k]; }

// ================================ AdamW ================================

__device__ __forceinline__ float adam_elem(float& w, float g, float& m, float& v, const AdamArgs& a, float keep) {
  const float mj = a.b1 * m + a.omb1 * g;
  const float vj = a.b2 * v + a.omb2 * g * g;
  m = mj;
  v = vj;
  const float u = a.uncorrected ? mj / (sqrtf(vj) + a.eps) : (mj * a.ibc1) / (sqrtf(vj * a.ibc2) + a.eps);
  w = w * keep - a.step_size * u;
  return w;
}

__global__ void adamw_kernel(const AdamUnit* __restrict__ units, const Chunk* __restrict__ chunks, AdamArgs a) {
  const Chunk c = chunks[blockIdx.x];
  const AdamUnit u = units[c.unit];
  const int64_t end = min(c.start + kChunk, u.n);
  const float keep = u.decay ? a.keep : 1.0f;
  if (u.vec) {
    for (int64_t j = c.start + 4 * (int64_t)threadIdx.x; j < end; j += 4 * (int64_t)blockDim.x) {
      float4 w = ld4(u.w + j), g = ld4(u.g + j), m = ld4(u.m + j), v = ld4(u.v + j);
#pragma unroll
      for (int k = 0; k < 4; ++k) adam_elem(at(w, k), at(g, k), at(m, k), at(v, k), a, keep);
      st4(u.m + j, m);
      st4(u.v + j, v);
      st4(u.w + j, w);
      store_bf4(u.wbf, j, w);
    }
  } else {
    for (int64_t j = c.start + threadIdx.x; j < end; j += blockDim.x) {
      float w = u.w[j], m = u.m[j], v = u.v[j];
      adam_elem(w, u.g[j], m, v, a, keep);
      u.m[j] = m;
      u.v[j] = v;
      u.w[j] = w;
      store_bf(u.wbf, j, w);
    }
  }
}

// ================================ momentum ================================

__device__ __forceinline__ float mom_elem(float g, float& m, const MomArgs& a) {
  const float mj = a.sum_form ? a.b * m + g : a.b * m + a.omb * g;
  m = mj;
  return a.nesterov ? (a.sum_form ? g + a.b * mj : a.omb * g + a.b * mj) : mj;
}

__global__ void momentum_kernel(const MomUnit* __restrict__ units, const Chunk* __restrict__ chunks, MomArgs a) {
  const Chunk c = chunks[blockIdx.x];
  const MomUnit u = units[c.unit];
  const int64_t end = min(c.start + kChunk, u.n);
  if (u.vec) {
    for (int64_t j = c.start + 4 * (int64_t)threadIdx.x; j < end; j += 4 * (int64_t)blockDim.x) {
      float4 g = ld4(u.g + j), m = ld4(u.m + j), r;
#pragma unroll
      for (int k = 0; k < 4; ++k) at(r, k) = mom_elem(at(g, k), at(m, k), a);
      st4(u.m + j, m);
      st4(u.u + j, r);
    }
  } else {
    for (int64_t j = c.start + threadIdx.x; j < end; j += blockDim.x) {
      float m = u.m[j];
      const float r = mom_elem(u.g[j], m, a);
      u.m[j] = m;
      u.u[j] = r;
    }
  }
}

// ================================ update ================================

template <bool kBf16>
__device__ __forceinline__ float load_d(const void* d, int64_t j) {
  if constexpr (kBf16)
    return __bfloat162float(static_cast<const bf16*>(d)[j]);
  else
    return static_cast<const float*>(d)[j];
}

template <bool kBf16>
__global__ void update_kernel(const UpdUnit* __restrict__ units, const Chunk* __restrict__ chunks,
                              const float* __restrict__ scales, float keep, float lr) {
  const Chunk c = chunks[blockIdx.x];
  const UpdUnit u = units[c.unit];
  const int64_t end = min(c.start + kChunk, u.n);
  const float step = lr * scales[u.scale_idx];
  if (u.vec) {
    for (int64_t j = c.start + 4 * (int64_t)threadIdx.x; j < end; j += 4 * (int64_t)blockDim.x) {
      float4 w = ld4(u.w + j);
      float4 d;
      if constexpr (kBf16) {
        const __nv_bfloat162* q = reinterpret_cast<const __nv_bfloat162*>(static_cast<const bf16*>(u.d) + j);
        const float2 lo = __bfloat1622float2(q[0]), hi = __bfloat1622float2(q[1]);
        d = make_float4(lo.x, lo.y, hi.x, hi.y);
      } else {
        d = ld4(static_cast<const float*>(u.d) + j);
      }
#pragma unroll
      for (int k = 0; k < 4; ++k) at(w, k) = at(w, k) * keep - step * at(d, k);
      st4(u.w + j, w);
      store_bf4(u.wbf, j, w);
    }
  } else {
    for (int64_t j = c.start + threadIdx.x; j < end; j += blockDim.x) {
      const float w = u.w[j] * keep - step * load_d<kBf16>(u.d, j);
      u.w[j] = w;
      store_bf(u.wbf, j, w);
    }
  }
}

// ================================ RMNP ================================

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

// ================================ reductions for Newton-Schulz / PolarGrad ================================

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

__global__ void gather_cols_kernel(const float* __restrict__ X, int64_t m, int64_t n, const int64_t* __restrict__ idx,
                                   int64_t k, float* __restrict__ S) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < m * k; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e % m, j = e / m;  // S column-major: e = i + j m
    S[e] = X[i * n + idx[j]];
  }
}

// ================================ fp64 helpers ================================

__global__ void f32_to_f64_kernel(const float* __restrict__ in, double* __restrict__ out, int64_t m, int64_t n,
                                  bool transpose) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < m * n; e += (int64_t)gridDim.x * blockDim.x) {
    if (transpose) {
      const int64_t i = e / n, j = e % n;  // in row-major [m, n]
      out[i + j * m] = (double)in[e];
    } else {
      out[e] = (double)in[e];
    }
  }
}

__global__ void f64_to_f32_kernel(const double* __restrict__ in, float* __restrict__ out, int64_t m, int64_t n,
                                  bool transpose) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < m * n; e += (int64_t)gridDim.x * blockDim.x) {
    if (transpose) {
      const int64_t i = e / n, j = e % n;  // out row-major [m, n]
      out[e] = (float)in[i + j * m];
    } else {
      out[e] = (float)in[e];
    }
  }
}

__global__ void qdwh_stack_kernel(const double* __restrict__ X, double* __restrict__ Z, int64_t R, int64_t C,
                                  double sc) {
  const int64_t zr = R + C;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < zr * C; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = e % zr, c = e / zr;
    Z[e] = r < R ? sc * X[r + c * R] : (r - R == c ? 1.0 : 0.0);
  }
}

__global__ void add_diag_kernel(double* A, int64_t n, double d) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    A[i * n + i] += d;
}

__global__ void trace_kernel(const float* __restrict__ K, int64_t b, double* __restrict__ tr) {
  // One thread, index order: the same sum as the CPU's refresh_inverse.
  double s = 0.0;
  for (int64_t d = 0; d < b; ++d) s += (double)K[d * b + d];
  *tr = s;
}

__global__ void ridge_kernel(const float* __restrict__ K, double* __restrict__ out, int64_t b, double damping,
                             const double* __restrict__ tr) {
  const double ridge = damping * (*tr) / (double)b;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < b * b; e += (int64_t)gridDim.x * blockDim.x)
    out[e] = (double)K[e] + ((e / b) == (e % b) ? ridge : 0.0);
}

__global__ void sym_lower_kernel(const double* __restrict__ L, float* __restrict__ out, int64_t n) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n * n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e / n, j = e % n;
    const int64_t hi = i > j ? i : j, lo = i > j ? j : i;
    out[e] = (float)L[hi + lo * n];  // column-major lower triangle: row hi, column lo
  }
}

__global__ void identity_kernel(float* out, int64_t n) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n * n; e += (int64_t)gridDim.x * blockDim.x)
    out[e] = (e / n) == (e % n) ? 1.0f : 0.0f;
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

int grid_for(int64_t n) { return (int)std::max<int64_t>(1, std::min<int64_t>(ceil_div<int64_t>(n, kThreads), 65535)); }

}  // namespace

// ================================ launchers ================================

void adamw_multi(const AdamUnit* units, const Chunk* chunks, int nchunks, const AdamArgs& a, cudaStream_t s) {
  if (nchunks <= 0) return;
  adamw_kernel<<<nchunks, kThreads, 0, s>>>(units, chunks, a);
  CUDA_CHECK_LAUNCH();
}

void momentum_multi(const MomUnit* units, const Chunk* chunks, int nchunks, const MomArgs& a, cudaStream_t s) {
  if (nchunks <= 0) return;
  momentum_kernel<<<nchunks, kThreads, 0, s>>>(units, chunks, a);
  CUDA_CHECK_LAUNCH();
}

void update_multi(const UpdUnit* units, const Chunk* chunks, int nchunks, bool d_bf16, const float* scales, float keep,
                  float lr, cudaStream_t s) {
  if (nchunks <= 0) return;
  if (d_bf16)
    update_kernel<true><<<nchunks, kThreads, 0, s>>>(units, chunks, scales, keep, lr);
  else
    update_kernel<false><<<nchunks, kThreads, 0, s>>>(units, chunks, scales, keep, lr);
  CUDA_CHECK_LAUNCH();
}

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

void gather_cols_colmajor(const float* X, int64_t m, int64_t n, const int64_t* idx, int64_t k, float* S,
                          cudaStream_t s) {
  gather_cols_kernel<<<grid_for(m * k), kThreads, 0, s>>>(X, m, n, idx, k, S);
  CUDA_CHECK_LAUNCH();
}

void f32_to_f64(const float* in, double* out, int64_t m, int64_t n, bool transpose, cudaStream_t s) {
  f32_to_f64_kernel<<<grid_for(m * n), kThreads, 0, s>>>(in, out, m, n, transpose);
  CUDA_CHECK_LAUNCH();
}

void f64_to_f32(const double* in, float* out, int64_t m, int64_t n, bool transpose, cudaStream_t s) {
  f64_to_f32_kernel<<<grid_for(m * n), kThreads, 0, s>>>(in, out, m, n, transpose);
  CUDA_CHECK_LAUNCH();
}

void qdwh_stack(const double* X, double* Z, int64_t R, int64_t C, double sc, cudaStream_t s) {
  qdwh_stack_kernel<<<grid_for((R + C) * C), kThreads, 0, s>>>(X, Z, R, C, sc);
  CUDA_CHECK_LAUNCH();
}

void add_diag(double* A, int64_t n, double d, cudaStream_t s) {
  add_diag_kernel<<<grid_for(n), kThreads, 0, s>>>(A, n, d);
  CUDA_CHECK_LAUNCH();
}

void ridge_to_f64(const float* K, double* out, int64_t b, double damping, double* tr_scratch, cudaStream_t s) {
  trace_kernel<<<1, 1, 0, s>>>(K, b, tr_scratch);
  CUDA_CHECK_LAUNCH();
  ridge_kernel<<<grid_for(b * b), kThreads, 0, s>>>(K, out, b, damping, tr_scratch);
  CUDA_CHECK_LAUNCH();
}

void sym_lower_to_f32(const double* L, float* out, int64_t n, cudaStream_t s) {
  sym_lower_kernel<<<grid_for(n * n), kThreads, 0, s>>>(L, out, n);
  CUDA_CHECK_LAUNCH();
}

void fill_uniform(float* p, int64_t n, uint64_t seed, float scale, cudaStream_t s) {
  if (n <= 0) return;
  fill_uniform_kernel<<<grid_for(n), kThreads, 0, s>>>(p, n, seed, scale);
  CUDA_CHECK_LAUNCH();
}

void set_identity(float* out, int64_t n, cudaStream_t s) {
  identity_kernel<<<grid_for(n * n), kThreads, 0, s>>>(out, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda::optim
