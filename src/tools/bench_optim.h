// `llmtrain bench optim`: the cost of one optimizer step on the hidden matrices of a model size
// (the RMNP paper's Tables 2-4 setting): the preconditioning alone (Newton-Schulz for the Muon
// family, row normalisation for RMNP) and the whole step, on the CPU optimizers or, on a CUDA
// build with a visible GPU, on their device twins. Random weights and gradients; medians.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "llmtrain/config.h"
#include "llmtrain/model.h"

namespace llmtrain {

struct OptimBenchOptions {
  std::vector<std::string> models;      // preset names (aliases gpt2-125m, gpt2-770m accepted)
  std::vector<std::string> optimizers;  // adamw, muon, rmnp, lowrank_muon, polargrad, newton_muon
  int steps = 100, warmup = 3;
  uint64_t seed = 1234;
  // Newton-Schulz GEMM layout of the Muon family on the GPU (the optimizers' "ns_symmetric"):
  // "off" (unsplit), "on" (symmetric split) or "both" (one row each, to see which pays).
  std::string ns_symmetric = "off";
};

struct OptimBenchRow {
  std::string model, optimizer, device;
  bool ns_symmetric = false;  // Muon family: ran with the symmetric Newton-Schulz split
  int64_t params = 0;      // elements updated (the model's hidden matrices)
  int matrices = 0;
  double precond_ms = -1;  // median; < 0 when the method has no separate preconditioning
  double precond_work = 0; // its FLOPs (Newton-Schulz) or fewest bytes (row normalisation)
  double step_ms = 0;      // median of whole optimizer steps
  double step_bytes = 0;   // fewest bytes one step must move (fp32 state, weights, gradients)
  double peak_mib = 0;     // GPU: device memory in use at the peak (weights, grads, optimizer);
                           // CPU: weights + grads + optimizer state tensors
};

// "gpt2-125m" -> "gpt2-124m" and "gpt2-770m" -> "gpt2-774m" (the paper's names); "table4" expands
// to the paper's eight GPT-2 sizes. InputError for unknown presets.
std::vector<std::string> expand_bench_models(const std::vector<std::string>& names);
// The ModelConfig of a preset with the derived sizes filled in as config loading does.
ModelConfig bench_model_config(const std::string& preset);

// The tensors a bench step updates: the model's hidden matrices, in layout order.
std::vector<const ParamInfo*> bench_matrices(const Model& model);

std::vector<OptimBenchRow> bench_optimizers_cpu(const OptimBenchOptions& o);
// CUDA builds only (src/tools/bench_optim_cuda.cpp).
std::vector<OptimBenchRow> bench_optimizers_cuda(const OptimBenchOptions& o);

// The ceilings the rows are judged against, measured on the same device in the same run: dense
// GEMM FLOP/s (what Newton-Schulz runs on: cuBLASLt bf16 on the GPU, our fp32 GEMM on the CPU)
// and copy bandwidth (bytes read + written per second: what RMNP and AdamW are bound by).
struct OptimBenchPeaks {
  std::string device;
  double gemm_flops = 0;
  double copy_bytes_per_s = 0;
  std::string how;  // what was measured, for the report
};
OptimBenchPeaks measure_peaks_cpu();
OptimBenchPeaks measure_peaks_cuda();  // CUDA builds only

// The fewest milliseconds a row's preconditioning / whole step can take at those peaks (work /
// ceiling; the step of a Newton-Schulz method adds its FLOPs to its bytes); < 0 when not defined.
double precond_floor_ms(const OptimBenchRow& r, const OptimBenchPeaks& p);
double step_floor_ms(const OptimBenchRow& r, const OptimBenchPeaks& p);

// Markdown: the measured peaks, then a table with achieved TFLOP/s (Newton-Schulz) and GB/s (RMNP,
// AdamW), each time against its floor (x floor), and the RMNP-vs-Muon speedups of the same model.
std::string optim_bench_markdown(const std::vector<OptimBenchRow>& rows, const OptimBenchPeaks& peaks);

}  // namespace llmtrain
