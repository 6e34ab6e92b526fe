// The matrix optimizers' momentum rule and decoupled-decay update on the device: the twins of
// kernels/cpu/momentum.cpp. Multi-tensor launches (one block per chunk of one tensor); the update
// reads the preconditioned direction as fp32 or bf16 (Newton-Schulz output).
#include "cuda/optim_common.cuh"

namespace llmtrain::cuda::optim {
namespace {

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

}  // namespace

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

}  // namespace llmtrain::cuda::optim
