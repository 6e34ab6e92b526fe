// Helpers for the device-only tests (tests/gpu/, binary llmtrain_gpu_tests, run by
// scripts/gpu_check.sh, never by ctest): seeded random data that is exactly representable in bf16
// (so the CPU reference and the GPU see the same inputs), host <-> device copies, and the error
// measure every comparison uses: the norm-wise relative error ||got - ref|| / ||ref||, reported
// with the worst element so a failure says where to look.
#pragma once
#include <cuda_runtime_api.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "model/cuda_device.h"
#include "cuda/ops.h"
#include "llmtrain/rng.h"

namespace gputest {

using llmtrain::cuda::bf16;
using llmtrain::cuda::DeviceBuffer;

// bf16 tolerance for bf16 outputs (DESIGN.md section 4), fp32 tolerance for fp32 results that
// differ from the CPU only in summation order.
constexpr double kBf16Tol = 1e-2;
constexpr double kF32Tol = 1e-5;

// Under the CPU emulator (tests/emu, LLMTRAIN_CUDA_EMU) the largest shapes take minutes; they are
// left out there unless LLMTRAIN_EMU_FULL=1. On a GPU every shape always runs.
inline bool reduced_shapes() {
#if defined(LLMTRAIN_CUDA_EMU)
  return std::getenv("LLMTRAIN_EMU_FULL") == nullptr;
#else
  return false;
#endif
}

inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// Round-to-nearest-even to bf16 (as bits), NaN kept a quiet NaN.
inline uint16_t f2bf_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu)) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf2f(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float round_bf16(float f) { return bf2f(f2bf_bits(f)); }

// n values, normal(0, scale) + offset, rounded to bf16 when `bf16_exact`.
inline std::vector<float> randn(size_t n, uint64_t seed, double scale = 1.0, double offset = 0.0,
                                bool bf16_exact = true) {
  llmtrain::Rng r(llmtrain::mix_seed(seed, 12345));
  std::vector<float> v(n);
  for (auto& x : v) {
    x = static_cast<float>(offset + scale * r.normal());
    if (bf16_exact) x = round_bf16(x);
  }
  return v;
}

inline DeviceBuffer<bf16> to_dev_bf16(const std::vector<float>& h) {
  std::vector<uint16_t> b(h.size());
  for (size_t i = 0; i < h.size(); ++i) b[i] = f2bf_bits(h[i]);
  DeviceBuffer<bf16> d(h.size());
  llmtrain::cuda::copy_to_device(d.data(), b.data(), b.size() * 2);
  return d;
}
inline DeviceBuffer<float> to_dev_f32(const std::vector<float>& h) {
  DeviceBuffer<float> d(h.size());
  d.upload(h.data());
  return d;
}
inline DeviceBuffer<int32_t> to_dev_i32(const std::vector<int32_t>& h) {
  DeviceBuffer<int32_t> d(h.size());
  d.upload(h.data());
  return d;
}
inline std::vector<float> from_dev_bf16(const bf16* d, size_t n) {
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<uint16_t> b(n);
  llmtrain::cuda::copy_to_host(b.data(), d, n * 2);
  std::vector<float> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = bf2f(b[i]);
  return h;
}
inline std::vector<float> from_dev_f32(const float* d, size_t n) {
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> h(n);
  llmtrain::cuda::copy_to_host(h.data(), d, n * 4);
  return h;
}

struct ErrStat {
  double rel = 0;      // ||got - ref|| / ||ref||
  double max_abs = 0;  // worst |got - ref|
  size_t worst = 0;    // its index
  double ref_norm = 0;
  bool finite = true;
};

inline ErrStat compare(const float* got, const float* ref, size_t n) {
  ErrStat e;
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(got[i])) e.finite = false;
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
    if (std::fabs(d) > e.max_abs) {
      e.max_abs = std::fabs(d);
      e.worst = i;
    }
  }
  e.ref_norm = std::sqrt(den);
  e.rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return e;
}

// CHECKs that `got` matches `ref` within `tol` (norm-wise relative) and is finite everywhere.
inline void check_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref,
                        double tol) {
  REQUIRE(got.size() == ref.size());
  const ErrStat e = compare(got.data(), ref.data(), got.size());
  INFO(what << ": relative error " << e.rel << " (tolerance " << tol << "), max abs error " << e.max_abs
            << " at index " << e.worst << " (got " << got[e.worst] << ", want " << ref[e.worst] << "), |ref| "
            << e.ref_norm);
  CHECK(e.finite);
  CHECK(e.rel <= tol);
}

inline std::vector<float> round_all(std::vector<float> v) {
  for (auto& x : v) x = round_bf16(x);
  return v;
}

}  // namespace gputest

// Every test case starts with this: without a device the binary reports it and fails loudly
// rather than passing vacuously.
#define GPU_TEST_REQUIRE_DEVICE() REQUIRE(gputest::have_gpu())
