// Shared device helpers of the optimizer kernels (kernels/cuda/<optimizer>.cu): block size, bf16
// stores, float4 loads/stores, the momentum rule, direction loads and the grid size of grid-stride loops. Included by .cu files only.
#pragma once
#include <algorithm>

#include "common.cuh"
#include "cuda/optim.h"

namespace llmtrain::cuda::optim {

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

// The momentum rule of cpu/optim.h's MomentumRule, element by element (updates m, returns U).
__device__ __forceinline__ float mom_elem(float g, float& m, const MomArgs& a) {
  const float mj = a.sum_form ? a.b * m + g : a.b * m + a.omb * g;
  m = mj;
  return a.nesterov ? (a.sum_form ? g + a.b * mj : a.omb * g + a.b * mj) : mj;
}

// An element of the direction D, stored as bf16 (Newton-Schulz output) or fp32.
template <bool kBf16>
__device__ __forceinline__ float load_d(const void* d, int64_t j) {
  if constexpr (kBf16)
    return __bfloat162float(static_cast<const bf16*>(d)[j]);
  else
    return static_cast<const float*>(d)[j];
}

inline int grid_for(int64_t n) {
  return (int)std::max<int64_t>(1, std::min<int64_t>(ceil_div<int64_t>(n, kThreads), 65535));
}

}  // namespace llmtrain::cuda::optim
