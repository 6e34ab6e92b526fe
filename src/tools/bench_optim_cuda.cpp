// `bench optim` on the device optimizers: random weights and gradients of a model's hidden matrices
// in device memory, each optimizer on its own non-blocking stream, event-timed medians of the whole
// step and of the preconditioning alone (DeviceMatrixOptimizer::bench_precondition), and the device
// memory in use after the timed steps (cudaMemGetInfo), which is the peak: the optimizers allocate
// only at creation and on their first step.
#include <string>
#include <utility>
#include <vector>

#include "tools/bench_gpu.h"
#include "model/cuda_device.h"
#include "optim/matrix_common_cuda.h"
#include "llmtrain/model.h"
#include "tools/bench_optim.h"

namespace llmtrain {

OptimBenchPeaks measure_peaks_cuda() {
  OptimBenchPeaks p;
  p.device = cuda::device_info().name;
  // The same two ceilings as `llmtrain bench gpu`: a large bf16 GEMM and a 1 GiB device copy.
  p.gemm_flops = cuda::bench_gemm_bf16_tflops(8192, 8192, 8192, 10) * 1e12;
  p.copy_bytes_per_s = cuda::bench_copy_gbps((size_t)1 << 30, 20) * 1e9;
  p.how = "cuBLASLt bf16 GEMM 8192^3 and cudaMemcpy device-to-device of 1 GiB, medians";
  return p;
}

std::vector<OptimBenchRow> bench_optimizers_cuda(const OptimBenchOptions& o) {
  using namespace cuda;
  using namespace cuda::optim;
  std::vector<OptimBenchRow> rows;
  const std::string dev_name = device_info().name;
  for (const std::string& name : o.models) {
    const Model model(bench_model_config(name));
    const std::vector<const ParamInfo*> mats = bench_matrices(model);
    size_t total = 0;
    for (const ParamInfo* p : mats) total += pad4(p->numel);
    OPT_CUDA(cudaDeviceSynchronize());
    size_t free0 = 0, totalmem = 0;
    OPT_CUDA(cudaMemGetInfo(&free0, &totalmem));
    DeviceBuffer<float> w(total), g(total);
    fill_uniform(w.data(), (int64_t)total, o.seed, 0.02f, nullptr);
    fill_uniform(g.data(), (int64_t)total, o.seed + 1, 1e-3f, nullptr);
    std::vector<ParamRef> refs;
    size_t off = 0;
    int64_t numel = 0;
    for (const ParamInfo* p : mats) {
      refs.push_back(ParamRef{p, w.data() + off, g.data() + off});
      off += pad4(p->numel);
      numel += (int64_t)p->numel;
    }
    OPT_CUDA(cudaDeviceSynchronize());
    // (type, Newton-Schulz layout) pairs: the Muon family's "ns_symmetric" as asked; PolarGrad
    // runs QDWH by default, the rest have no Newton-Schulz.
    std::vector<std::pair<std::string, bool>> runs;
    for (const std::string& type : o.optimizers) {
      const bool ns = type == "muon" || type == "lowrank_muon" || type == "newton_muon";
      if (!ns || o.ns_symmetric != "on") runs.emplace_back(type, false);
      if (ns && o.ns_symmetric != "off") runs.emplace_back(type, true);
    }
    for (const auto& [type, sym] : runs) {
      GroupConfig cfg;
      cfg.name = "matrix";
      cfg.type = type;
      cfg.lr = (float)default_lr(type);
      cfg.weight_decay = 0.1f;
      cfg.roles = {ParamRole::hidden_matrix};
      if (sym) cfg.options["ns_symmetric"] = true;
      cudaStream_t stream = nullptr;
      OPT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
      OptimBenchRow r;
      try {
        auto opt = make_optimizer(cfg, refs, o.seed, true);
        opt->set_stream(stream);
        r.model = name;
        r.optimizer = type;
        r.ns_symmetric = sym;
        r.device = dev_name;
        r.params = numel;
        r.matrices = (int)mats.size();
        int64_t t = 1;
        for (int i = 0; i < std::max(1, o.warmup); ++i) opt->step(refs, cfg.lr, t++);
        OPT_CUDA(cudaStreamSynchronize(stream));
        r.step_ms = median(time_on_stream([&] { opt->step(refs, cfg.lr, t++); }, stream, 0, o.steps));
        r.step_bytes = (type == "adamw" ? 28.0 : 20.0) * (double)numel;
        // Memory after the timed steps, before the bench-only buffers of the preconditioning runs.
        size_t free1 = 0;
        OPT_CUDA(cudaMemGetInfo(&free1, &totalmem));
        r.peak_mib = free0 > free1 ? (double)(free0 - free1) / (1024.0 * 1024.0) : 0.0;
        auto* dm = dynamic_cast<DeviceMatrixOptimizer*>(opt.get());
        if (dm && (type == "muon" || type == "rmnp") && dm->bench_precondition()) {
          r.precond_ms = median(time_on_stream([&] { dm->bench_precondition(); }, stream, 1, o.steps));
          r.precond_work = dm->bench_precondition_work();
        }
        OPT_CUDA(cudaStreamSynchronize(stream));
      } catch (...) {
        cudaStreamDestroy(stream);
        throw;
      }
      OPT_CUDA(cudaStreamDestroy(stream));
      rows.push_back(r);
    }
  }
  return rows;
}

}  // namespace llmtrain
