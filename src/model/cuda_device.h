// Device-side utilities for the CUDA backend and its tests/benchmarks: what GPU we run on (with its
// nominal dense bf16 peak, for MFU), an RAII device buffer, and event-based timing of work
// submitted to a stream (median of many runs, as METHOD.md asks). Usable from plain C++ files:
// only the CUDA runtime API header is included.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace llmtrain::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  size_t total_mem = 0;
  size_t l2_bytes = 0;
  size_t smem_per_block_optin = 0;
  double peak_bf16_tflops = 0.0;  // dense, nominal; 0 when the GPU is not in our table
  std::string peak_source;        // which table entry matched, or why none did
};

// Properties of the current device (cudaGetDevice).
DeviceInfo device_info();
// Nominal dense bf16 tensor-core TFLOP/s for a device name (0 if unknown) and the matched entry.
double nominal_bf16_tflops(const std::string& name, std::string* matched = nullptr);

// Owning device allocation of n elements of T (uninitialised). Move-only.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { reset(n); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  void reset(size_t n);
  void release() noexcept;
  T* data() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  // Synchronous host <-> device copies of the first `count` elements (default: all).
  void upload(const T* host, size_t count = static_cast<size_t>(-1));
  void download(T* host, size_t count = static_cast<size_t>(-1)) const;

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Byte-level helpers the template above uses (defined in device.cu).
void* device_alloc(size_t bytes);
void device_free(void* p) noexcept;
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);

template <typename T>
void DeviceBuffer<T>::reset(size_t n) {
  release();
  if (n > 0) p_ = static_cast<T*>(device_alloc(n * sizeof(T)));
  n_ = n;
}
template <typename T>
void DeviceBuffer<T>::release() noexcept {
  if (p_ != nullptr) device_free(p_);
  p_ = nullptr;
  n_ = 0;
}
template <typename T>
void DeviceBuffer<T>::upload(const T* host, size_t count) {
  if (count == static_cast<size_t>(-1)) count = n_;
  copy_to_device(p_, host, count * sizeof(T));
}
template <typename T>
void DeviceBuffer<T>::download(T* host, size_t count) const {
  if (count == static_cast<size_t>(-1)) count = n_;
  copy_to_host(host, p_, count * sizeof(T));
}

// A pair of CUDA events around work on one stream.
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start(cudaStream_t stream);
  void stop(cudaStream_t stream);
  float elapsed_ms();  // synchronises on the stop event

 private:
  cudaEvent_t a_ = nullptr, b_ = nullptr;
};

// Runs `fn` (which submits work to `stream`) `warmup` times untimed, then `iters` times each
// between its own pair of events; returns the per-run milliseconds.
std::vector<float> time_on_stream(const std::function<void()>& fn, cudaStream_t stream, int warmup, int iters);
double median(std::vector<float> v);

}  // namespace llmtrain::cuda
