// Warp-per-row helpers shared by layernorm.cu and rmsnorm.cu: a row of C channels is split into
// 8-channel chunks, chunk k of lane l covering channels (k*32 + l)*8 .. +7, so each warp step reads
// 512 contiguous bytes. CH (chunks per lane) is a compile-time constant so that the row lives in
// registers (indexed only by unrolled loops); dispatch picks the smallest CH >= ceil(C / 256).
#pragma once
#include <type_traits>

#include "common.cuh"

namespace llmtrain::cuda::rows {

constexpr int kMaxC = 4096;  // CH <= 16: 64 registers per cached bf16 row per lane

__device__ __forceinline__ int chunk_col(int k, int lane) { return (k * 32 + lane) * 8; }

// Calls f(std::integral_constant<int, CH>{}) with the CH suited to C; throws if C is too wide.
template <class F>
void dispatch_ch(int C, F&& f) {
  LLMTRAIN_CUDA_REQUIRE(C % 8 == 0 && C > 0, "row kernel: C must be a positive multiple of 8");
  LLMTRAIN_CUDA_REQUIRE(C <= kMaxC, "row kernel: C must be <= 4096");
  const int need = ceil_div(C, 256);
  if (need <= 1) f(std::integral_constant<int, 1>{});
  else if (need <= 2) f(std::integral_constant<int, 2>{});
  else if (need <= 3) f(std::integral_constant<int, 3>{});
  else if (need <= 4) f(std::integral_constant<int, 4>{});
  else if (need <= 6) f(std::integral_constant<int, 6>{});
  else if (need <= 8) f(std::integral_constant<int, 8>{});
  else if (need <= 12) f(std::integral_constant<int, 12>{});
  else f(std::integral_constant<int, 16>{});
}

}  // namespace llmtrain::cuda::rows
