// Device optimizers vs the CPU reference: the same random weights, gradients (and Newton-Muon input
// activations) through make_optimizer(..., on_device = false / true) for a few steps; the weight
// updates must agree to fp32 rounding (AdamW, RMNP, PolarGrad/QDWH) or to bf16 Newton-Schulz
// tolerance (Muon family). State tensors must match by name and shape, and a device optimizer
// loaded from the CPU's state (copy_state_from_host + scalar state) must continue like the CPU one.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "model/cuda_device.h"
#include "optim/matrix_common_cuda.h"
#include "llmtrain/optim.h"
#include "llmtrain/rng.h"
#include "tools/bench_optim.h"
#include "cpu/optim.h"

using namespace llmtrain;

namespace {

bool have_gpu() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

struct Problem {
  std::deque<ParamInfo> infos;
  std::vector<float> w0;  // all tensors, concatenated
  std::vector<size_t> off;
  size_t total = 0;
};

Problem make_problem(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes, ParamRole role,
                     uint64_t seed) {
  Problem p;
  for (const auto& [name, shape] : shapes) {
    ParamInfo info;
    info.name = name;
    info.role = role;
    info.shape = shape;
    info.numel = 1;
    for (int64_t d : shape) info.numel *= (size_t)d;
    info.offset = p.total;
    p.off.push_back(p.total);
    p.total += info.numel;
    p.infos.push_back(info);
  }
  Rng rng(seed);
  p.w0.resize(p.total);
  for (auto& x : p.w0) x = (float)(0.02 * rng.normal());
  return p;
}

std::vector<float> gradients(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> g(n);
  for (auto& x : g) x = (float)rng.normal();
  return g;
}

double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// Runs `steps` steps of the same optimizer on the CPU and on the device; returns the relative
// Frobenius error of the device's total weight change against the CPU's, after checking state.
struct Pair {
  Problem prob;
  GroupConfig cfg;
  std::vector<float> w_cpu, g_cpu;
  cuda::DeviceBuffer<float> w_dev, g_dev;
  std::vector<ParamRef> cpu_refs, dev_refs;
  std::unique_ptr<Optimizer> cpu, dev;

  Pair(Problem p, GroupConfig c, uint64_t seed) : prob(std::move(p)), cfg(std::move(c)) {
    w_cpu = prob.w0;
    g_cpu.assign(prob.total, 0.0f);
    w_dev.reset(prob.total);
    g_dev.reset(prob.total);
    w_dev.upload(prob.w0.data());
    for (size_t i = 0; i < prob.infos.size(); ++i) {
      cpu_refs.push_back(ParamRef{&prob.infos[i], w_cpu.data() + prob.off[i], g_cpu.data() + prob.off[i]});
      dev_refs.push_back(ParamRef{&prob.infos[i], w_dev.data() + prob.off[i], g_dev.data() + prob.off[i]});
    }
    cpu = make_optimizer(cfg, cpu_refs, seed);
    dev = make_optimizer(cfg, dev_refs, seed, true);
  }

  void observe(uint64_t seed) {
    for (size_t i = 0; i < prob.infos.size(); ++i) {
      const int64_t rows = 17, cols = prob.infos[i].cols();
      std::vector<float> z = gradients((size_t)(rows * cols), seed + i);
      cpu->observe_inputs(prob.infos[i], z.data(), rows, cols);
      dev->observe_inputs(prob.infos[i], z.data(), rows, cols);
    }
  }

  void step(int64_t t, uint64_t seed) {
    if (cpu->wants_inputs(t)) observe(seed * 7 + 1);
    REQUIRE(dev->wants_inputs(t) == cpu->wants_inputs(t));
    // Copy into the existing buffer: cpu_refs point into g_cpu (a move-assignment would free it).
    const std::vector<float> g = gradients(prob.total, seed);
    std::copy(g.begin(), g.end(), g_cpu.begin());
    g_dev.upload(g_cpu.data());
    cpu->step(cpu_refs, cfg.lr, t);
    dev->step(dev_refs, cfg.lr, t);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  }

  double update_error() {
    std::vector<float> wd(prob.total);
    w_dev.download(wd.data());
    std::vector<double> a(prob.total), b(prob.total);
    for (size_t i = 0; i < prob.total; ++i) {
      a[i] = (double)wd[i] - prob.w0[i];
      b[i] = (double)w_cpu[i] - prob.w0[i];
    }
    return rel_err(a, b);
  }

  double state_error() {
    auto sc = cpu->state(), sd = dev->state();
    REQUIRE(sc.size() == sd.size());
    double worst = 0;
    for (size_t k = 0; k < sc.size(); ++k) {
      REQUIRE(sc[k].name == sd[k].name);
      REQUIRE(sc[k].shape == sd[k].shape);
      REQUIRE(sc[k].numel == sd[k].numel);
      REQUIRE(sd[k].on_device);
      std::vector<float> h(sd[k].numel);
      copy_state_to_host(sd[k], h.data());
      std::vector<double> a(h.begin(), h.end()), b(sc[k].data, sc[k].data + sc[k].numel);
      worst = std::max(worst, rel_err(a, b));
    }
    return worst;
  }
};

GroupConfig group(const std::string& type, float lr, float wd, nlohmann::json options = nlohmann::json::object()) {
  GroupConfig c;
  c.name = "matrix";
  c.type = type;
  c.lr = lr;
  c.weight_decay = wd;
  c.roles = {ParamRole::hidden_matrix};
  c.options = std::move(options);
  return c;
}

const std::vector<std::pair<std::string, std::vector<int64_t>>> kMatrices = {
    {"transformer.h.0.attn.c_attn.weight", {96, 32}},  // tall, splits into three [32, 32]
    {"transformer.h.0.attn.c_proj.weight", {32, 32}},  // square
    {"transformer.h.0.mlp.c_fc.weight", {128, 32}},    // tall
    {"transformer.h.0.mlp.c_proj.weight", {32, 128}},  // wide
    {"transformer.h.1.mlp.c_fc.weight", {128, 32}},    // same shape: batched with c_fc of layer 0
    {"odd.weight", {21, 30}},                          // not a multiple of 4: scalar kernel paths
};

void run_case(const std::string& type, nlohmann::json opts, float lr, double tol_update, double tol_state,
              int steps = 3) {
  INFO("optimizer " << type << " " << opts.dump());
  Pair p(make_problem(kMatrices, ParamRole::hidden_matrix, 11), group(type, lr, 0.1f, opts), 5);
  for (int t = 1; t <= steps; ++t) p.step(t, 100 + t);
  const double eu = p.update_error(), es = p.state_error();
  INFO("update error " << eu << ", state error " << es);
  CHECK(eu < tol_update);
  CHECK(es < tol_state);

  // Interchangeable state: a fresh device optimizer loaded from the CPU's state continues as it.
  GroupConfig cfg = p.cfg;
  std::vector<float> w_now(p.prob.total);
  p.w_dev.upload(p.w_cpu.data());  // both sides continue from the CPU weights
  auto dev2 = make_optimizer(cfg, p.dev_refs, 5, true);
  auto sc = p.cpu->state();
  auto sd = dev2->state();
  REQUIRE(sc.size() == sd.size());
  for (size_t k = 0; k < sc.size(); ++k) copy_state_from_host(sd[k], sc[k].data);
  dev2->load_scalar_state(p.cpu->scalar_state());
  p.dev = std::move(dev2);
  p.prob.w0 = p.w_cpu;
  p.step(steps + 1, 999);
  const double e2 = p.update_error();
  INFO("after state round trip: update error " << e2);
  CHECK(e2 < tol_update);
}

}  // namespace

TEST_CASE("gpu optim: AdamW matches the CPU (fp32) and writes the bf16 copy", "[gpu][optim]") {
  if (!have_gpu()) {
    WARN("no CUDA GPU visible: skipped");
    return;
  }
  run_case("adamw", nlohmann::json::object(), 1e-3f, 1e-5, 1e-5);
  run_case("adamw", {{"eps_mode", "uncorrected"}, {"beta2", 0.99}}, 1e-3f, 1e-5, 1e-5);

  // Vectors and matrices in one group; the bf16 copy is the rounded new weight.
  Problem prob = make_problem({{"a", {40}}, {"b", {8, 12}}, {"c", {7}}}, ParamRole::bias, 3);
  cuda::DeviceBuffer<float> w(prob.total), g(prob.total);
  cuda::DeviceBuffer<uint16_t> wb(prob.total);
  w.upload(prob.w0.data());
  auto gh = gradients(prob.total, 9);
  g.upload(gh.data());
  std::vector<ParamRef> refs;
  for (size_t i = 0; i < prob.infos.size(); ++i)
    refs.push_back(ParamRef{&prob.infos[i], w.data() + prob.off[i], g.data() + prob.off[i], nullptr,
                            wb.data() + prob.off[i]});
  GroupConfig c = group("adamw", 1e-2f, 0.0f);
  c.roles = {};
  c.catch_all = true;
  auto opt = make_optimizer(c, refs, 1, true);
  opt->step(refs, 1e-2f, 1);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> wh(prob.total);
  std::vector<uint16_t> bh(prob.total);
  w.download(wh.data());
  wb.download(bh.data());
  for (size_t i = 0; i < prob.total; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &wh[i], 4);
    const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;  // round to nearest even
    CHECK(bh[i] == (uint16_t)rounded);
  }
}

TEST_CASE("gpu optim: RMNP matches the CPU (fp32)", "[gpu][optim]") {
  if (!have_gpu()) {
    WARN("no CUDA GPU visible: skipped");
    return;
  }
  run_case("rmnp", nlohmann::json::object(), 4e-3f, 1e-5, 1e-5);
  run_case("rmnp", {{"nesterov", false}, {"momentum_form", "sum"}}, 4e-3f, 1e-5, 1e-5);

  // Rows wider than the register path (generic two-pass kernel).
  Pair p(make_problem({{"wide", {6, 20000}}, {"tall", {300, 8}}}, ParamRole::hidden_matrix, 2),
         group("rmnp", 4e-3f, 0.1f), 1);
  for (int t = 1; t <= 2; ++t) p.step(t, 50 + t);
  CHECK(p.update_error() < 1e-5);
  CHECK(p.state_error() < 1e-5);
}

TEST_CASE("gpu optim: Muon (bf16 Newton-Schulz) matches the CPU", "[gpu][optim]") {
  if (!have_gpu()) {
    WARN("no CUDA GPU visible: skipped");
    return;
  }
  // The momentum (fp32) matches tightly; the update carries bf16 Newton-Schulz error.
  for (const char* set : {"jordan5", "polar_express8", "polar_express5", "you6"})
    run_case("muon", {{"coefficients", set}}, 0.02f, 4e-2, 1e-5);
  run_case("muon", {{"split_qkv", true}, {"scale", "moonlight"}}, 0.02f, 4e-2, 1e-5);
  run_case("muon", {{"nesterov", false}, {"ns_steps", 6}}, 0.02f, 4e-2, 1e-5);
  // The symmetric split (s = 32 splits 16 + 16, the odd [21, 30] 8 + 13) against the same CPU.
  run_case("muon", {{"ns_symmetric", true}}, 0.02f, 4e-2, 1e-5);
  run_case("muon", {{"ns_symmetric", true}, {"split_qkv", true}, {"coefficients", "polar_express8"}}, 0.02f, 4e-2,
           1e-5);
}

TEST_CASE("gpu optim: symmetric Newton-Schulz split equals the unsplit products", "[gpu][optim]") {
  if (!have_gpu()) {
    WARN("no CUDA GPU visible: skipped");
    return;
  }
  using cuda::optim::DeviceCtx;
  using cuda::optim::NsEngine;
  auto to_float = [](const std::vector<uint16_t>& h) {
    std::vector<double> f(h.size());
    for (size_t i = 0; i < h.size(); ++i) {
      const uint32_t bits = (uint32_t)h[i] << 16;
      float x;
      std::memcpy(&x, &bits, 4);
      f[i] = x;
    }
    return f;
  };
  // Tall, wide and square; below and above the 256 boundary of the split unit (8 / 64); an odd
  // short side; batches of 1 and 3.
  struct Shape {
    int64_t rows, cols;
    int count;
  };
  for (const Shape sh : {Shape{96, 32, 3}, Shape{32, 96, 1}, Shape{45, 45, 2}, Shape{300, 260, 2}, Shape{256, 640, 1},
                         Shape{17, 23, 2}}) {
    INFO("[" << sh.rows << ", " << sh.cols << "] x " << sh.count);
    const int64_t n = sh.rows * sh.cols;
    const std::vector<float> g = gradients((size_t)(n * sh.count), (uint64_t)(sh.rows * 31 + sh.cols));
    cuda::DeviceBuffer<float> gd(g.size());
    gd.upload(g.data());
    const NsCoefficients& c = ns_coefficients("jordan5");
    std::vector<std::vector<double>> out;
    for (const bool sym : {false, true}) {
      DeviceCtx ctx;
      NsEngine ns(ctx);
      ns.set_symmetric(sym);
      const int plan = ns.add_plan(sh.rows, sh.cols, sh.count);
      const int64_t s = std::min(sh.rows, sh.cols);
      // The split happens whenever the short side allows it: this test cannot pass unsplit.
      CHECK(ns.split(plan) == (sym ? (s >= 256 ? (int)(s / 2 / 64 * 64) : (int)(s / 2 / 8 * 8)) : 0));
      ns.finalize();
      const void* r = ns.run(plan, gd.data(), c, 5);
      std::vector<uint16_t> h((size_t)(n * sh.count));
      REQUIRE(cudaMemcpy(h.data(), r, h.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
      out.push_back(to_float(h));
    }
    // Same bf16 products, other GEMM shapes: only accumulation order may differ.
    const double e = rel_err(out[1], out[0]);
    INFO("symmetric vs unsplit " << e);
    CHECK(e < 1e-2);
    // The emulator's GEMMs accumulate every element in k order whatever the shape, and x.y = y.x
    // in fp32: there the two layouts must agree bit for bit.
    if (std::getenv("LLMTRAIN_EMU")) CHECK(out[1] == out[0]);
    // And both are Newton-Schulz of each matrix (the CPU's fp32 one, bf16 tolerance).
    std::vector<double> ref((size_t)(n * sh.count));
    for (int k = 0; k < sh.count; ++k) {
      std::vector<float> o((size_t)n);
      newton_schulz(g.data() + k * n, sh.rows, sh.cols, c, 5, o.data());
      std::copy(o.begin(), o.end(), ref.begin() + k * n);
    }
    const double ec = rel_err(out[1], ref);
    INFO("symmetric vs CPU " << ec);
    CHECK(ec < 4e-2);
  }
}

TEST_CASE("gpu optim: Newton-Muon matches the CPU", "[gpu][optim]") {
  if (!have_gpu()) {
    WARN("no CUDA GPU visible: skipped");
    return;
  }
  // K (fp32 GEMM) matches to fp32 rounding; refresh every 2 steps exercises the blend and the
  // recomputed inverse.
  run_case("newton_muon", {{"refresh_every", 2}}, 0.02f, 5e-2, 1e-4, 4);
  // block 2 divides every input size of kMatrices (32, 128 and 30).
  run_case("newton_muon", {{"refresh_every", 1}, {"block", 2}, {"split_qkv", true}}, 0.02f, 5e-2, 1e-4, 3);
  run_case("newton_muon", {{"refresh_every", 2}, {"ns_symmetric", true}}, 0.02f, 5e-2, 1e-4, 3);
}

TEST_CASE("gpu optim: low-rank Muon matches the CPU", "[gpu][optim]") {
  if (!have_gpu()) {
    WARN("no CUDA GPU visible: skipped");
    return;
  }
  // full_threshold 16 sends every matrix with min side > 16 through the sketch (rank 8).
  run_case("lowrank_muon", {{"rank", 8}, {"full_threshold", 16}}, 0.02f, 5e-2, 1e-5);
  run_case("lowrank_muon", nlohmann::json::object(), 0.02f, 4e-2, 1e-5);
  run_case("lowrank_muon", {{"rank", 8}, {"full_threshold", 16}, {"ns_symmetric", true}}, 0.02f, 5e-2, 1e-5);
}

TEST_CASE("gpu optim: PolarGrad matches the CPU", "[gpu][optim]") {
  if (!have_gpu()) {
    WARN("no CUDA GPU visible: skipped");
    return;
  }
  run_case("polargrad", nlohmann::json::object(), 1e-3f, 1e-4, 1e-5);  // QDWH in fp64 on both
  run_case("polargrad", {{"polar", "ns"}}, 1e-3f, 4e-2, 1e-5);
  run_case("polargrad", {{"polar", "ns"}, {"ns_symmetric", true}}, 1e-3f, 4e-2, 1e-5);
}

TEST_CASE("gpu optim: device state survives a checkpoint-style round trip", "[gpu][optim]") {
  if (!have_gpu()) {
    WARN("no CUDA GPU visible: skipped");
    return;
  }
  Pair p(make_problem(kMatrices, ParamRole::hidden_matrix, 4), group("rmnp", 4e-3f, 0.1f), 1);
  p.step(1, 7);
  auto s = p.dev->state();
  std::vector<std::vector<float>> saved;
  for (const auto& t : s) {
    saved.emplace_back(t.numel);
    copy_state_to_host(t, saved.back().data());
  }
  auto fresh = make_optimizer(p.cfg, p.dev_refs, 1, true);
  auto f = fresh->state();
  for (size_t k = 0; k < f.size(); ++k) copy_state_from_host(f[k], saved[k].data());
  for (size_t k = 0; k < f.size(); ++k) {
    std::vector<float> back(f[k].numel);
    copy_state_to_host(f[k], back.data());
    CHECK(std::memcmp(back.data(), saved[k].data(), 4 * back.size()) == 0);
  }
}

TEST_CASE("gpu optim: bench optim times both Newton-Schulz layouts", "[gpu][optim]") {
  if (!have_gpu()) {
    WARN("no CUDA GPU visible: skipped");
    return;
  }
  OptimBenchOptions o;
  o.models = {"gpt2-tiny"};
  o.optimizers = {"muon", "rmnp"};
  o.steps = 1;
  o.warmup = 1;
  o.ns_symmetric = "both";
  const std::vector<OptimBenchRow> rows = bench_optimizers_cuda(o);
  REQUIRE(rows.size() == 3);  // muon unsplit, muon symmetric, rmnp (no Newton-Schulz: one row)
  CHECK((rows[0].optimizer == "muon" && !rows[0].ns_symmetric));
  CHECK((rows[1].optimizer == "muon" && rows[1].ns_symmetric));
  CHECK((rows[2].optimizer == "rmnp" && !rows[2].ns_symmetric));
  for (const auto& r : rows) {
    CHECK(r.step_ms > 0);
    CHECK(r.precond_ms > 0);
  }
  CHECK(rows[0].precond_work == rows[1].precond_work);  // nominal FLOPs in both layouts
  OptimBenchPeaks peaks;
  peaks.device = "test";
  peaks.gemm_flops = 1e12;
  peaks.copy_bytes_per_s = 1e11;
  const std::string md = optim_bench_markdown(rows, peaks);
  CHECK(md.find("muon (ns_symmetric)") != std::string::npos);
  CHECK(md.find("symmetric NS vs unsplit: ") != std::string::npos);

  o.ns_symmetric = "on";
  o.optimizers = {"muon"};
  const std::vector<OptimBenchRow> on = bench_optimizers_cuda(o);
  REQUIRE(on.size() == 1);
  CHECK(on[0].ns_symmetric);
}
