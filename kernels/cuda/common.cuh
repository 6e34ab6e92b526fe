// Shared helpers for every CUDA kernel file: error-checking macros that name the failing call and
// its file:line, bf16 <-> fp32 helpers, 16-byte vector load/store wrappers (one 128-bit access per
// thread is what saturates HBM on Hopper), warp reductions, and small launch-geometry utilities.
// Header-only and included by kernels/cuda/*.cu and the .cu files of src/; nothing here allocates.
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

#include "cuda/errors.h"
#include "llmtrain/error.h"

namespace llmtrain::cuda {

using bf16 = __nv_bfloat16;

}  // namespace llmtrain::cuda

// ---- error checking (throw_cuda_error and cublas_status_name are in cuda/errors.h) ----

#define CUDA_CHECK(call)                                                                           \
  do {                                                                                             \
    cudaError_t err_ = (call);                                                                     \
    if (err_ != cudaSuccess)                                                                       \
      ::llmtrain::cuda::throw_cuda_error("CUDA", #call, __FILE__, __LINE__,                        \
                                         std::string(cudaGetErrorName(err_)) + " (" +              \
                                             cudaGetErrorString(err_) + ")");                      \
  } while (0)

#define CUBLAS_CHECK(call)                                                                         \
  do {                                                                                             \
    cublasStatus_t st_ = (call);                                                                   \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                              \
      ::llmtrain::cuda::throw_cuda_error("cuBLAS", #call, __FILE__, __LINE__,                      \
                                         ::llmtrain::cuda::cublas_status_name(st_));               \
  } while (0)

// After every launch: catches bad configurations (too much shared memory, too many threads) at
// the launch site instead of at the next synchronising call.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// Launcher argument validation: a broken precondition is a programming error on the host side.
#define LLMTRAIN_CUDA_REQUIRE(cond, msg)                                                           \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      ::llmtrain::cuda::throw_cuda_error("precondition", #cond, __FILE__, __LINE__, (msg));        \
  } while (0)

namespace llmtrain::cuda {

// ---- geometry ----
template <typename I>
__host__ __device__ constexpr I ceil_div(I a, I b) {
  return (a + b - 1) / b;
}

inline bool is_aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// ---- bf16 ----
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ bf16 to_bf(float x) { return __float2bfloat16_rn(x); }

// ---- 16-byte packs: 8 bf16 or 4 fp32 moved as one 128-bit access ----
template <typename T>
struct alignas(16) Pack16 {
  static constexpr int kN = 16 / sizeof(T);
  T v[kN];
};
using BF16x8 = Pack16<bf16>;
using F32x4 = Pack16<float>;

template <typename T>
__device__ __forceinline__ Pack16<T> load16(const T* p) {
  Pack16<T> r;
  *reinterpret_cast<int4*>(&r) = *reinterpret_cast<const int4*>(p);
  return r;
}
// Streaming load: data read once (e.g. logits), do not keep it in L1.
template <typename T>
__device__ __forceinline__ Pack16<T> load16_cs(const T* p) {
  Pack16<T> r;
  *reinterpret_cast<int4*>(&r) = __ldcs(reinterpret_cast<const int4*>(p));
  return r;
}
template <typename T>
__device__ __forceinline__ void store16(T* p, const Pack16<T>& v) {
  *reinterpret_cast<int4*>(p) = *reinterpret_cast<const int4*>(&v);
}
template <typename T>
__device__ __forceinline__ void store16_cs(T* p, const Pack16<T>& v) {
  __stcs(reinterpret_cast<int4*>(p), *reinterpret_cast<const int4*>(&v));
}

// 8 bf16 <-> 8 floats.
__device__ __forceinline__ void unpack8(const BF16x8& p, float (&f)[8]) {
#pragma unroll
  for (int i = 0; i < 8; ++i) f[i] = __bfloat162float(p.v[i]);
}
__device__ __forceinline__ BF16x8 pack8(const float (&f)[8]) {
  BF16x8 p;
#pragma unroll
  for (int i = 0; i < 8; ++i) p.v[i] = __float2bfloat16_rn(f[i]);
  return p;
}

// ---- warp reductions (xor butterfly: every lane ends with the same, order-fixed result) ----
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block-wide sum for blockDim.x a multiple of 32 (<= 1024); every thread gets the result. The
// order of additions depends only on blockDim, so results are reproducible run to run.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* smem32) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // smem32 may still be read by a previous call
  if (lane == 0) smem32[warp] = v;
  __syncthreads();
  T r = lane < nwarps ? smem32[lane] : T(0);
  return warp_sum(r);
}

}  // namespace llmtrain::cuda
