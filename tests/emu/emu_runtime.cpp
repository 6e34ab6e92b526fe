// The subset of the CUDA runtime API that llmtrain calls, for the emulator test binary (which does
// not link libcudart). Signatures come from the toolkit's own cuda_runtime_api.h, included here,
// so a mismatch is a compile error. One emulated device shaped like an H100 (132 SMs, 227 KiB of
// opt-in shared memory per block, 80 GB). Everything is synchronous: a launch has finished when
// the launch expression returns, streams and events only keep the API's bookkeeping. Device memory
// is ordinary heap memory, so an AddressSanitizer build catches out-of-bounds accesses by kernels
// and by host copies alike. Launch failures (bad configuration, barrier misuse detected by the
// scheduler) are printed at once and returned by the next error query, like CUDA's launch errors.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "cuda_emu.h"
#include "emu_internal.h"

namespace {

constexpr size_t kTotalMem = 80ull << 30;
constexpr int kDefaultSmem = 48 << 10;        // without cudaFuncSetAttribute
constexpr int kMaxSmemOptin = 227 << 10;      // H100: 232448 bytes per block

struct State {
  std::mutex mu;
  std::map<const void*, size_t> allocs;        // device allocations -> bytes
  std::map<const void*, int> smem_optin;       // kernel -> MaxDynamicSharedMemorySize
  size_t allocated = 0;
  cudaError_t pending = cudaSuccess;           // launch error not yet reported
  int device = 0;
};
State& st() {
  static State* s = new State();  // never destroyed: frees may come from static destructors
  return *s;
}

cudaError_t take_pending() {
  cudaError_t e = st().pending;
  st().pending = cudaSuccess;
  return e;
}

struct EventRec {
  std::chrono::steady_clock::time_point t;
  bool recorded = false;
};

}  // namespace

namespace emu::internal {

std::string check_launch(const LaunchConfig& c) {
  const uint64_t threads = static_cast<uint64_t>(c.block.x) * c.block.y * c.block.z;
  if (threads == 0 || threads > 1024 || c.block.z > 64) return "block of " + std::to_string(threads) + " threads";
  if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 || c.grid.y > 65535 || c.grid.z > 65535 ||
      c.grid.x > 2147483647u)
    return "grid (" + std::to_string(c.grid.x) + "," + std::to_string(c.grid.y) + "," + std::to_string(c.grid.z) +
           ") out of range";
  int limit = kDefaultSmem;
  {
    std::lock_guard<std::mutex> lock(st().mu);
    auto it = st().smem_optin.find(c.kernel);
    if (it != st().smem_optin.end()) limit = it->second;
  }
  if (c.smem > static_cast<size_t>(limit))
    return std::to_string(c.smem) + " bytes of dynamic shared memory, the kernel may use " + std::to_string(limit) +
           " (cudaFuncSetAttribute(MaxDynamicSharedMemorySize) missing or too small?)";
  return {};
}

void set_launch_error(cudaError_t err, const std::string& detail) {
  std::fprintf(stderr, "emu: kernel launch failed (%s): %s\n", cudaGetErrorName(err), detail.c_str());
  if (st().pending == cudaSuccess) st().pending = err;
  if (std::getenv("LLMTRAIN_EMU_ABORT")) std::abort();  // for a debugger / core dump at the failure
}

uint64_t seed() {
  static const uint64_t s = [] {
    const char* e = std::getenv("LLMTRAIN_EMU_SEED");
    return e ? std::strtoull(e, nullptr, 0) : 0x9e3779b97f4a7c15ull;
  }();
  return s;
}

}  // namespace emu::internal

extern "C" {

cudaError_t cudaMalloc(void** p, size_t n) {
  if (p == nullptr) return cudaErrorInvalidValue;
  // 256-byte aligned like cudaMalloc; aligned_alloc memory is tracked by ASan like any heap block.
  const size_t rounded = ((n ? n : 1) + 255) / 256 * 256;
  *p = std::aligned_alloc(256, rounded);
  if (*p == nullptr) return cudaErrorMemoryAllocation;
  // Fresh device memory is not zero on a GPU: make reads of unwritten memory visible (NaN / -1).
  std::memset(*p, 0xFF, rounded);
  std::lock_guard<std::mutex> lock(st().mu);
  st().allocs[*p] = n;
  st().allocated += n;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (p == nullptr) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(st().mu);
    auto it = st().allocs.find(p);
    if (it == st().allocs.end()) return cudaErrorInvalidValue;
    st().allocated -= it->second;
    st().allocs.erase(it);
  }
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** p, size_t n) {
  *p = std::malloc(n ? n : 1);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind) {
  if (cudaError_t e = take_pending()) return e;
  if (n) std::memcpy(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind, cudaStream_t) {
  if (n) std::memcpy(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind, cudaStream_t) {
  if (width > dpitch || width > spitch) return cudaErrorInvalidPitchValue;
  for (size_t r = 0; r < height; ++r)
    std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int v, size_t n) {
  if (cudaError_t e = take_pending()) return e;
  if (n) std::memset(p, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) {
  if (n) std::memset(p, v, n);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* s) {
  *s = reinterpret_cast<cudaStream_t>(new char(0));
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) { return cudaStreamCreate(s); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (s != nullptr && s != cudaStreamLegacy && s != cudaStreamPerThread) delete reinterpret_cast<char*>(s);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return take_pending(); }
cudaError_t cudaDeviceSynchronize(void) { return take_pending(); }
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = reinterpret_cast<cudaEvent_t>(new EventRec());
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<EventRec*>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  auto* r = reinterpret_cast<EventRec*>(e);
  r->t = std::chrono::steady_clock::now();
  r->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return take_pending(); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  auto *ra = reinterpret_cast<EventRec*>(a), *rb = reinterpret_cast<EventRec*>(b);
  if (!ra->recorded || !rb->recorded) return cudaErrorInvalidResourceHandle;
  *ms = std::chrono::duration<float, std::milli>(rb->t - ra->t).count();
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = st().device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
  if (d != 0) return cudaErrorInvalidDevice;
  st().device = d;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return cudaErrorInvalidDevice;
  std::memset(p, 0, sizeof(*p));
  std::snprintf(p->name, sizeof(p->name), "llmtrain CPU emulator (H100-shaped)");
  p->totalGlobalMem = kTotalMem;
  p->sharedMemPerBlock = kDefaultSmem;
  p->sharedMemPerBlockOptin = kMaxSmemOptin;
  p->sharedMemPerMultiprocessor = 228 << 10;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsPerMultiProcessor = 2048;
  p->maxThreadsDim[0] = 1024;
  p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = 65535;
  p->maxGridSize[2] = 65535;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;
  p->l2CacheSize = 50 << 20;
  p->memoryBusWidth = 5120;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total) {
  std::lock_guard<std::mutex> lock(st().mu);
  *total = kTotalMem;
  *free_b = kTotalMem - st().allocated;
  return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p) {
  std::memset(a, 0, sizeof(*a));
  std::lock_guard<std::mutex> lock(st().mu);
  auto it = st().allocs.upper_bound(p);
  if (it != st().allocs.begin()) {
    --it;
    auto* base = static_cast<const char*>(it->first);
    if (static_cast<const char*>(p) < base + std::max<size_t>(it->second, 1)) {
      a->type = cudaMemoryTypeDevice;
      a->device = 0;
      a->devicePointer = const_cast<void*>(p);
      return cudaSuccess;
    }
  }
  a->type = cudaMemoryTypeUnregistered;
  a->hostPointer = const_cast<void*>(p);
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || value > kMaxSmemOptin) return cudaErrorInvalidValue;
    std::lock_guard<std::mutex> lock(st().mu);
    st().smem_optin[func] = value;
  }
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) { return take_pending(); }
cudaError_t cudaPeekAtLastError(void) { return st().pending; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    default: return "cudaError<emu>";
  }
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorLaunchFailure: return "emulated kernel failed (see the emu: line on stderr)";
    case cudaErrorInvalidConfiguration: return "invalid launch configuration (see the emu: line on stderr)";
    default: return cudaGetErrorName(e);
  }
}

}  // extern "C"
