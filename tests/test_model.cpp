// Whole-model tests of the CPU reference: gradients of the full GPT-2 and LLaMA forward/backward
// against central finite differences in double precision, fp32 vs fp64 agreement, the parameter
// layout (HF names, shapes, roles) and the seeded initialisation; activation recomputation gives
// the same bits as keeping everything, with less memory.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "model/cpu_model.h"
#include "llmtrain/backend.h"
#include "llmtrain/error.h"
#include "llmtrain/model.h"
#include "llmtrain/rng.h"
#include "test_util.h"

using namespace llmtrain;

namespace {

ModelConfig tiny(const std::string& arch) { return test::tiny_model(arch); }

struct Batch {
  std::vector<int32_t> in, tg;
};

Batch random_batch(int B, int T, int V, uint64_t seed) {
  Rng r(seed);
  Batch b;
  for (int i = 0; i < B * T; ++i) {
    b.in.push_back((int32_t)(r.next_u64() % V));
    b.tg.push_back(i % 7 == 3 ? -1 : (int32_t)(r.next_u64() % V));  // some ignored targets
  }
  return b;
}

// Init, then add noise so that no gain is exactly 1 and no bias exactly 0 (a stronger check).
std::vector<double> random_params(const Model& m, uint64_t seed) {
  std::vector<float> f(m.num_params());
  m.init_params(f.data(), seed);
  Rng r(seed + 1);
  std::vector<double> d(f.size());
  for (size_t i = 0; i < f.size(); ++i) d[i] = f[i] + 0.05 * r.normal();
  return d;
}

double mean_loss(cpu::CpuModel<double>& cm, const Batch& b, int B, int T) {
  int64_t valid = 0;
  double s = cm.forward(b.in.data(), b.tg.data(), B, T, &valid);
  return s / (double)valid;
}

void check_model_gradients(const ModelConfig& cfg) {
  Model m(cfg);
  const int B = 2, T = 7;
  cpu::CpuModel<double> cm(m, B, T);
  auto p = random_params(m, 11);
  std::copy(p.begin(), p.end(), cm.params());
  Batch b = random_batch(B, T, cfg.vocab_size, 5);
  int64_t valid = 0;
  cm.forward(b.in.data(), b.tg.data(), B, T, &valid);
  cm.zero_grad();
  cm.backward(1.0 / (double)valid);
  std::vector<double> g(cm.grads(), cm.grads() + m.num_params());

  // Every tensor gets checked at a few positions (padded vocab rows excluded: they are unused).
  Rng r(99);
  double worst = 0;
  int checked = 0;
  for (const auto& info : m.layout().params()) {
    size_t limit = info.numel;
    if ((info.role == ParamRole::embedding && info.name.find("wpe") == std::string::npos) ||
        info.role == ParamRole::lm_head)
      limit = (size_t)cfg.vocab_size * info.cols();
    if (info.name.find("wpe") != std::string::npos) limit = (size_t)T * info.cols();
    for (int k = 0; k < 6; ++k) {
      size_t j = info.offset + r.next_u64() % limit;
      // Five-point central stencil: truncation error O(h^4), so h can be large enough that
      // rounding (~1e-16 / h) stays far below the tolerance.
      const double h = 1e-3, w0 = cm.params()[j];
      auto at = [&](double w) {
        cm.params()[j] = w;
        return mean_loss(cm, b, B, T);
      };
      double fd = (8 * (at(w0 + h) - at(w0 - h)) - (at(w0 + 2 * h) - at(w0 - 2 * h))) / (12 * h);
      cm.params()[j] = w0;
      double err = std::fabs(fd - g[j]) / std::max(std::fabs(fd) + std::fabs(g[j]), 1e-7);
      INFO(info.name << " [" << (j - info.offset) << "] fd " << fd << " analytic " << g[j]);
      CHECK(err < 1e-6);
      worst = std::max(worst, err);
      ++checked;
    }
  }
  WARN(cfg.arch << ": checked " << checked << " parameter gradients, worst relative error " << worst);
  // Padded vocabulary rows never receive gradient.
  const auto& wte = m.layout()[m.index().wte];
  for (size_t j = (size_t)cfg.vocab_size * wte.cols(); j < wte.numel; ++j) REQUIRE(g[wte.offset + j] == 0.0);
}

}  // namespace

TEST_CASE("GPT-2 whole-model gradients match finite differences (fp64)", "[model]") {
  auto c = tiny("gpt2");
  check_model_gradients(c);
  c.scale_attn_by_inverse_layer_idx = true;
  c.tie_embeddings = false;
  check_model_gradients(c);
  c.bias = false;
  check_model_gradients(c);
}

TEST_CASE("LLaMA whole-model gradients match finite differences (fp64)", "[model]") {
  auto c = tiny("llama");
  check_model_gradients(c);
  c.n_kv_head = 4;  // no GQA
  c.tie_embeddings = true;
  check_model_gradients(c);
}

TEST_CASE("a wrong gradient is caught by the finite-difference check", "[model]") {
  // Guard against a check that cannot fail: perturb one analytic gradient and see it exceed 1e-6.
  Model m(tiny("gpt2"));
  cpu::CpuModel<double> cm(m, 1, 4);
  auto p = random_params(m, 3);
  std::copy(p.begin(), p.end(), cm.params());
  Batch b = random_batch(1, 4, 50, 9);
  int64_t valid = 0;
  cm.forward(b.in.data(), b.tg.data(), 1, 4, &valid);
  cm.zero_grad();
  cm.backward(1.0 / valid);
  size_t j = m.layout().find("transformer.h.0.attn.c_attn.weight").offset + 3;
  double analytic = cm.grads()[j] * 1.001;
  const double h = 1e-5, w0 = cm.params()[j];
  cm.params()[j] = w0 + h;
  double lp = mean_loss(cm, b, 1, 4);
  cm.params()[j] = w0 - h;
  double lm = mean_loss(cm, b, 1, 4);
  double fd = (lp - lm) / (2 * h);
  REQUIRE(std::fabs(fd - analytic) / (std::fabs(fd) + std::fabs(analytic)) > 1e-6);
}

TEST_CASE("fp32 backend agrees with the fp64 model", "[model]") {
  for (const char* arch : {"gpt2", "llama"}) {
    Model m(tiny(arch));
    const int B = 2, T = 8;
    std::vector<float> pf(m.num_params());
    m.init_params(pf.data(), 21);
    auto be = make_cpu_backend(m, B, T);
    be->upload_params(pf.data());
    cpu::CpuModel<double> cm(m, B, T);
    for (size_t i = 0; i < pf.size(); ++i) cm.params()[i] = pf[i];
    Batch b = random_batch(B, T, 50, 4);
    int64_t v1 = 0, v2 = 0;
    double l32 = be->forward(b.in.data(), b.tg.data(), B, T, &v1);
    double l64 = cm.forward(b.in.data(), b.tg.data(), B, T, &v2);
    REQUIRE(v1 == v2);
    CHECK(std::fabs(l32 - l64) / std::fabs(l64) < 1e-5);
    be->zero_grad();
    be->backward(1.0f / v1);
    cm.zero_grad();
    cm.backward(1.0 / v2);
    std::vector<float> g(m.num_params());
    be->download_grads(g.data());
    double num = 0, den = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      num += (g[i] - cm.grads()[i]) * (g[i] - cm.grads()[i]);
      den += cm.grads()[i] * cm.grads()[i];
    }
    CHECK(std::sqrt(num / den) < 1e-4);
  }
}

TEST_CASE("recompute 1 and 2 give bitwise the same loss, gradients and matrix inputs as 0", "[model][recompute]") {
  for (const char* arch : {"gpt2", "llama"}) {
    INFO("arch " << arch);
    Model m(tiny(arch));
    const int B = 2, T = 8;
    const auto pd = random_params(m, 33);
    std::vector<float> pf(pd.begin(), pd.end());
    double loss[3];
    std::vector<float> grads[3];
    size_t bytes[3];
    std::vector<std::vector<float>> inputs[3];
    for (int rc = 0; rc <= 2; ++rc) {
      BackendOptions o;
      o.recompute = rc;
      o.bf16_rounding = Bf16Rounding::stochastic;  // no bf16 copy on the cpu: no effect
      auto be = make_backend("cpu", m, B, T, o);
      be->upload_params(pf.data());
      be->zero_grad();
      // Two micro-batches, so the second backward recomputes over the first one's gradients.
      int64_t valid = 0;
      loss[rc] = 0;
      for (uint64_t seed : {4, 5}) {
        Batch b = random_batch(B, T, 50, seed);
        loss[rc] += be->forward(b.in.data(), b.tg.data(), B, T, &valid);
        be->backward(1.0f / 20);
      }
      grads[rc].resize(m.num_params());
      be->download_grads(grads[rc].data());
      bytes[rc] = be->memory_bytes();
      // Newton-Muon's view of the last forward: the dropped inputs come back recomputed.
      for (size_t pi = 0; pi < m.layout().params().size(); ++pi) {
        int64_t rows = 0;
        const float* z = be->matrix_input(pi, &rows);
        if (z) inputs[rc].emplace_back(z, z + rows * m.layout()[pi].cols());
      }
    }
    for (int rc = 1; rc <= 2; ++rc) {
      INFO("recompute " << rc);
      CHECK(loss[rc] == loss[0]);  // exact: the same ops on the same inputs
      CHECK(grads[rc] == grads[0]);
      CHECK(inputs[rc] == inputs[0]);
    }
    // The dropped tensors become one shared scratch: L-1 activations [N, H] saved by 1, and
    // 2(L-1) + 1 ln outputs [N, C] more by 2 (one [N, C] scratch for both), minus its statistics.
    const auto& c = m.config();
    const size_t N = (size_t)B * T, L = c.n_layer, F = sizeof(float);
    CHECK(bytes[0] - bytes[1] == (L - 1) * N * c.intermediate_size * F);
    const size_t stats = (c.is_llama() ? 1 : 2) * N * F;
    CHECK(bytes[1] - bytes[2] == (2 * L - 1) * N * c.n_embd * F - stats);
  }
}

TEST_CASE("recompute outside 0..2 is refused", "[model][recompute]") {
  Model m(tiny("gpt2"));
  BackendOptions o;
  o.recompute = 3;
  CHECK_THROWS_AS(make_backend("cpu", m, 1, 8, o), InputError);
}

TEST_CASE("parameter layout uses Hugging Face names, [out,in] shapes and roles", "[model]") {
  ModelConfig g;  // GPT-2 124M defaults
  g.padded_vocab_size = 50304;
  g.intermediate_size = 3072;
  Model m(g);
  CHECK(m.num_params() == 124475904u);  // llm.c's count for GPT-2 124M with the padded vocabulary
  CHECK(m.layout().find("transformer.h.0.attn.c_attn.weight").shape == std::vector<int64_t>{2304, 768});
  CHECK(m.layout().find("transformer.h.11.mlp.c_proj.weight").shape == std::vector<int64_t>{768, 3072});
  CHECK(m.layout().find("transformer.wte.weight").role == ParamRole::embedding);
  CHECK(m.layout().find("transformer.ln_f.bias").role == ParamRole::bias);
  CHECK(m.layout().find("transformer.h.3.ln_2.weight").role == ParamRole::norm_gain);
  CHECK(m.layout().find("transformer.h.3.mlp.c_fc.weight").role == ParamRole::hidden_matrix);
  CHECK_FALSE(m.layout().contains("lm_head.weight"));  // tied
  CHECK(std::fabs(m.flops_per_token(1024) / 1e9 - 0.803) < 0.001);

  auto l = tiny("llama");
  Model ml(l);
  CHECK(ml.layout().find("model.layers.1.self_attn.k_proj.weight").shape == std::vector<int64_t>{8, 16});
  CHECK(ml.layout().find("model.layers.1.mlp.down_proj.weight").shape == std::vector<int64_t>{16, 24});
  CHECK(ml.layout().find("lm_head.weight").role == ParamRole::lm_head);
  CHECK(ml.layout().find("model.norm.weight").role == ParamRole::norm_gain);
}

TEST_CASE("initialisation is seeded and follows the GPT-2 scheme", "[model]") {
  ModelConfig c = tiny("gpt2");
  c.n_embd = 64;
  c.n_layer = 8;
  c.intermediate_size = 256;
  Model m(c);
  std::vector<float> a(m.num_params()), b(m.num_params()), d(m.num_params());
  m.init_params(a.data(), 5);
  m.init_params(b.data(), 5);
  m.init_params(d.data(), 6);
  REQUIRE(a == b);
  REQUIRE(a != d);
  auto stdev = [&](const std::string& name) {
    const auto& p = m.layout().find(name);
    double s = 0;
    for (size_t j = 0; j < p.numel; ++j) s += (double)a[p.offset + j] * a[p.offset + j];
    return std::sqrt(s / p.numel);
  };
  CHECK(stdev("transformer.h.0.mlp.c_fc.weight") == Approx(0.02).epsilon(0.05));
  CHECK(stdev("transformer.h.0.mlp.c_proj.weight") == Approx(0.02 / std::sqrt(16.0)).epsilon(0.05));
  const auto& ln = m.layout().find("transformer.h.2.ln_1.weight");
  for (size_t j = 0; j < ln.numel; ++j) REQUIRE(a[ln.offset + j] == 1.0f);
  const auto& wte = m.layout().find("transformer.wte.weight");
  for (size_t j = (size_t)c.vocab_size * wte.cols(); j < wte.numel; ++j) REQUIRE(a[wte.offset + j] == 0.0f);
}
