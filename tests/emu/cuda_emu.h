// CPU emulation of the CUDA execution model, force-included (g++ -include) into every kernel source
// that the emulator test binary compiles as host C++ (see tests/emu/README in docs/architecture.md).
// It keeps the toolkit's own host headers (cuda_runtime.h, cuda_bf16.h: they compile with g++ and
// give exact types and signatures), then replaces what only nvcc provides: the execution-space
// keywords, the thread-index builtins, __syncthreads and the warp collectives, and the few PTX
// instructions our inline-asm wrappers use (ldmatrix, mma.sync, cp.async, ex2). Every CUDA thread
// runs as a fiber; a block's fibers run one after another on one OS thread (emu_runtime.cpp), so
// `__shared__` variables become function-local statics shared by the block. Launches
// `k<<<g, b, s, st>>>(args)` are rewritten by emu_rewrite.py into `::emu::launch(k, g, b, s, st)(args)`.
#pragma once
#ifndef LLMTRAIN_CUDA_EMU
#define LLMTRAIN_CUDA_EMU 1
#endif

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- execution-space keywords: everything is host code here ----
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#undef __shared__
#undef __constant__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
// Blocks run one at a time on one OS thread, so a static is exactly "one copy per block".
#define __shared__ static
#define __constant__ static

namespace emu {

// The running fiber's coordinates; the scheduler rewrites them on every switch.
struct ThreadCoords {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
extern ThreadCoords g_coords;

// ---- launches ----
struct LaunchConfig {
  dim3 grid, block;
  size_t smem = 0;
  cudaStream_t stream = nullptr;
  const void* kernel = nullptr;
};
// Runs body(arg) once per thread of every block of the launch (errors: see cudaGetLastError).
void run_launch(const LaunchConfig& cfg, void (*body)(void*), void* arg);

template <class... P>
struct Launcher {
  void (*kernel)(P...);
  LaunchConfig cfg;
  template <class... A>
  void operator()(A&&... args) const {
    // Arguments convert to the parameter types once, at the launch, as the CUDA ABI copies them.
    using Params = std::tuple<std::decay_t<P>...>;
    Params params(std::forward<A>(args)...);
    struct Call {
      void (*k)(P...);
      Params* p;
    } call{kernel, &params};
    run_launch(
        cfg, [](void* x) {
          auto* c = static_cast<Call*>(x);
          std::apply(c->k, *c->p);
        },
        &call);
  }
};
template <class... P>
Launcher<P...> launch(void (*k)(P...), dim3 grid, dim3 block, size_t smem = 0, cudaStream_t stream = nullptr) {
  Launcher<P...> l;
  l.kernel = k;
  l.cfg.grid = grid;
  l.cfg.block = block;
  l.cfg.smem = smem;
  l.cfg.stream = stream;
  l.cfg.kernel = reinterpret_cast<const void*>(k);
  return l;
}

// The launch's dynamic shared memory (`extern __shared__ T name[]` is rewritten to use it).
void* dynamic_smem();

// ---- barriers and warp collectives (emu_runtime.cpp) ----
void sync_block();
void sync_warp(unsigned mask);
enum class ShflMode { idx, up, down, bfly };
uint64_t shfl_bits(unsigned mask, uint64_t bits, ShflMode mode, int arg, int width);

template <class T>
T shfl(unsigned mask, T v, ShflMode mode, int arg, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shfl of an 8-byte-or-less value");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = shfl_bits(mask, bits, mode, arg, width);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}

// ---- PTX instructions used by the inline-asm wrappers ----
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane l supplies the address of row l % 8 of
// matrix l / 8.
void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row, bool trans);
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 with C == D.
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
// cp.async.cg.shared.global [dst], [src], 16, src_bytes: the copy happens at the wait that
// completes its group, so reading the destination early reads stale shared memory.
void cp_async16(void* smem_dst, const void* gmem_src, int src_bytes);
void cp_async_commit();
void cp_async_wait(int n);
inline float ex2_approx_ftz(float x) {
  if (std::fpclassify(x) == FP_SUBNORMAL) x = 0.0f;
  float y = std::exp2(x);
  if (std::fpclassify(y) == FP_SUBNORMAL) y = std::copysign(0.0f, y);
  return y;
}

}  // namespace emu

// ---- builtins ----
#define threadIdx (::emu::g_coords.thread_idx)
#define blockIdx (::emu::g_coords.block_idx)
#define blockDim (::emu::g_coords.block_dim)
#define gridDim (::emu::g_coords.grid_dim)

// nvcc's template overload taking the kernel itself (cuda_runtime.h has it for nvcc only).
template <class... P>
inline cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}

inline void __syncthreads() { ::emu::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::emu::sync_warp(mask); }
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return ::emu::shfl(mask, v, ::emu::ShflMode::idx, src, width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::emu::shfl(mask, v, ::emu::ShflMode::up, static_cast<int>(delta), width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::emu::shfl(mask, v, ::emu::ShflMode::down, static_cast<int>(delta), width);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::emu::shfl(mask, v, ::emu::ShflMode::bfly, lane_mask, width);
}

// Cache-hint loads/stores are plain accesses on the CPU.
template <class T>
inline T __ldcs(const T* p) {
  return *p;
}
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
template <class T>
inline void __stcs(T* p, T v) {
  *p = v;
}
// Only the emulated PTX wrappers take shared addresses, and they are given the generic pointer.
inline size_t __cvta_generic_to_shared(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// The bit reinterpretations, one memcpy each (no aliasing tricks).
template <typename To, typename From>
inline To emu_bit_cast(From x) {
  static_assert(sizeof(To) == sizeof(From), "emu_bit_cast: sizes differ");
  To y;
  std::memcpy(&y, &x, sizeof y);
  return y;
}
inline unsigned __float_as_uint(float f) { return emu_bit_cast<unsigned>(f); }
inline float __uint_as_float(unsigned u) { return emu_bit_cast<float>(u); }
inline int __float_as_int(float f) { return emu_bit_cast<int>(f); }
inline float __int_as_float(int u) { return emu_bit_cast<float>(u); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }

// Device code calls unqualified min/max (CUDA's overloads); the host has only std::min/max.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
