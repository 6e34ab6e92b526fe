// The CUDA plugin's entry point (compiled into libllmtrain_cuda.so, and into the binaries that link
// the CUDA code statically): the table of cuda_plugin.h filled from the CUDA side of each layer.
#include <cuda_runtime_api.h>

#include "llmtrain/backend.h"
#include "llmtrain/comm.h"
#include "llmtrain/optim.h"
#include "model/cuda_backend.h"
#include "model/cuda_device.h"
#include "optim/optimizers.h"
#include "tools/bench_gpu.h"
#include "tools/bench_optim.h"
#include "tools/bench_train_cuda.h"
#include "util/cuda_plugin.h"
#if defined(LLMTRAIN_HAVE_NCCL)
#include "dist/nccl_comm.h"
#endif

namespace llmtrain {
namespace {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    n = 0;
  }
  return n;
}

void device_summary(std::string* name, double* peak) {
  const cuda::DeviceInfo d = cuda::device_info();
  *name = d.name;
  *peak = d.peak_bf16_tflops;
}

#if defined(LLMTRAIN_HAVE_NCCL)
std::unique_ptr<Communicator> make_nccl(dist::NcclOptions* o) { return dist::make_nccl_communicator(std::move(*o)); }
#endif

void measure_optim_peaks(OptimBenchPeaks* out) { *out = measure_peaks_cuda(); }
void bench_optimizers(const OptimBenchOptions& o, std::vector<OptimBenchRow>* rows) { *rows = bench_optimizers_cuda(o); }

CudaPlugin make_table() {
  CudaPlugin t;
  t.device_count = device_count;
  t.device_summary = device_summary;
  t.make_backend = make_cuda_backend;
  t.make_optimizer = make_device_optimizer;
  t.state_copy = device_state_copy;
#if defined(LLMTRAIN_HAVE_NCCL)
  t.make_nccl = make_nccl;
#endif
  t.bench_gpu = cuda::run_gpu_microbench;
  t.bench_forward_backward = cuda::bench_forward_backward;
  t.measure_optim_peaks = measure_optim_peaks;
  t.bench_optimizers = bench_optimizers;
  return t;
}

}  // namespace
}  // namespace llmtrain

extern "C" __attribute__((visibility("default"))) const llmtrain::CudaPlugin* llmtrain_cuda_plugin() {
  static const llmtrain::CudaPlugin table = llmtrain::make_table();
  return &table;
}
