// Forward + backward timing of the CUDA backend (see cuda_backend_bench.h). One timed micro-step
// is what the trainer does per micro-batch minus the data loader: zero_grad, forward with targets
// (which refreshes the bf16 weights and copies the losses back), backward, and the gradient norm
// that clipping needs. Each step is timed on the host around a synchronised stream; the median is
// reported. When the config's optimizer groups can be built on the device (make_optimizer with
// on_device, src/optim/*_cuda.cpp), their update is timed separately after each micro-step and
// reported as optim_ms (the headline step_ms and MFU stay forward+backward only). The backend is
// built with the config's run.recompute and run.bf16_rounding, so backend_device_bytes is the
// memory at that setting; with stochastic rounding the optimizer does not write the bf16 copy
// (only the backend's refresh may, see cuda_backend.h).
#include "tools/bench_train_cuda.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <vector>

#include "model/cuda_backend.h"
#include "model/cuda_device.h"
#include "llmtrain/backend.h"
#include "llmtrain/error.h"
#include "llmtrain/metrics.h"
#include "llmtrain/model.h"
#include "llmtrain/optim.h"
#include "llmtrain/rng.h"

namespace llmtrain::cuda {

int bench_forward_backward(const RunConfig& cfg, const std::string& config_path, int steps, int warmup,
                           std::ostream& out) {
  const int B = cfg.data.micro_batch, T = cfg.data.seq_len;
  Model model(cfg.model);
  const DeviceInfo dev = device_info();
  size_t free0 = 0, total = 0;
  if (cudaMemGetInfo(&free0, &total) != cudaSuccess) throw RuntimeError("bench: cudaMemGetInfo failed");

  CudaBackendOptions bo;
  static_cast<BackendOptions&>(bo) = backend_options(cfg);
  CudaBackend be(model, B, T, bo);
  {
    std::vector<float> host(model.num_params());
    model.init_params(host.data(), cfg.run.seed);
    be.upload_params(host.data());
  }
  // Random tokens of the real vocabulary, next-token targets from the same stream.
  const int V = cfg.model.vocab_size;
  std::vector<int32_t> inputs((size_t)B * T), targets((size_t)B * T);
  Rng rng(cfg.run.seed);
  for (size_t i = 0; i < inputs.size(); ++i) {
    inputs[i] = (int32_t)(rng.next_u64() % (uint64_t)V);
    targets[i] = (int32_t)(rng.next_u64() % (uint64_t)V);
  }
  const float dloss = 1.0f / (float)(B * T);
  // Device optimizers for the config's groups, if this build has them for every group.
  struct Group {
    GroupConfig cfg;
    std::vector<ParamRef> refs;
    std::unique_ptr<Optimizer> opt;
  };
  std::vector<Group> groups;
  std::string optim_status = "timed (device optimizers)";
  try {
    const Schedule sched = parse_schedule(cfg.schedule, cfg.source, "schedule");
    const auto gcfgs = parse_optimizer_config(cfg.optimizer, sched, cfg.source);
    std::vector<ParamRef> all;
    const bool nearest = bo.bf16_rounding == Bf16Rounding::nearest;
    auto* wbf = nearest ? static_cast<uint16_t*>(be.bf16_params()) : nullptr;
    for (const auto& p : model.layout().params()) {
      ParamRef r{&p, be.params() + p.offset, be.grads() + p.offset};
      r.w_bf16 = wbf ? wbf + p.offset : nullptr;
      all.push_back(r);
    }
    const auto assigned = assign_groups(gcfgs, all);
    for (size_t i = 0; i < gcfgs.size(); ++i) {
      if (assigned[i].empty()) continue;
      Group g{gcfgs[i], assigned[i], nullptr};
      g.opt = make_optimizer(g.cfg, g.refs, mix_seed(cfg.run.seed, 1000 + i), /*on_device=*/true);
      g.opt->set_stream(be.stream());
      groups.push_back(std::move(g));
    }
  } catch (const std::exception& e) {
    groups.clear();
    optim_status = std::string("not timed: ") + e.what();
  }
  std::vector<double> ms, oms;
  double loss = 0;
  for (int s = 0; s < warmup + steps; ++s) {
    if (cudaStreamSynchronize(be.stream()) != cudaSuccess) throw RuntimeError("bench: stream synchronise failed");
    const auto t0 = std::chrono::steady_clock::now();
    be.begin_step(s + 1);  // as the trainer does: keys stochastic rounding, if configured
    be.zero_grad();
    int64_t valid = 0;
    loss = be.forward(inputs.data(), targets.data(), B, T, &valid) / (double)valid;
    be.backward(dloss);
    (void)be.grad_sq_norm();  // synchronises
    const double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (s >= warmup) ms.push_back(dt);
    if (!groups.empty()) {
      const auto o0 = std::chrono::steady_clock::now();
      try {
        for (auto& g : groups) g.opt->step(g.refs, g.cfg.lr, s + 1);
        if (cudaStreamSynchronize(be.stream()) != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess)
          throw RuntimeError("optimizer step failed on the device");
        const double odt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - o0).count();
        if (s >= warmup) oms.push_back(odt);
      } catch (const std::exception& e) {  // keep the forward+backward numbers
        optim_status = std::string("failed: ") + e.what();
        groups.clear();
        oms.clear();
      }
    }
  }
  size_t free1 = 0;
  if (cudaMemGetInfo(&free1, &total) != cudaSuccess) throw RuntimeError("bench: cudaMemGetInfo failed");
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  const double tok_s = (double)B * T / (med * 1e-3);
  const double fpt = model.flops_per_token(T);
  const double tflops = tok_s * fpt / 1e12;
  nlohmann::json j{{"config", config_path},
                   {"mode", "forward+backward only (CUDA backend, random tokens, no optimizer step)"},
                   {"device", dev.name},
                   {"peak_bf16_tflops", dev.peak_bf16_tflops},
                   {"peak_source", dev.peak_source},
                   {"arch", cfg.model.arch},
                   {"params", model.num_params()},
                   {"micro_batch", B},
                   {"seq_len", T},
                   {"tokens_per_step", B * T},
                   {"steps", steps},
                   {"step_ms_median", med},
                   {"step_ms_min", ms.front()},
                   {"step_ms_max", ms.back()},
                   {"tokens_per_s", tok_s},
                   {"gflops_per_token", fpt / 1e9},
                   {"achieved_tflops", tflops},
                   {"mfu", mfu(fpt, (double)B * T, med * 1e-3, be.peak_flops())},
                   {"recompute", bo.recompute},
                   {"bf16_rounding", cfg.run.bf16_rounding},
                   {"backend_device_bytes", be.device_bytes()},
                   {"device_used_bytes", total - free1},
                   // Every buffer is allocated up front, so what the run took is also its peak.
                   {"peak_device_bytes_by_run", free0 >= free1 ? free0 - free1 : 0},
                   {"device_total_bytes", total},
                   {"last_loss", loss},
                   {"optimizer", optim_status}};
  if (!oms.empty()) {
    std::sort(oms.begin(), oms.end());
    const double om = oms[oms.size() / 2];
    j["optim_ms_median"] = om;
    // One micro-batch per optimizer step: what a full step would cost without data loading.
    j["full_step_ms"] = med + om;
    j["full_step_mfu"] = mfu(fpt, (double)B * T, (med + om) * 1e-3, be.peak_flops());
  }
  out << j.dump(2) << "\n";
  out.flush();
  return 0;
}

}  // namespace llmtrain::cuda
