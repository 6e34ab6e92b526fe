// RMSNorm (LLaMA) forward/backward on bf16 rows with fp32 rstd, plus the fused residual-add +
// RMSNorm forward. Same structure as layernorm.cu: a warp per row with the row in registers for
// C <= 2048 (forward) / 1024 (backward), re-read from L1/L2 beyond; dweight through the
// deterministic column reduction of colsum.cuh.
//   out = x * r * w, r = 1 / sqrt(mean(x^2) + eps)
//   dx_j = r * (w_j g_j - x_j * r^2 * mean_i(w_i g_i x_i)),  dw_j += sum_rows g_j x_j r
#include "colsum.cuh"
#include "common.cuh"
#include "cuda/ops.h"
#include "rowchunks.cuh"

namespace llmtrain::cuda {
namespace {

constexpr int kRowsPerBlock = 8;

// ================================ kernels ================================

template <int CH, bool FUSED>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
    rmsnorm_forward_kernel(bf16* residual, bf16* out, float* rstd_out, const bf16* a, const bf16* b,
                           const bf16* weight, int N, int C, float eps) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= N) return;
  const size_t off = static_cast<size_t>(row) * C;
  constexpr bool kCache = CH <= 8;
  const bf16* xsrc = FUSED ? residual : a;
  BF16x8 xs[kCache ? CH : 1];
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < CH; ++k) {
    const int c = rows::chunk_col(k, lane);
    if (c < C) {
      BF16x8 r;
      if constexpr (FUSED) {
        float x[8], y[8];
        unpack8(load16(a + off + c), x);
        unpack8(load16(b + off + c), y);
#pragma unroll
        for (int j = 0; j < 8; ++j) x[j] += y[j];
        r = pack8(x);
        store16(residual + off + c, r);
      } else {
        r = load16(a + off + c);
      }
      if constexpr (kCache) xs[k] = r;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        float x = to_f(r.v[j]);
        ss += x * x;
      }
    }
  }
  const float rstd = rsqrtf(warp_sum(ss) / C + eps);
#pragma unroll
  for (int k = 0; k < CH; ++k) {
    const int c = rows::chunk_col(k, lane);
    if (c < C) {
      BF16x8 xk;
      if constexpr (kCache) xk = xs[k];
      else xk = load16(xsrc + off + c);
      float w[8], y[8];
      unpack8(load16(weight + c), w);
#pragma unroll
      for (int j = 0; j < 8; ++j) y[j] = to_f(xk.v[j]) * rstd * w[j];
      store16(out + off + c, pack8(y));
    }
  }
  if (lane == 0) rstd_out[row] = rstd;
}

template <int CH>
__global__ void __launch_bounds__(kRowsPerBlock * 32)
    rmsnorm_backward_dinp_kernel(bf16* dinp, const bf16* dout, const bf16* inp, const bf16* weight,
                                 const float* rstd_in, int N, int C, bool acc) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= N) return;
  const size_t off = static_cast<size_t>(row) * C;
  const float rstd = rstd_in[row];
  constexpr bool kCache = CH <= 4;
  BF16x8 xs[kCache ? CH : 1], gs[kCache ? CH : 1];
  float s = 0.0f;
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
      for (int j = 0; j < 8; ++j) s += w[j] * to_f(gk.v[j]) * to_f(xk.v[j]);
    }
  }
  const float m = warp_sum(s) / C;
  const float r3m = rstd * rstd * m;
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
      for (int j = 0; j < 8; ++j) d[j] += rstd * (w[j] * to_f(gk.v[j]) - to_f(xk.v[j]) * r3m);
      store16(dinp + off + c, pack8(d));
    }
  }
}

struct RmsWeightGradLoader {
  const bf16* dout;
  const bf16* inp;
  const float* rstd;
  int C;
  __device__ __forceinline__ void operator()(int n, int c0, float (&v)[1][8]) const {
    const size_t off = static_cast<size_t>(n) * C + c0;
    float g[8], x[8];
    unpack8(load16(dout + off), g);
    unpack8(load16(inp + off), x);
    const float r = rstd[n];
#pragma unroll
    for (int j = 0; j < 8; ++j) v[0][j] = g[j] * x[j] * r;
  }
};

void check_ptrs(const char* who, std::initializer_list<const void*> ps) {
  for (const void* p : ps)
    LLMTRAIN_CUDA_REQUIRE(p == nullptr || is_aligned16(p), std::string(who) + ": pointers must be 16-byte aligned");
}

}  // namespace

// ================================ launchers ================================

void rmsnorm_forward(bf16* out, float* rstd, const bf16* inp, const bf16* weight, int N, int C, float eps,
                     cudaStream_t stream) {
  check_ptrs("rmsnorm_forward", {out, inp, weight});
  if (N <= 0) return;
  rows::dispatch_ch(C, [&](auto ch) {
    constexpr int CH = decltype(ch)::value;
    rmsnorm_forward_kernel<CH, false><<<ceil_div(N, kRowsPerBlock), kRowsPerBlock * 32, 0, stream>>>(
        nullptr, out, rstd, inp, nullptr, weight, N, C, eps);
  });
  CUDA_CHECK_LAUNCH();
}

void fused_residual_rmsnorm_forward(bf16* residual, bf16* out, float* rstd, const bf16* a, const bf16* b,
                                    const bf16* weight, int N, int C, float eps, cudaStream_t stream) {
  check_ptrs("fused_residual_rmsnorm_forward", {residual, out, a, b, weight});
  if (N <= 0) return;
  rows::dispatch_ch(C, [&](auto ch) {
    constexpr int CH = decltype(ch)::value;
    rmsnorm_forward_kernel<CH, true><<<ceil_div(N, kRowsPerBlock), kRowsPerBlock * 32, 0, stream>>>(
        residual, out, rstd, a, b, weight, N, C, eps);
  });
  CUDA_CHECK_LAUNCH();
}

void rmsnorm_backward(bf16* dinp, float* dweight, const bf16* dout, const bf16* inp, const bf16* weight,
                      const float* rstd, int N, int C, void* scratch, cudaStream_t stream, bool accumulate) {
  check_ptrs("rmsnorm_backward", {dinp, dout, inp, weight});
  if (N <= 0) return;
  if (dinp != nullptr) {
    rows::dispatch_ch(C, [&](auto ch) {
      constexpr int CH = decltype(ch)::value;
      rmsnorm_backward_dinp_kernel<CH><<<ceil_div(N, kRowsPerBlock), kRowsPerBlock * 32, 0, stream>>>(
          dinp, dout, inp, weight, rstd, N, C, accumulate);
    });
    CUDA_CHECK_LAUNCH();
  }
  colsum::run<1>(dweight, nullptr, N, C, RmsWeightGradLoader{dout, inp, rstd, C}, scratch, stream);
}

}  // namespace llmtrain::cuda
