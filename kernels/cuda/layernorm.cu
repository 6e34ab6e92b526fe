// LayerNorm forward/backward on bf16 rows with fp32 statistics, plus the fused residual-add +
// LayerNorm forward (the residual stream is read once per layer instead of twice). One warp per
// row, the row cached in registers (see rowchunks.cuh); mean and variance in two passes over the
// registers (no E[x^2] - E[x]^2 cancellation). Backward: dinp per row in one kernel; dweight/dbias
// through the deterministic column reduction of colsum.cuh (a second read of dout and inp, traded
// for having no atomics and no per-block partial rows of width C in registers).
#include "colsum.cuh"
#include "common.cuh"
#include "cuda/ops.h"
#include "rowchunks.cuh"

namespace llmtrain::cuda {
namespace {

constexpr int kRowsPerBlock = 8;  // 8 warps of one row each

// ================================ kernels ================================

// FUSED: x = a + b (rounded to bf16, stored into residual) then LN(x); else x = a.
template <int CH, bool FUSED>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
    layernorm_forward_kernel(bf16* residual, bf16* out, float* mean_out, float* rstd_out, const bf16* a,
                             const bf16* b, const bf16* weight, const bf16* bias, int N, int C, float eps) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= N) return;
  const size_t off = static_cast<size_t>(row) * C;
  // Wide rows (C > 2048) are re-read from L1/L2 instead of held in registers (occupancy).
  constexpr bool kCache = CH <= 8;
  const bf16* xsrc = FUSED ? residual : a;
  BF16x8 xs[kCache ? CH : 1];
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < CH; ++k) {
    const int c = rows::chunk_col(k, lane);
    if (c < C) {
      if constexpr (FUSED) {
        float x[8], y[8];
        unpack8(load16(a + off + c), x);
        unpack8(load16(b + off + c), y);
#pragma unroll
        for (int j = 0; j < 8; ++j) x[j] += y[j];
        BF16x8 r = pack8(x);
        store16(residual + off + c, r);
        if constexpr (kCache) xs[k] = r;
#pragma unroll
        for (int j = 0; j < 8; ++j) sum += to_f(r.v[j]);
      } else {
        BF16x8 r = load16(a + off + c);
        if constexpr (kCache) xs[k] = r;
#pragma unroll
        for (int j = 0; j < 8; ++j) sum += to_f(r.v[j]);
      }
    }
  }
  const float mean = warp_sum(sum) / C;
  float var = 0.0f;
#pragma unroll
  for (int k = 0; k < CH; ++k) {
    const int c = rows::chunk_col(k, lane);
    if (c < C) {
      BF16x8 xk;
      if constexpr (kCache) xk = xs[k];
      else xk = load16(xsrc + off + c);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        float d = to_f(xk.v[j]) - mean;
        var += d * d;
      }
    }
  }
  const float rstd = rsqrtf(warp_sum(var) / C + eps);
#pragma unroll
  for (int k = 0; k < CH; ++k) {
    const int c = rows::chunk_col(k, lane);
    if (c < C) {
      BF16x8 xk;
      if constexpr (kCache) xk = xs[k];
      else xk = load16(xsrc + off + c);
      float w[8], bb[8], y[8];
      unpack8(load16(weight + c), w);
      if (bias != nullptr) {
        unpack8(load16(bias + c), bb);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) bb[j] = 0.0f;
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) y[j] = (to_f(xk.v[j]) - mean) * rstd * w[j] + bb[j];
      store16(out + off + c, pack8(y));
    }
  }
  if (lane == 0) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

// dinp = rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)), dnorm = dout * weight.
template <int CH>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
    layernorm_backward_dinp_kernel(bf16* dinp, const bf16* dout, const bf16* inp, const bf16* weight,
                                   const float* mean_in, const float* rstd_in, int N, int C, bool acc) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= N) return;
  const size_t off = static_cast<size_t>(row) * C;
  const float mean = mean_in[row], rstd = rstd_in[row];
  // Rows wider than 1024 channels are re-read in the second pass instead of held in registers.
  constexpr bool kCache = CH <= 4;
  BF16x8 xs[kCache ? CH : 1], gs[kCache ? CH : 1];
  float s1 = 0.0f, s2 = 0.0f;
#pragma unroll
  for (int k = 0; k < CH; ++k) {
    const int c = rows::chunk_col(k, lane);
    if (c < C) {
      const BF16x8 xk = load16(inp + off + c), gk = load16(dout + off + c);
      if constexpr (kCache) {
        xs[k] = xk;
        gs[k] = gk;
      }
      float w[8];
      unpack8(load16(weight + c), w);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        float dn = to_f(gk.v[j]) * w[j];
        s1 += dn;
        s2 += dn * (to_f(xk.v[j]) - mean) * rstd;
      }
    }
  }
  const float m1 = warp_sum(s1) / C, m2 = warp_sum(s2) / C;
#pragma unroll
  for (int k = 0; k < CH; ++k) {
    const int c = rows::chunk_col(k, lane);
    if (c < C) {
      BF16x8 xk, gk;
      if constexpr (kCache) {
        xk = xs[k];
        gk = gs[k];
      } else {
        xk = load16(inp + off + c);
        gk = load16(dout + off + c);
      }
      float w[8], d[8];
      unpack8(load16(weight + c), w);
      if (acc) {
        unpack8(load16(dinp + off + c), d);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) d[j] = 0.0f;
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        float xhat = (to_f(xk.v[j]) - mean) * rstd;
        float dn = to_f(gk.v[j]) * w[j];
        d[j] += rstd * (dn - m1 - xhat * m2);
      }
      store16(dinp + off + c, pack8(d));
    }
  }
}

// Column-reduction loader: (dout * xhat, dout) for dweight and dbias.
struct LnParamGradLoader {
  const bf16* dout;
  const bf16* inp;
  const float* mean;
  const float* rstd;
  int C;
  __device__ __forceinline__ void operator()(int n, int c0, float (&v)[2][8]) const {
    const size_t off = static_cast<size_t>(n) * C + c0;
    float g[8], x[8];
    unpack8(load16(dout + off), g);
    unpack8(load16(inp + off), x);
    const float m = mean[n], r = rstd[n];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      v[0][j] = g[j] * (x[j] - m) * r;
      v[1][j] = g[j];
    }
  }
};

void check_ptrs(const char* who, std::initializer_list<const void*> ps) {
  for (const void* p : ps)
    LLMTRAIN_CUDA_REQUIRE(p == nullptr || is_aligned16(p), std::string(who) + ": pointers must be 16-byte aligned");
}

}  // namespace

// ================================ launchers ================================

void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* weight, const bf16* bias,
                       int N, int C, float eps, cudaStream_t stream) {
  check_ptrs("layernorm_forward", {out, inp, weight, bias});
  if (N <= 0) return;
  rows::dispatch_ch(C, [&](auto ch) {
    constexpr int CH = decltype(ch)::value;
    layernorm_forward_kernel<CH, false><<<ceil_div(N, kRowsPerBlock), kRowsPerBlock * 32, 0, stream>>>(
        nullptr, out, mean, rstd, inp, nullptr, weight, bias, N, C, eps);
  });
  CUDA_CHECK_LAUNCH();
}

void fused_residual_layernorm_forward(bf16* residual, bf16* out, float* mean, float* rstd, const bf16* a,
                                      const bf16* b, const bf16* weight, const bf16* bias, int N, int C, float eps,
                                      cudaStream_t stream) {
  check_ptrs("fused_residual_layernorm_forward", {residual, out, a, b, weight, bias});
  if (N <= 0) return;
  rows::dispatch_ch(C, [&](auto ch) {
    constexpr int CH = decltype(ch)::value;
    layernorm_forward_kernel<CH, true><<<ceil_div(N, kRowsPerBlock), kRowsPerBlock * 32, 0, stream>>>(
        residual, out, mean, rstd, a, b, weight, bias, N, C, eps);
  });
  CUDA_CHECK_LAUNCH();
}

void layernorm_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                        const bf16* weight, const float* mean, const float* rstd, int N, int C, void* scratch,
                        cudaStream_t stream, bool accumulate) {
  check_ptrs("layernorm_backward", {dinp, dout, inp, weight});
  if (N <= 0) return;
  if (dinp != nullptr) {
    rows::dispatch_ch(C, [&](auto ch) {
      constexpr int CH = decltype(ch)::value;
      layernorm_backward_dinp_kernel<CH><<<ceil_div(N, kRowsPerBlock), kRowsPerBlock * 32, 0, stream>>>(
          dinp, dout, inp, weight, mean, rstd, N, C, accumulate);
    });
    CUDA_CHECK_LAUNCH();
  }
  colsum::run<2>(dweight, dbias, N, C, LnParamGradLoader{dout, inp, mean, rstd, C}, scratch, stream);
}

}  // namespace llmtrain::cuda
