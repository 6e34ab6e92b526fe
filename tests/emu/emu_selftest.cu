// Tests of the CUDA emulator itself (built only into llmtrain_emu_tests): the emulated tensor-core
// path (ldmatrix x4 / x4.trans feeding mma.m16n8k16) against a plain matrix product, shuffles,
// and that misuse the emulator promises to catch is caught: a thread leaving while its block waits
// at __syncthreads, a missing __syncthreads, shared memory read before cp.async.wait_group.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cuda_bf16.h"
#include "cuda_runtime.h"

namespace {

uint16_t bf_bits(float f) {
  __nv_bfloat16 b = __float2bfloat16_rn(f);
  uint16_t u;
  std::memcpy(&u, &b, 2);
  return u;
}
float bf_val(uint16_t u) {
  uint32_t w = static_cast<uint32_t>(u) << 16;
  float f;
  std::memcpy(&f, &w, 4);
  return f;
}

// One warp: D[16x16] = A[16x32] (row-major, [m][k]) x B where B comes either as Bnk [16 n][32 k]
// (ldmatrix without .trans) or as Bkn [32 k][16 n] (ldmatrix .trans). Tiles padded by 8 columns.
__global__ void mma_kernel(float* d, const uint16_t* a, const uint16_t* b, bool kn) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int LDA = 40, LDB_NK = 40, LDB_KN = 24;
  auto* As = reinterpret_cast<uint16_t*>(smem_raw);
  auto* Bs = As + 16 * LDA;
  const int lane = threadIdx.x;
  for (int i = lane; i < 16 * 32; i += 32) As[(i / 32) * LDA + i % 32] = a[i];
  if (kn)
    for (int i = lane; i < 32 * 16; i += 32) Bs[(i / 16) * LDB_KN + i % 16] = b[i];
  else
    for (int i = lane; i < 16 * 32; i += 32) Bs[(i / 32) * LDB_NK + i % 32] = b[i];
  __syncwarp();
  float acc[2][4] = {};
  for (int k0 = 0; k0 < 32; k0 += 16) {
    uint32_t af[4];
    ::emu::ldmatrix_x4(af, As + (lane & 15) * LDA + k0 + (lane >> 4) * 8, false);
    for (int nt = 0; nt < 2; ++nt) {
      uint32_t bf[4];
      if (kn) {
        // 16 k-rows x 16 n: b[0..1] n-tile 0, b[2..3] n-tile 1.
        ::emu::ldmatrix_x4(bf, Bs + (k0 + (lane & 15)) * LDB_KN + (lane >> 4) * 8, true);
        ::emu::mma_m16n8k16_bf16(acc[nt], af, bf[2 * nt], bf[2 * nt + 1]);
      } else {
        // 8 n-rows x 32 k: b[0..1] k-step k0, b[2..3] k-step k0 + 16 (only the first used here).
        ::emu::ldmatrix_x4(bf, Bs + (nt * 8 + (lane & 7)) * LDB_NK + k0 + (lane >> 3) * 8 % 16, false);
        ::emu::mma_m16n8k16_bf16(acc[nt], af, bf[0], bf[1]);
      }
    }
  }
  const int g = lane >> 2, t = lane & 3;
  for (int nt = 0; nt < 2; ++nt)
    for (int e = 0; e < 4; ++e) d[(g + 8 * (e >> 1)) * 16 + nt * 8 + 2 * t + (e & 1)] = acc[nt][e];
}

__global__ void early_exit_kernel(int* out) {
  if (threadIdx.x == 5) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void neighbour_kernel(float* out, bool sync) {
  __shared__ float s[64];
  s[threadIdx.x] = static_cast<float>(threadIdx.x);
  if (sync) __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
  __syncthreads();
  s[threadIdx.x] = -1.0f;  // stale values for the next block / launch
}

__global__ void warp_sum_kernel(float* out) {
  float v = static_cast<float>(threadIdx.x);
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  float down = __shfl_down_sync(0xffffffffu, static_cast<float>(threadIdx.x), 3);
  out[threadIdx.x] = v + 1000.0f * down;
}

__global__ void cp_async_kernel(float* out, const float* in, bool wait_first) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  auto* s = reinterpret_cast<float*>(smem_raw);
  ::emu::cp_async16(s + 4 * threadIdx.x, in + 4 * threadIdx.x, 16);
  ::emu::cp_async_commit();
  if (wait_first) ::emu::cp_async_wait(0);
  out[threadIdx.x] = s[4 * threadIdx.x];
  ::emu::cp_async_wait(0);
}

template <class T>
T* dev_alloc(size_t n) {
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
  return static_cast<T*>(p);
}

}  // namespace

TEST_CASE("emu: ldmatrix + mma.m16n8k16 equal a plain matrix product", "[emu]") {
  std::vector<uint16_t> a(16 * 32), bnk(16 * 32), bkn(32 * 16);
  uint32_t x = 12345;
  auto rnd = [&] {
    x = x * 1664525u + 1013904223u;
    return static_cast<float>((x >> 8) % 2001) / 1000.0f - 1.0f;
  };
  for (auto& v : a) v = bf_bits(rnd());
  for (int n = 0; n < 16; ++n)
    for (int k = 0; k < 32; ++k) {
      bnk[n * 32 + k] = bf_bits(rnd());
      bkn[k * 16 + n] = bnk[n * 32 + k];
    }
  std::vector<float> ref(16 * 16, 0.0f);
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 16; ++n) {
      double s = 0;
      for (int k = 0; k < 32; ++k) s += static_cast<double>(bf_val(a[m * 32 + k])) * bf_val(bnk[n * 32 + k]);
      ref[m * 16 + n] = static_cast<float>(s);
    }
  auto* da = dev_alloc<uint16_t>(a.size());
  auto* db = dev_alloc<uint16_t>(bnk.size());
  auto* dd = dev_alloc<float>(256);
  REQUIRE(cudaMemcpy(da, a.data(), a.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  for (bool kn : {false, true}) {
    INFO("B layout " << (kn ? "[k][n] via ldmatrix.trans" : "[n][k] via ldmatrix"));
    REQUIRE(cudaMemcpy(db, (kn ? bkn : bnk).data(), bnk.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
    mma_kernel<<<1, 32, 16 * 40 * 2 + 32 * 40 * 2>>>(dd, da, db, kn);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    std::vector<float> got(256);
    REQUIRE(cudaMemcpy(got.data(), dd, 1024, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (int i = 0; i < 256; ++i) REQUIRE(got[i] == Approx(ref[i]).margin(1e-4));
  }
  cudaFree(da);
  cudaFree(db);
  cudaFree(dd);
}

TEST_CASE("emu: shuffles follow the CUDA semantics", "[emu]") {
  auto* d = dev_alloc<float>(32);
  warp_sum_kernel<<<1, 32>>>(d);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> got(32);
  REQUIRE(cudaMemcpy(got.data(), d, 128, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (int l = 0; l < 32; ++l) CHECK(got[l] == 496.0f + 1000.0f * (l + 3 < 32 ? l + 3 : l));
  cudaFree(d);
}

TEST_CASE("emu: a thread exiting while its block waits at __syncthreads is an error", "[emu]") {
  auto* d = dev_alloc<int>(64);
  early_exit_kernel<<<2, 64>>>(d);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
  CHECK(cudaGetLastError() == cudaSuccess);  // reported once
  cudaFree(d);
}

TEST_CASE("emu: a missing __syncthreads changes the result", "[emu]") {
  auto* d = dev_alloc<float>(64);
  std::vector<float> got(64);
  neighbour_kernel<<<3, 64>>>(d, true);
  REQUIRE(cudaMemcpy(got.data(), d, 256, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (int i = 0; i < 64; ++i) REQUIRE(got[i] == static_cast<float>((i + 1) % 64));
  neighbour_kernel<<<3, 64>>>(d, false);
  REQUIRE(cudaMemcpy(got.data(), d, 256, cudaMemcpyDeviceToHost) == cudaSuccess);
  int wrong = 0;
  for (int i = 0; i < 64; ++i) wrong += got[i] != static_cast<float>((i + 1) % 64);
  CHECK(wrong > 0);
  cudaFree(d);
}

TEST_CASE("emu: cp.async data arrives at the wait, not at the issue", "[emu]") {
  std::vector<float> in(128);
  for (int i = 0; i < 128; ++i) in[i] = static_cast<float>(i);
  auto* din = dev_alloc<float>(128);
  auto* d = dev_alloc<float>(32);
  REQUIRE(cudaMemcpy(din, in.data(), 512, cudaMemcpyHostToDevice) == cudaSuccess);
  std::vector<float> got(32);
  cp_async_kernel<<<1, 32, 512>>>(d, din, true);
  REQUIRE(cudaMemcpy(got.data(), d, 128, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (int i = 0; i < 32; ++i) REQUIRE(got[i] == static_cast<float>(4 * i));
  cp_async_kernel<<<1, 32, 512>>>(d, din, false);
  REQUIRE(cudaMemcpy(got.data(), d, 128, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (int i = 0; i < 32; ++i) CHECK(got[i] != got[i]);  // NaN: shared memory not yet written
  cudaFree(din);
  cudaFree(d);
}
