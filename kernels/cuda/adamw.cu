// Fused multi-tensor AdamW on the device: the twin of kernels/cpu/adamw.cpp. One 256-thread block
// per chunk reads w, g, m, v once and writes w, m, v (and the bf16 copy of w when asked): 28 bytes
// per parameter, 30 with the bf16 copy. The element formula is the CPU one, operation for operation.
#include "cuda/optim_common.cuh"

namespace llmtrain::cuda::optim {
namespace {

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

}  // namespace

void adamw_multi(const AdamUnit* units, const Chunk* chunks, int nchunks, const AdamArgs& a, cudaStream_t s) {
  if (nchunks <= 0) return;
  adamw_kernel<<<nchunks, kThreads, 0, s>>>(units, chunks, a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda::optim
