// `llmtrain bench`: speed measurements, never timed tests. `bench train CONFIG` runs a few
// training steps in a scratch run dir and reports tokens/s, step time and MFU; `bench gpu` runs the
// CUDA microbenchmarks (GEMM TFLOP/s, copy GB/s, per-kernel timings) on a CUDA build. Both train
// modes report the backend's memory at the config's run.recompute setting (`--set run.recompute=2`)
// and MFU by the trainer's formula (metrics.h mfu()).
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "llmtrain/config.h"
#include "llmtrain/error.h"
#include "llmtrain/metrics.h"
#include "llmtrain/model.h"
#include "llmtrain/trainer.h"
#include "util/cuda_plugin.h"

namespace fs = std::filesystem;

namespace llmtrain::cli {

Command add_bench_optim_command(CLI::App* bench);  // src/cli/bench_optim.cpp

Command add_bench_command(CLI::App& app) {
  struct Opts {
    std::string config;
    std::vector<std::string> sets;
    int steps = 10, warmup = 2;
    bool fwd_bwd_only = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("bench", "Benchmarks: training throughput, GPU kernels");
  sub->require_subcommand(1);
  CLI::App* tr = sub->add_subcommand("train", "Tokens/s, step time and MFU of a config's training step");
  tr->footer("Examples:\n  llmtrain bench train configs/demo-gpt2-tiny.json --steps 10\n"
             "  llmtrain bench train configs/paper/gpt2-small-owt-adamw.json --fwd-bwd-only");
  tr->add_option("config", o->config, "Run config (JSON)")->required()->check(CLI::ExistingFile);
  tr->add_option("--set", o->sets, "Override a config value (key.path=value)");
  tr->add_option("--steps", o->steps, "Timed steps")->check(CLI::PositiveNumber);
  tr->add_option("--warmup", o->warmup, "Untimed warm-up steps")->check(CLI::NonNegativeNumber);
  tr->add_flag("--fwd-bwd-only", o->fwd_bwd_only,
               "CUDA: time the backend's forward+backward on random tokens (no data files; a device optimizer update, when available, is timed separately)");
  CLI::App* gpu = sub->add_subcommand("gpu", "CUDA microbenchmarks (GEMM, copy bandwidth, kernels)");
  gpu->footer("Example:\n  llmtrain bench gpu");
  const Command optim = add_bench_optim_command(sub);
  return {sub, [o, tr, gpu, optim]() {
            if (optim.app->parsed()) return optim.run();
            if (gpu->parsed()) return cuda_plugin("bench gpu").bench_gpu(std::cout);
            (void)tr;
            if (o->fwd_bwd_only) {
              const CudaPlugin& cuda = cuda_plugin("bench train --fwd-bwd-only");
              RunConfig c = load_config(o->config, o->sets);
              return cuda.bench_forward_backward(c, o->config, o->steps, o->warmup, std::cout);
            }
            std::string dir = (fs::temp_directory_path() / ("llmtrain_bench_" + std::to_string(getpid()))).string();
            std::vector<std::string> sets = o->sets;
            sets.push_back("run.dir=\"" + dir + "\"");
            sets.push_back("run.steps=" + std::to_string(o->warmup + o->steps));
            sets.push_back("run.eval_every=0");
            sets.push_back("run.sample_tokens=0");
            sets.push_back("run.checkpoint_every=0");
            sets.push_back("run.log_every=1000000");
            sets.push_back("data.val=\"\"");
            RunConfig cfg = load_config(o->config, sets);
            TrainOptions to;
            to.overwrite = true;
            to.stop_after = o->warmup + o->steps;
            train(cfg, to);
            std::vector<double> tps, ms, oms;
            nlohmann::json memory_bytes;  // what the trainer logged: the backend's bytes at this setting
            std::ifstream f(fs::path(dir) / "metrics.jsonl");
            std::string line;
            while (std::getline(f, line)) {
              auto j = nlohmann::json::parse(line);
              if (j["step"].get<int64_t>() <= o->warmup) continue;
              tps.push_back(j["tokens_per_s"].get<double>());
              ms.push_back(j["step_ms"].get<double>());
              oms.push_back(j["optim_ms"].get<double>());
              if (j.contains("memory_bytes")) memory_bytes = j["memory_bytes"];
            }
            fs::remove_all(dir);
            if (tps.empty()) throw RuntimeError("bench: no timed steps recorded");
            auto median = [](std::vector<double> v) {
              std::sort(v.begin(), v.end());
              return v[v.size() / 2];
            };
            Model model(cfg.model);
            const double tok_s = median(tps);
            nlohmann::json out{{"config", o->config},
                               {"backend", cfg.run.backend},
                               {"params", model.num_params()},
                               {"tokens_per_step", cfg.data.batch_tokens > 0 ? cfg.data.batch_tokens
                                                                             : (int64_t)cfg.data.micro_batch * cfg.data.seq_len},
                               {"tokens_per_s", tok_s},
                               {"step_ms", median(ms)},
                               {"optim_ms", median(oms)},
                               {"gflops_per_token", model.flops_per_token(cfg.data.seq_len) / 1e9},
                               {"achieved_tflops", tok_s * model.flops_per_token(cfg.data.seq_len) / 1e12},
                               {"recompute", cfg.run.recompute},
                               {"memory_bytes", memory_bytes}};
            if (cfg.run.backend == "cuda") {  // the training run above loaded the plugin already
              std::string device;
              double peak_tflops = 0;
              cuda_plugin("bench train").device_summary(&device, &peak_tflops);
              out["device"] = device;
              out["peak_bf16_tflops"] = peak_tflops;
              out["mfu"] = mfu(model.flops_per_token(cfg.data.seq_len), tok_s, 1.0, peak_tflops * 1e12);
            }
            std::printf("%s\n", out.dump(2).c_str());
            return 0;
          }};
}

}  // namespace llmtrain::cli
