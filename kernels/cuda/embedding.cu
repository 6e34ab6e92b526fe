// Token + position embedding forward and a deterministic backward. Forward: one thread per 8
// channels of a token row. Backward: positions are radix-sorted by token id (CUB, stable, so equal
// ids keep increasing positions), then the first block of each run of equal ids sums that run's
// dout rows in sorted order into dwte[id] (fp32): every vocab row has exactly one owner and one
// summation order, so no atomics. dwpe[t] sums over b in order, one thread per 8 channels.
#include <algorithm>
#include <cub/device/device_radix_sort.cuh>

#include "common.cuh"
#include "cuda/ops.h"

namespace llmtrain::cuda {
namespace {

// ================================ kernels ================================

__global__ void embedding_forward_kernel(bf16* out, const int32_t* inp, const bf16* wte, const bf16* wpe, int N,
                                         int T, int C) {
  const int chunks = C / 8;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<int64_t>(N) * chunks) return;
  const int n = static_cast<int>(idx / chunks), c = static_cast<int>(idx % chunks) * 8;
  const int t = n % T;
  float x[8];
  unpack8(load16(wte + static_cast<size_t>(inp[n]) * C + c), x);
  if (wpe != nullptr) {
    float p[8];
    unpack8(load16(wpe + static_cast<size_t>(t) * C + c), p);
#pragma unroll
    for (int j = 0; j < 8; ++j) x[j] += p[j];
  }
  store16(out + static_cast<size_t>(n) * C + c, pack8(x));
}

__global__ void iota_kernel(uint32_t* v, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) v[i] = static_cast<uint32_t>(i);
}

// Block i handles sorted entry i only if it starts a run of equal token ids.
__global__ void embedding_backward_wte_kernel(float* dwte, const bf16* dout, const uint32_t* keys,
                                              const uint32_t* pos, int N, int C) {
  const int i = blockIdx.x;
  const uint32_t tok = keys[i];
  if (i > 0 && keys[i - 1] == tok) return;
  int end = i + 1;
  while (end < N && keys[end] == tok) ++end;
  for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8) {
    float acc[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[j] = 0.0f;
    int r = i;
    // Four rows in flight per step; added strictly in sorted order.
    for (; r + 4 <= end; r += 4) {
      BF16x8 g[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) g[u] = load16(dout + static_cast<size_t>(pos[r + u]) * C + c);
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[j] += to_f(g[u].v[j]);
    }
    for (; r < end; ++r) {
      BF16x8 g = load16(dout + static_cast<size_t>(pos[r]) * C + c);
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[j] += to_f(g.v[j]);
    }
    float* d = dwte + static_cast<size_t>(tok) * C + c;
    F32x4 lo = load16(d), hi = load16(d + 4);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      lo.v[j] += acc[j];
      hi.v[j] += acc[j + 4];
    }
    store16(d, lo);
    store16(d + 4, hi);
  }
}

__global__ void embedding_backward_wpe_kernel(float* dwpe, const bf16* dout, int B, int T, int C) {
  const int chunks = C / 8;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= T * chunks) return;
  const int t = idx / chunks, c = (idx % chunks) * 8;
  float acc[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) acc[j] = 0.0f;
  for (int b = 0; b < B; ++b) {
    float g[8];
    unpack8(load16(dout + (static_cast<size_t>(b) * T + t) * C + c), g);
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[j] += g[j];
  }
  float* d = dwpe + static_cast<size_t>(t) * C + c;
  F32x4 lo = load16(d), hi = load16(d + 4);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    lo.v[j] += acc[j];
    hi.v[j] += acc[j + 4];
  }
  store16(d, lo);
  store16(d + 4, hi);
}

int key_bits(int Vp) {
  int bits = 1;
  while (bits < 32 && (1ull << bits) < static_cast<unsigned long long>(Vp)) ++bits;
  return bits;
}

size_t align256(size_t x) { return (x + 255) & ~static_cast<size_t>(255); }

size_t cub_temp_bytes(int N, int Vp) {
  size_t bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const uint32_t*>(nullptr),
                                             static_cast<uint32_t*>(nullptr), static_cast<const uint32_t*>(nullptr),
                                             static_cast<uint32_t*>(nullptr), N, 0, key_bits(Vp)));
  return bytes;
}

}  // namespace

// ================================ launchers ================================

void embedding_forward(bf16* out, const int32_t* inp, const bf16* wte, const bf16* wpe, int B, int T, int C,
                       cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(C % 8 == 0, "embedding_forward: C must be a multiple of 8");
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(out) && is_aligned16(wte) && (wpe == nullptr || is_aligned16(wpe)),
                        "embedding_forward: pointers must be 16-byte aligned");
  const int64_t total = static_cast<int64_t>(B) * T * (C / 8);
  if (total <= 0) return;
  embedding_forward_kernel<<<static_cast<unsigned>(ceil_div<int64_t>(total, 256)), 256, 0, stream>>>(
      out, inp, wte, wpe, B * T, T, C);
  CUDA_CHECK_LAUNCH();
}

size_t embedding_backward_scratch_bytes(int N, int Vp) {
  return 3 * align256(static_cast<size_t>(N) * sizeof(uint32_t)) + align256(cub_temp_bytes(N, Vp));
}

void embedding_backward(float* dwte, float* dwpe, const bf16* dout, const int32_t* inp, int B, int T, int C, int Vp,
                        void* scratch, size_t scratch_bytes, cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(C % 8 == 0, "embedding_backward: C must be a multiple of 8");
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(dout) && (dwte == nullptr || is_aligned16(dwte)) &&
                            (dwpe == nullptr || is_aligned16(dwpe)),
                        "embedding_backward: pointers must be 16-byte aligned");
  const int N = B * T;
  if (N <= 0) return;
  if (dwte != nullptr) {
    const size_t need = embedding_backward_scratch_bytes(N, Vp);
    LLMTRAIN_CUDA_REQUIRE(scratch != nullptr && scratch_bytes >= need,
                          "embedding_backward: scratch smaller than embedding_backward_scratch_bytes(N, Vp)");
    char* p = static_cast<char*>(scratch);
    const size_t arr = align256(static_cast<size_t>(N) * sizeof(uint32_t));
    auto* keys_out = reinterpret_cast<uint32_t*>(p);
    auto* pos_in = reinterpret_cast<uint32_t*>(p + arr);
    auto* pos_out = reinterpret_cast<uint32_t*>(p + 2 * arr);
    void* temp = p + 3 * arr;
    size_t temp_bytes = scratch_bytes - 3 * arr;
    iota_kernel<<<ceil_div(N, 256), 256, 0, stream>>>(pos_in, N);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, reinterpret_cast<const uint32_t*>(inp), keys_out,
                                               pos_in, pos_out, N, 0, key_bits(Vp), stream));
    const int threads = std::min(1024, std::max(32, ceil_div(C / 8, 32) * 32));
    embedding_backward_wte_kernel<<<N, threads, 0, stream>>>(dwte, dout, keys_out, pos_out, N, C);
    CUDA_CHECK_LAUNCH();
  }
  if (dwpe != nullptr) {
    const int total = T * (C / 8);
    embedding_backward_wpe_kernel<<<ceil_div(total, 256), 256, 0, stream>>>(dwpe, dout, B, T, C);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace llmtrain::cuda
