// `bench optim` on the CPU optimizers, plus the model-name handling and the Markdown table shared
// with the CUDA path (src/tools/bench_optim_cuda.cpp). See bench_optim.h.
#include "tools/bench_optim.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "llmtrain/error.h"
#include "llmtrain/model.h"
#include "llmtrain/optim.h"
#include "llmtrain/rng.h"
#include "cpu/linalg.h"
#include "cpu/optim.h"
#include "optim/optimizers.h"

namespace llmtrain {

std::vector<std::string> expand_bench_models(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const std::string& n : names) {
    if (n == "timing" || n == "table4") {  // the GPT-2 shapes of the RMNP paper's Table 4 (timed in Tables 2-3)
      for (const char* p : {"gpt2-60m", "gpt2-124m", "gpt2-200m", "gpt2-355m", "gpt2-500m", "gpt2-774m", "gpt2-1.3b",
                            "gpt2-1.5b"})
        out.push_back(p);
      continue;
    }
    std::string c = n == "gpt2-125m" ? "gpt2-124m" : n == "gpt2-770m" ? "gpt2-774m" : n;
    nlohmann::json j;
    if (!model_preset(c, j)) {
      std::string list;
      for (const auto& p : model_preset_names()) list += (list.empty() ? "" : ", ") + p;
      throw InputError("bench optim --model: unknown model \"" + n + "\" (known: " + list + ", timing)");
    }
    out.push_back(c);
  }
  return out;
}

ModelConfig bench_model_config(const std::string& preset) {
  nlohmann::json j;
  if (!model_preset(preset, j)) throw InputError("bench optim: unknown model preset \"" + preset + "\"");
  ModelConfig m;
  m.preset = preset;
  m.arch = j.value("arch", std::string("gpt2"));
  const bool llama = m.arch == "llama";
  m.n_layer = j.value("n_layer", m.n_layer);
  m.n_embd = j.value("n_embd", m.n_embd);
  m.n_head = j.value("n_head", m.n_head);
  m.n_kv_head = j.value("n_kv_head", 0);
  m.vocab_size = j.value("vocab_size", llama ? 32000 : 50257);
  m.max_seq_len = j.value("max_seq_len", m.max_seq_len);
  m.intermediate_size = j.value("intermediate_size", 0);
  m.bias = !llama;
  m.tie_embeddings = !llama;
  m.norm_eps = llama ? 1e-6f : 1e-5f;
  m.padded_vocab_size = (m.vocab_size + 127) / 128 * 128;
  if (m.intermediate_size == 0) m.intermediate_size = llama ? 256 * (((8 * m.n_embd) / 3 + 255) / 256) : 4 * m.n_embd;
  return m;
}

namespace {

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double ns_flops(int64_t rows, int64_t cols, int steps) {
  const double s = (double)std::min(rows, cols), l = (double)std::max(rows, cols);
  return steps * (4.0 * s * s * l + 2.0 * s * s * s);
}

double bytes_per_param(const std::string& type) {
  if (type == "adamw") return 28;  // read w g m v, write w m v
  return 20;                       // read w g m, write w m (RMNP fused; the floor of every momentum method)
}

std::string fmt(double x, int prec) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, x);
  return b;
}

}  // namespace

std::vector<const ParamInfo*> bench_matrices(const Model& model) {
  std::vector<const ParamInfo*> mats;
  for (const ParamInfo& p : model.layout().params())
    if (p.role == ParamRole::hidden_matrix) mats.push_back(&p);
  return mats;
}

std::vector<OptimBenchRow> bench_optimizers_cpu(const OptimBenchOptions& o) {
  using clock = std::chrono::steady_clock;
  std::vector<OptimBenchRow> rows;
  for (const std::string& name : o.models) {
    const Model model(bench_model_config(name));
    const std::vector<const ParamInfo*> mats = bench_matrices(model);
    size_t total = 0;
    for (const ParamInfo* p : mats) total += p->numel;
    std::vector<float> w(total), g(total);
    Rng rng(o.seed);
    for (size_t i = 0; i < total; ++i) {
      w[i] = 0.02f * (float)(2.0 * rng.uniform() - 1.0);
      g[i] = 1e-3f * (float)(2.0 * rng.uniform() - 1.0);
    }
    std::vector<ParamRef> refs;
    size_t off = 0;
    for (const ParamInfo* p : mats) {
      refs.push_back(ParamRef{p, w.data() + off, g.data() + off});
      off += p->numel;
    }
    for (const std::string& type : o.optimizers) {
      GroupConfig cfg;
      cfg.name = "matrix";
      cfg.type = type;
      cfg.lr = (float)default_lr(type);
      cfg.weight_decay = 0.1f;
      cfg.roles = {ParamRole::hidden_matrix};
      auto opt = make_optimizer(cfg, refs, o.seed);
      OptimBenchRow r;
      r.model = name;
      r.optimizer = type;
      r.device = "cpu";
      r.params = (int64_t)total;
      r.matrices = (int)mats.size();
      int64_t t = 1;
      for (int i = 0; i < o.warmup; ++i) opt->step(refs, cfg.lr, t++);
      std::vector<double> ms;
      for (int i = 0; i < o.steps; ++i) {
        const auto a = clock::now();
        opt->step(refs, cfg.lr, t++);
        ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - a).count());
      }
      r.step_ms = median_of(ms);
      r.step_bytes = bytes_per_param(type) * (double)total;
      double state = 0;
      for (const auto& s : opt->state()) state += 4.0 * (double)s.numel;
      r.peak_mib = (8.0 * (double)total + state) / (1024.0 * 1024.0);
      // The preconditioning alone, on the gradient as a stand-in for U (same shapes, same cost).
      if (type == "muon" || type == "rmnp") {
        const NsCoefficients& c = ns_coefficients("jordan5");
        std::vector<float> out(total);
        std::vector<double> pm;
        for (int i = 0; i < o.steps; ++i) {
          const auto a = clock::now();
          size_t q = 0;
          for (const ParamInfo* p : mats) {
            if (type == "muon")
              newton_schulz(g.data() + q, p->rows(), p->cols(), c, 5, out.data() + q);
            else
              normalize_rows(g.data() + q, p->rows(), p->cols(), 1e-12f, out.data() + q);
            q += p->numel;
          }
          pm.push_back(std::chrono::duration<double, std::milli>(clock::now() - a).count());
        }
        r.precond_ms = median_of(pm);
        if (type == "muon")
          for (const ParamInfo* p : mats) r.precond_work += ns_flops(p->rows(), p->cols(), 5);
        else
          r.precond_work = 8.0 * (double)total;
      }
      rows.push_back(r);
    }
  }
  return rows;
}

OptimBenchPeaks measure_peaks_cpu() {
  using clock = std::chrono::steady_clock;
  auto best_ms = [](int reps, const auto& fn) {
    double best = 1e30;
    for (int i = 0; i < reps; ++i) {
      const auto a = clock::now();
      fn();
      best = std::min(best, std::chrono::duration<double, std::milli>(clock::now() - a).count());
    }
    return best;
  };
  OptimBenchPeaks p;
  p.device = "cpu";
  // The GEMM Newton-Schulz uses, at a size whose operands leave the caches.
  const int64_t n = 768;
  std::vector<float> a((size_t)(n * n)), b((size_t)(n * n)), c((size_t)(n * n));
  Rng rng(7);
  for (auto& x : a) x = (float)rng.uniform();
  for (auto& x : b) x = (float)rng.uniform();
  const double gemm_ms = best_ms(3, [&] { linalg::matmul(a.data(), b.data(), c.data(), n, n, n); });
  p.gemm_flops = 2.0 * (double)(n * n * n) / (gemm_ms * 1e-3);
  // Copy bandwidth: 256 MiB read + 256 MiB written, far beyond the last-level cache.
  const size_t bytes = (size_t)256 << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  const double copy_ms = best_ms(3, [&] { std::memcpy(dst.data(), src.data(), bytes); });
  p.copy_bytes_per_s = 2.0 * (double)bytes / (copy_ms * 1e-3);
  p.how = "fp32 GEMM 768^3 (linalg::matmul, best of 3); memcpy of 256 MiB (best of 3)";
  return p;
}

double precond_floor_ms(const OptimBenchRow& r, const OptimBenchPeaks& p) {
  if (r.precond_ms < 0 || r.precond_work <= 0) return -1;
  const double ceiling = r.optimizer == "rmnp" ? p.copy_bytes_per_s : p.gemm_flops;
  return ceiling > 0 ? r.precond_work / ceiling * 1e3 : -1;
}

double step_floor_ms(const OptimBenchRow& r, const OptimBenchPeaks& p) {
  if (p.copy_bytes_per_s <= 0 || r.step_bytes <= 0) return -1;
  const double mem = r.step_bytes / p.copy_bytes_per_s * 1e3;
  if (r.optimizer == "adamw" || r.optimizer == "rmnp") return mem;
  if (r.optimizer == "muon" && r.precond_work > 0 && p.gemm_flops > 0) return mem + r.precond_work / p.gemm_flops * 1e3;
  return -1;  // low-rank / PolarGrad / Newton-Muon: no simple floor
}

std::string optim_bench_markdown(const std::vector<OptimBenchRow>& rows, const OptimBenchPeaks& peaks) {
  std::ostringstream os;
  os << "measured peaks on " << peaks.device << ": GEMM " << fmt(peaks.gemm_flops / 1e12, 3) << " TFLOP/s, copy "
     << fmt(peaks.copy_bytes_per_s / 1e9, 1) << " GB/s (" << peaks.how << ")\n\n";
  os << "| model | device | optimizer | matrices | params (M) | precond ms | precond achieved | precond x floor "
        "| step ms | step GB/s | step x floor | peak MiB | RMNP speedup vs Muon (precond / step) |\n";
  os << "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  auto times_floor = [](double ms, double floor) { return ms > 0 && floor > 0 ? fmt(ms / floor, 1) + "x" : std::string("-"); };
  for (const auto& r : rows) {
    // RMNP is compared with unsplit Muon (with the symmetric one when that is all there is); a
    // symmetric-split row with the unsplit row of its own optimizer.
    const OptimBenchRow* muon = nullptr;
    const OptimBenchRow* unsplit = nullptr;
    for (const auto& q : rows) {
      if (q.model != r.model || q.device != r.device) continue;
      if (q.optimizer == "muon" && (!muon || muon->ns_symmetric)) muon = &q;
      if (r.ns_symmetric && q.optimizer == r.optimizer && !q.ns_symmetric) unsplit = &q;
    }
    std::string pre = "-", ach = "-", spd = "-";
    if (r.precond_ms >= 0) {
      pre = fmt(r.precond_ms, 3);
      if (r.precond_ms > 0) {
        if (r.optimizer == "rmnp")
          ach = fmt(r.precond_work / (r.precond_ms * 1e-3) / 1e9, 1) + " GB/s";
        else
          ach = fmt(r.precond_work / (r.precond_ms * 1e-3) / 1e12, 3) + " TFLOP/s";
      }
    }
    if (r.optimizer == "rmnp" && muon && r.step_ms > 0) {
      spd = (r.precond_ms > 0 && muon->precond_ms > 0 ? fmt(muon->precond_ms / r.precond_ms, 1) + "x" : "-") + " / " +
            fmt(muon->step_ms / r.step_ms, 1) + "x";
    }
    if (unsplit && r.step_ms > 0)
      spd = "symmetric NS vs unsplit: " +
            (r.precond_ms > 0 && unsplit->precond_ms > 0 ? fmt(unsplit->precond_ms / r.precond_ms, 2) + "x" : "-") +
            " / " + fmt(unsplit->step_ms / r.step_ms, 2) + "x";
    const std::string gbs =
        (r.optimizer == "adamw" || r.optimizer == "rmnp") && r.step_ms > 0 ? fmt(r.step_bytes / (r.step_ms * 1e-3) / 1e9, 1)
                                                                           : "-";
    os << "| " << r.model << " | " << r.device << " | " << r.optimizer << (r.ns_symmetric ? " (ns_symmetric)" : "")
       << " | " << r.matrices << " | "
       << fmt((double)r.params / 1e6, 1) << " | " << pre << " | " << ach << " | "
       << times_floor(r.precond_ms, precond_floor_ms(r, peaks)) << " | " << fmt(r.step_ms, 3) << " | " << gbs << " | "
       << times_floor(r.step_ms, step_floor_ms(r, peaks)) << " | " << fmt(r.peak_mib, 0) << " | " << spd << " |\n";
  }
  os << "\nx floor: measured time / (work / measured peak): Newton-Schulz FLOPs at the GEMM rate, the fewest "
        "bytes of row normalisation or of the whole step at the copy rate; 1.0x is the ceiling. Newton-Schulz "
        "FLOPs are the unsplit products' in both layouts, so the symmetric split (which does 3/4 of the two "
        "symmetric products) shows as a higher effective rate and may go below 1.0x.\n";
  return os.str();
}

}  // namespace llmtrain
