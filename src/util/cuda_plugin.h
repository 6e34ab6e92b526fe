// The CUDA plugin: everything that touches the CUDA runtime or libraries (the CUDA backend, the
// device optimizers, NCCL, the GPU benchmarks) lives in libllmtrain_cuda.so, which the core loads
// with dlopen the first time a command asks for the GPU. Commands that never do (tokenize, inspect,
// eval on the CPU, ...) therefore start without mapping cuBLAS/cuBLASLt/cuSOLVER/NCCL, and a
// CPU-only build is the same binary minus the plugin. Binaries that link the CUDA code statically
// (the GPU and emulator test programs) define llmtrain_cuda_plugin() themselves and skip the dlopen.
//
// The table is the ABI between the two: both sides are built from one source tree in one build, and
// `abi` guards against a stale plugin from another build. The plugin resolves the core's symbols
// from the executable that loads it (the llmtrain binary exports them).
#pragma once
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace llmtrain {

class Backend;
class Communicator;
class Model;
class Optimizer;
struct BackendOptions;
struct GroupConfig;
struct OptimBenchOptions;
struct OptimBenchPeaks;
struct OptimBenchRow;
struct ParamRef;
struct RunConfig;
namespace dist {
struct NcclOptions;
}

constexpr int kCudaPluginAbi = 1;

struct CudaPlugin {
  int abi = kCudaPluginAbi;
  // Visible GPUs (0 when there is no driver or no device; never throws).
  int (*device_count)() = nullptr;
  // Name and nominal dense bf16 peak (TFLOP/s, 0 when unknown) of the current device.
  void (*device_summary)(std::string* name, double* peak_bf16_tflops) = nullptr;
  // The CUDA training backend (src/model/cuda_backend.cu).
  std::unique_ptr<Backend> (*make_backend)(const Model& model, int max_B, int max_T, const BackendOptions& opts) = nullptr;
  // The device twin of an optimizer (src/optim/<type>_cuda.cpp); `options` are checked_type_options.
  std::unique_ptr<Optimizer> (*make_optimizer)(const GroupConfig& cfg, const nlohmann::json& options,
                                               const std::vector<ParamRef>& params, uint64_t seed) = nullptr;
  // Synchronises the device, then copies `bytes` between host and device memory.
  void (*state_copy)(void* dst, const void* src, size_t bytes, bool to_host) = nullptr;
  // The NCCL communicator; null when the plugin was built without NCCL.
  std::unique_ptr<Communicator> (*make_nccl)(dist::NcclOptions* opts) = nullptr;
  // Benchmarks (src/tools/bench_*cuda*, bench_gpu.cu).
  int (*bench_gpu)(std::ostream& out) = nullptr;
  int (*bench_forward_backward)(const RunConfig& cfg, const std::string& config_path, int steps, int warmup,
                                std::ostream& out) = nullptr;
  void (*measure_optim_peaks)(OptimBenchPeaks* out) = nullptr;
  void (*bench_optimizers)(const OptimBenchOptions& o, std::vector<OptimBenchRow>* rows) = nullptr;
};

// The plugin, loaded on first use: the statically linked one if this binary has it, else
// $LLMTRAIN_CUDA_PLUGIN, else libllmtrain_cuda.so beside the executable. InputError naming `what`
// (the feature that asked, e.g. "run.backend \"cuda\"") and the reason when there is none: not built
// (no nvcc at configure time), or the dlopen error (which names the missing library).
const CudaPlugin& cuda_plugin(const std::string& what);
// The plugin or null, with the reason in *why; never throws.
const CudaPlugin* try_cuda_plugin(std::string* why = nullptr);
// Visible GPUs through the plugin; 0 when there is no plugin.
int cuda_device_count();

}  // namespace llmtrain

// Defined by the plugin (and by binaries that link the CUDA code statically).
extern "C" const llmtrain::CudaPlugin* llmtrain_cuda_plugin();
