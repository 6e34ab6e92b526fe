// Precision casts between the fp32 master weights and the bf16 working copy. Round-to-nearest-even
// is the default; the stochastic variant rounds up with probability equal to the discarded fraction,
// using random bits that are a pure hash of (seed, step, element index): no RNG state to carry, so
// a resumed run and a different launch shape produce the same bits.
#include "common.cuh"
#include "cuda/ops.h"

namespace llmtrain::cuda {
namespace {

// ================================ kernels ================================

// splitmix64 finaliser over a key mixing the three inputs with odd constants.
__device__ __forceinline__ uint32_t sr_random16(uint64_t seed, uint64_t step, uint64_t idx) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull ^ (step + 0x632BE59BD9B4E019ull) * 0xD1B54A32D192ED03ull ^
               (idx + 1) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<uint32_t>(z >> 48);
}

__device__ __forceinline__ bf16 round_stochastic(float x, uint32_t r16) {
  uint32_t u = __float_as_uint(x);
  if ((u & 0x7F800000u) == 0x7F800000u) return __float2bfloat16_rn(x);  // inf / nan: unchanged
  u += r16;  // carries into the kept half with probability (discarded bits) / 2^16
  return __ushort_as_bfloat16(static_cast<unsigned short>(u >> 16));
}

__global__ void cast_f32_bf16_kernel(bf16* out, const float* inp, int64_t n) {
  int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i + 8 <= n) {
    F32x4 a = load16(inp + i), b = load16(inp + i + 4);
    BF16x8 o;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      o.v[j] = __float2bfloat16_rn(a.v[j]);
      o.v[j + 4] = __float2bfloat16_rn(b.v[j]);
    }
    store16(out + i, o);
  } else {
    for (; i < n; ++i) out[i] = __float2bfloat16_rn(inp[i]);
  }
}

__global__ void cast_f32_bf16_sr_kernel(bf16* out, const float* inp, int64_t n, uint64_t seed, uint64_t step) {
  int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i + 8 <= n) {
    F32x4 a = load16(inp + i), b = load16(inp + i + 4);
    BF16x8 o;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      o.v[j] = round_stochastic(a.v[j], sr_random16(seed, step, static_cast<uint64_t>(i + j)));
      o.v[j + 4] = round_stochastic(b.v[j], sr_random16(seed, step, static_cast<uint64_t>(i + j + 4)));
    }
    store16(out + i, o);
  } else {
    for (; i < n; ++i) out[i] = round_stochastic(inp[i], sr_random16(seed, step, static_cast<uint64_t>(i)));
  }
}

__global__ void cast_bf16_f32_kernel(float* out, const bf16* inp, int64_t n) {
  int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i + 8 <= n) {
    BF16x8 p = load16(inp + i);
    F32x4 a, b;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      a.v[j] = __bfloat162float(p.v[j]);
      b.v[j] = __bfloat162float(p.v[j + 4]);
    }
    store16(out + i, a);
    store16(out + i + 4, b);
  } else {
    for (; i < n; ++i) out[i] = __bfloat162float(inp[i]);
  }
}

unsigned cast_blocks(int64_t n, int threads) {
  return static_cast<unsigned>(ceil_div<int64_t>(ceil_div<int64_t>(n, 8), threads));
}

}  // namespace

// ================================ launchers ================================

void cast_f32_to_bf16(bf16* out, const float* inp, int64_t n, cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(out) && is_aligned16(inp), "cast_f32_to_bf16: pointers must be 16-byte aligned");
  if (n <= 0) return;
  cast_f32_bf16_kernel<<<cast_blocks(n, 256), 256, 0, stream>>>(out, inp, n);
  CUDA_CHECK_LAUNCH();
}

void cast_f32_to_bf16_stochastic(bf16* out, const float* inp, int64_t n, uint64_t seed, uint64_t step,
                                 cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(out) && is_aligned16(inp),
                        "cast_f32_to_bf16_stochastic: pointers must be 16-byte aligned");
  if (n <= 0) return;
  cast_f32_bf16_sr_kernel<<<cast_blocks(n, 256), 256, 0, stream>>>(out, inp, n, seed, step);
  CUDA_CHECK_LAUNCH();
}

void cast_bf16_to_f32(float* out, const bf16* inp, int64_t n, cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(out) && is_aligned16(inp), "cast_bf16_to_f32: pointers must be 16-byte aligned");
  if (n <= 0) return;
  cast_bf16_f32_kernel<<<cast_blocks(n, 256), 256, 0, stream>>>(out, inp, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda
