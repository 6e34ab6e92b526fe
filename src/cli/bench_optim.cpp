// `llmtrain bench optim`: optimizer step cost per model size (see src/tools/bench_optim.h). On a
// CUDA build with a visible GPU it times the device optimizers, otherwise the CPU ones; prints a
// Markdown table (and optionally writes the rows as JSON).
#include <algorithm>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "llmtrain/error.h"
#include "tools/bench_optim.h"
#include "optim/optimizers.h"
#include "util/cuda_plugin.h"

namespace llmtrain::cli {

Command add_bench_optim_command(CLI::App* bench) {
  struct Opts {
    std::vector<std::string> models{"gpt2-124m"};
    std::vector<std::string> optimizers{"muon", "rmnp", "adamw"};
    int steps = 100, warmup = 3;
    std::string device = "auto", json_out, ns_symmetric = "off";
    uint64_t seed = 1234;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = bench->add_subcommand(
      "optim", "Optimizer step and preconditioning time, bandwidth / TFLOP/s and memory per model size");
  sub->footer(
      "Times one optimizer step on the hidden matrices of each model (random weights and gradients):\n"
      "the preconditioning alone (Newton-Schulz for muon, row normalisation for rmnp) and the whole\n"
      "step. --model table4 runs the RMNP paper's eight GPT-2 sizes.\n"
      "Examples:\n"
      "  llmtrain bench optim --model gpt2-125m,gpt2-355m --optimizer muon,rmnp,adamw --steps 100\n"
      "  llmtrain bench optim --model table4\n"
      "  llmtrain bench optim --model table4 --optimizer muon --ns-symmetric both\n"
      "  llmtrain bench optim --model gpt2-tiny --steps 3 --device cpu");
  sub->add_option("--model", o->models, "Model presets, comma-separated (gpt2-125m ... gpt2-1.5b, table4)")
      ->delimiter(',');
  sub->add_option("--optimizer", o->optimizers, "Optimizer types, comma-separated")->delimiter(',');
  sub->add_option("--steps", o->steps, "Timed steps (median reported)")->check(CLI::PositiveNumber);
  sub->add_option("--warmup", o->warmup, "Untimed warm-up steps")->check(CLI::NonNegativeNumber);
  sub->add_option("--device", o->device, "auto (GPU when visible), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  sub->add_option("--ns-symmetric", o->ns_symmetric,
                  "GPU Newton-Schulz layout of the Muon family: off (unsplit), on (symmetric split), both")
      ->check(CLI::IsMember({"off", "on", "both"}));
  sub->add_option("--seed", o->seed, "Seed of the random weights and gradients");
  sub->add_option("--json", o->json_out, "Also write the rows to this JSON file");
  return {sub, [o]() {
            for (const auto& t : o->optimizers)
              if (std::find(optimizer_types().begin(), optimizer_types().end(), t) == optimizer_types().end())
                throw InputError("bench optim --optimizer: unknown optimizer \"" + t + "\"");
            OptimBenchOptions bo;
            bo.models = expand_bench_models(o->models);
            bo.optimizers = o->optimizers;
            bo.steps = o->steps;
            bo.warmup = o->warmup;
            bo.seed = o->seed;
            bo.ns_symmetric = o->ns_symmetric;
            // --device auto: the GPU when the CUDA plugin loads and sees one; cuda: it must.
            const CudaPlugin* cuda =
                o->device == "cuda" ? &cuda_plugin("bench optim --device cuda") : o->device == "auto" ? try_cuda_plugin() : nullptr;
            const int n = cuda ? cuda->device_count() : 0;
            const bool gpu = cuda && (o->device == "cuda" || n > 0);
            if (gpu && n == 0) throw InputError("bench optim --device cuda: no CUDA GPU is visible");
            std::vector<OptimBenchRow> rows;
            OptimBenchPeaks peaks;
            if (gpu) {
              cuda->measure_optim_peaks(&peaks);
              cuda->bench_optimizers(bo, &rows);
            }
            if (!gpu) {
              if (o->ns_symmetric != "off")
                throw InputError("bench optim --ns-symmetric " + o->ns_symmetric +
                                 ": the symmetric Newton-Schulz split is a GPU GEMM layout; the CPU optimizers "
                                 "have only the unsplit one (use --device cuda on a GPU build)");
              peaks = measure_peaks_cpu();
              rows = bench_optimizers_cpu(bo);
            }
            std::cout << optim_bench_markdown(rows, peaks);
            if (!o->json_out.empty()) {
              nlohmann::json j = nlohmann::json::array();
              for (const auto& r : rows)
                j.push_back({{"model", r.model},
                             {"optimizer", r.optimizer},
                             {"ns_symmetric", r.ns_symmetric},
                             {"device", r.device},
                             {"params", r.params},
                             {"matrices", r.matrices},
                             {"precond_ms", r.precond_ms},
                             {"precond_work", r.precond_work},
                             {"step_ms", r.step_ms},
                             {"step_bytes", r.step_bytes},
                             {"peak_mib", r.peak_mib},
                             {"precond_floor_ms", precond_floor_ms(r, peaks)},
                             {"step_floor_ms", step_floor_ms(r, peaks)}});
              nlohmann::json doc{{"device", peaks.device},
                                 {"peaks", {{"gemm_tflops", peaks.gemm_flops / 1e12},
                                            {"copy_gbps", peaks.copy_bytes_per_s / 1e9},
                                            {"how", peaks.how}}},
                                 {"rows", j}};
              std::ofstream f(o->json_out);
              if (!f) throw InputError("bench optim --json: cannot write " + o->json_out);
              f << doc.dump(2) << "\n";
            }
            return 0;
          }};
}

}  // namespace llmtrain::cli
