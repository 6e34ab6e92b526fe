// Device info, the nominal-peak table used for MFU, allocation helpers behind DeviceBuffer, and
// event timing. The peak table lists dense (no sparsity) bf16 tensor-core rates at boost clock
// from the vendors' datasheets; matching is by substring of the CUDA device name, most specific
// entry first (an "H100 PCIe" must not match the plain "H100" SXM entry).
#include <algorithm>

#include "cuda/common.cuh"
#include "model/cuda_device.h"

namespace llmtrain::cuda {

double nominal_bf16_tflops(const std::string& name, std::string* matched) {
  struct Entry {
    const char* key;
    double tflops;
  };
  static const Entry table[] = {
      {"GH200", 989.4},     {"H200", 989.4},      {"H100 PCIe", 756.0}, {"H100 NVL", 835.0}, {"H800 PCIe", 756.0},
      {"H100", 989.4},      {"H800", 989.4},      {"H20", 148.0},       {"B200", 2250.0},  {"B100", 1750.0},
      {"A100", 312.0},      {"A800", 312.0},      {"A10G", 70.0},       {"A10", 125.0},    {"L40S", 362.0},
      {"L40", 181.0},       {"L4", 121.0},        {"RTX 6000 Ada", 364.0}, {"RTX 4090", 165.0},
      {"RTX 3090", 71.0},
  };
  for (const Entry& e : table) {
    if (name.find(e.key) != std::string::npos) {
      if (matched) *matched = e.key;
      return e.tflops;
    }
  }
  if (matched) *matched = "unknown GPU (no nominal peak)";
  return 0.0;
}

DeviceInfo device_info() {
  DeviceInfo d;
  CUDA_CHECK(cudaGetDevice(&d.index));
  cudaDeviceProp p{};
  CUDA_CHECK(cudaGetDeviceProperties(&p, d.index));
  d.name = p.name;
  d.cc_major = p.major;
  d.cc_minor = p.minor;
  d.sm_count = p.multiProcessorCount;
  d.total_mem = p.totalGlobalMem;
  d.l2_bytes = static_cast<size_t>(p.l2CacheSize);
  d.smem_per_block_optin = p.sharedMemPerBlockOptin;
  d.peak_bf16_tflops = nominal_bf16_tflops(d.name, &d.peak_source);
  return d;
}

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}
void device_free(void* p) noexcept { cudaFree(p); }
void copy_to_device(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void copy_to_host(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

EventTimer::EventTimer() {
  CUDA_CHECK(cudaEventCreate(&a_));
  CUDA_CHECK(cudaEventCreate(&b_));
}
EventTimer::~EventTimer() {
  cudaEventDestroy(a_);
  cudaEventDestroy(b_);
}
void EventTimer::start(cudaStream_t stream) { CUDA_CHECK(cudaEventRecord(a_, stream)); }
void EventTimer::stop(cudaStream_t stream) { CUDA_CHECK(cudaEventRecord(b_, stream)); }
float EventTimer::elapsed_ms() {
  CUDA_CHECK(cudaEventSynchronize(b_));
  float ms = 0.0f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, a_, b_));
  return ms;
}

std::vector<float> time_on_stream(const std::function<void()>& fn, cudaStream_t stream, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) fn();
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<cudaEvent_t> ev(2 * static_cast<size_t>(iters));
  for (auto& e : ev) CUDA_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < iters; ++i) {
    CUDA_CHECK(cudaEventRecord(ev[2 * i], stream));
    fn();
    CUDA_CHECK(cudaEventRecord(ev[2 * i + 1], stream));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> ms(iters);
  for (int i = 0; i < iters; ++i) CUDA_CHECK(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
  for (auto& e : ev) cudaEventDestroy(e);
  return ms;
}

double median(std::vector<float> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (static_cast<double>(v[n / 2 - 1]) + v[n / 2]);
}

}  // namespace llmtrain::cuda
