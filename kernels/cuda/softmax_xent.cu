// Fused softmax + cross-entropy over the padded vocabulary. One block per row of logits [N, Vp]:
// pass 1 keeps a per-thread online (max, sum of exp) over the real columns (< V) and merges them
// with a fixed tree, giving lse; the loss is lse - logit[target]. Pass 2 (backward) re-reads the
// row (mostly from L2) and writes dlogits = dloss * (softmax - onehot), zero in padding columns and
// ignored rows, as bf16 in place over the logits (each element is read by the thread that then
// overwrites it, after the whole block finished pass 1). The loss never needs a separate
// probability buffer: 2 bytes read + 2 written per logit for forward+backward.
#include <cmath>

#include "common.cuh"
#include "cuda/ops.h"

namespace llmtrain::cuda {
namespace {

constexpr int kThreads = 512;

// ================================ kernels ================================

struct MaxSum {
  float m, s;
};

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.0f};
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

template <bool WRITE_LOSS, bool WRITE_GRAD>
__global__ void __launch_bounds__(kThreads)
    softmax_xent_kernel(float* losses, bf16* dlogits, const bf16* logits, const int32_t* targets, const float* dloss,
                        float dloss_scale, int V, int Vp) {
  __shared__ MaxSum sm[kThreads / 32];
  __shared__ float lse_sh;
  const int row = blockIdx.x;
  const int target = targets[row];
  const bf16* x = logits + static_cast<size_t>(row) * Vp;
  const int chunks = Vp / 8;
  if (target < 0) {  // ignored row: loss 0, zero gradient everywhere
    if (WRITE_LOSS && threadIdx.x == 0) losses[row] = 0.0f;
    if (WRITE_GRAD) {
      BF16x8 z;
#pragma unroll
      for (int j = 0; j < 8; ++j) z.v[j] = __float2bfloat16_rn(0.0f);
      for (int ci = threadIdx.x; ci < chunks; ci += kThreads) store16(dlogits + static_cast<size_t>(row) * Vp + ci * 8, z);
    }
    return;
  }
  MaxSum ms{-INFINITY, 0.0f};
  for (int ci = threadIdx.x; ci < chunks; ci += kThreads) {
    const int c0 = ci * 8;
    if (c0 >= V) break;
    float v[8];
    unpack8(load16(x + c0), v);
    float cm = -INFINITY;
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (c0 + j < V) cm = fmaxf(cm, v[j]);
    if (cm > ms.m) {
      ms.s *= expf(ms.m - cm);
      ms.m = cm;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (c0 + j < V) ms.s += expf(v[j] - ms.m);
  }
  // Warp tree then block tree: a fixed order, so the result is reproducible.
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum other{__shfl_xor_sync(0xffffffffu, ms.m, o), __shfl_xor_sync(0xffffffffu, ms.s, o)};
    ms = merge(ms, other);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sm[warp] = ms;
  __syncthreads();
  if (warp == 0) {
    MaxSum w = lane < kThreads / 32 ? sm[lane] : MaxSum{-INFINITY, 0.0f};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      MaxSum other{__shfl_xor_sync(0xffffffffu, w.m, o), __shfl_xor_sync(0xffffffffu, w.s, o)};
      w = merge(w, other);
    }
    if (lane == 0) {
      const float lse = w.m + logf(w.s);
      lse_sh = lse;
      if (WRITE_LOSS) losses[row] = target < V ? lse - __bfloat162float(x[target]) : NAN;
    }
  }
  __syncthreads();
  if (!WRITE_GRAD) return;
  const float lse = lse_sh;
  const float dl = dloss != nullptr ? dloss[row] : dloss_scale;
  bf16* d = dlogits + static_cast<size_t>(row) * Vp;
  for (int ci = threadIdx.x; ci < chunks; ci += kThreads) {
    const int c0 = ci * 8;
    float v[8], g[8];
    unpack8(load16_cs(x + c0), v);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int c = c0 + j;
      const float p = c < V ? expf(v[j] - lse) : 0.0f;
      g[j] = dl * (p - (c == target ? 1.0f : 0.0f));
    }
    store16(d + c0, pack8(g));
  }
}

void check(const char* who, const void* logits, int N, int V, int Vp) {
  LLMTRAIN_CUDA_REQUIRE(Vp % 8 == 0 && V > 0 && V <= Vp, std::string(who) + ": need 0 < V <= Vp, Vp % 8 == 0");
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(logits), std::string(who) + ": logits must be 16-byte aligned");
  LLMTRAIN_CUDA_REQUIRE(N >= 0, std::string(who) + ": N must be >= 0");
}

}  // namespace

// ================================ launchers ================================

void softmax_xent_forward(float* losses, const bf16* logits, const int32_t* targets, int N, int V, int Vp,
                          cudaStream_t stream) {
  check("softmax_xent_forward", logits, N, V, Vp);
  if (N == 0) return;
  softmax_xent_kernel<true, false><<<N, kThreads, 0, stream>>>(losses, nullptr, logits, targets, nullptr, 0.0f, V, Vp);
  CUDA_CHECK_LAUNCH();
}

void softmax_xent_backward(bf16* dlogits, const bf16* logits, const int32_t* targets, const float* dloss,
                           float dloss_scale, int N, int V, int Vp, cudaStream_t stream) {
  check("softmax_xent_backward", logits, N, V, Vp);
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(dlogits), "softmax_xent_backward: dlogits must be 16-byte aligned");
  if (N == 0) return;
  softmax_xent_kernel<false, true><<<N, kThreads, 0, stream>>>(nullptr, dlogits, logits, targets, dloss, dloss_scale,
                                                              V, Vp);
  CUDA_CHECK_LAUNCH();
}

void softmax_xent_forward_backward(float* losses, bf16* logits_to_dlogits, const int32_t* targets,
                                   const float* dloss, float dloss_scale, int N, int V, int Vp, cudaStream_t stream) {
  check("softmax_xent_forward_backward", logits_to_dlogits, N, V, Vp);
  if (N == 0) return;
  softmax_xent_kernel<true, true><<<N, kThreads, 0, stream>>>(losses, logits_to_dlogits, logits_to_dlogits, targets,
                                                             dloss, dloss_scale, V, Vp);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda
