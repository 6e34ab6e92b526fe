// The CUDA backend against the CPU reference backend on small GPT-2 and LLaMA models: loss, logits,
// every parameter gradient, the Backend bookkeeping (norm, scaling, accumulation, copies, matrix
// inputs), determinism, a short training run whose loss curve must follow the CPU's, activation
// recomputation (bitwise equal to keeping everything) and stochastic rounding of the bf16 weights.
//
// Fairness: the CUDA backend computes with a bf16 copy of its fp32 weights, so the CPU reference
// gets those bf16-rounded weights; what remains is bf16 activations and fp32 accumulation order.
// Tolerances (norm-wise relative): loss 1e-2, logits 2e-2, each gradient tensor 5e-2 and the whole
// gradient vector 2.5e-2 (errors compound over layers; a real bug gives O(1) errors).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "model/cuda_backend.h"
#include "gpu_test_util.h"
#include "llmtrain/backend.h"
#include "llmtrain/error.h"
#include "llmtrain/model.h"
#include "llmtrain/rng.h"

using namespace llmtrain;
using namespace gputest;

namespace {

ModelConfig gpt2_cfg(int variant) {
  ModelConfig c;
  c.arch = "gpt2";
  if (variant == 0) {
    c.n_layer = 2;
    c.n_embd = 128;
    c.n_head = 2;  // HS 64
    c.vocab_size = 1000;
    c.padded_vocab_size = 1024;
    c.max_seq_len = 64;
    c.intermediate_size = 512;
  } else {
    c.n_layer = 3;
    c.n_embd = 256;
    c.n_head = 2;  // HS 128
    c.vocab_size = 777;
    c.padded_vocab_size = 896;
    c.max_seq_len = 64;
    c.intermediate_size = 1024;
    c.bias = false;
    c.tie_embeddings = false;
    c.scale_attn_by_inverse_layer_idx = true;
  }
  return c;
}

ModelConfig llama_cfg(int variant) {
  ModelConfig c;
  c.arch = "llama";
  c.bias = false;
  c.tie_embeddings = false;
  c.norm_eps = 1e-6f;
  c.n_layer = 2;
  c.n_embd = 256;
  c.max_seq_len = 64;
  if (variant == 0) {
    c.n_head = 4;  // HS 64, GQA 2 query heads per kv head
    c.n_kv_head = 2;
    c.intermediate_size = 688;
    c.vocab_size = 1000;
    c.padded_vocab_size = 1024;
  } else {
    c.n_head = 2;  // HS 128, no GQA, an intermediate size that is not a multiple of 8
    c.n_kv_head = 2;
    c.intermediate_size = 350;
    c.vocab_size = 500;
    c.padded_vocab_size = 512;
  }
  return c;
}

struct Batch {
  std::vector<int32_t> in, tg;
};

Batch random_batch(int B, int T, int V, uint64_t seed) {
  Rng r(seed);
  Batch b;
  for (int i = 0; i < B * T; ++i) {
    b.in.push_back((int32_t)(r.next_u64() % V));
    b.tg.push_back(i % 11 == 5 ? -1 : (int32_t)(r.next_u64() % V));
  }
  return b;
}

// Seeded init plus noise (no gain exactly 1, no bias exactly 0), rounded to bf16 when asked.
std::vector<float> test_params(const Model& m, uint64_t seed, bool bf16) {
  std::vector<float> p(m.num_params());
  m.init_params(p.data(), seed);
  Rng r(seed + 1);
  for (auto& x : p) {
    x += (float)(0.02 * r.normal());
    if (bf16) x = round_bf16(x);
  }
  // Padded vocabulary rows stay zero, as after init.
  return p;
}

void compare_model(const ModelConfig& cfg, int B, int T, const char* label) {
  INFO("model " << label);
  Model m(cfg);
  auto gpu = make_backend("cuda", m, B, T);
  auto ref = make_cpu_backend(m, B, T);
  REQUIRE(gpu->on_device());
  const auto p = test_params(m, 17, true);
  gpu->upload_params(p.data());
  ref->upload_params(p.data());
  {  // round trip of the fp32 masters
    std::vector<float> back(p.size());
    gpu->download_params(back.data());
    CHECK(back == p);
  }
  const Batch b = random_batch(B, T, cfg.vocab_size, 5);
  int64_t vg = 0, vr = 0;
  const double lg = gpu->forward(b.in.data(), b.tg.data(), B, T, &vg);
  const double lr = ref->forward(b.in.data(), b.tg.data(), B, T, &vr);
  REQUIRE(vg == vr);
  INFO("loss sum cuda " << lg << " cpu " << lr);
  CHECK(std::fabs(lg - lr) <= 1e-2 * std::fabs(lr));

  const int V = cfg.vocab_size;
  for (int bt : {0, T - 1, T + 3, B * T - 1}) {
    const int bb = bt / T, tt = bt % T;
    std::vector<float> a(V), r(V);
    gpu->logits_at(bb, tt, a.data());
    ref->logits_at(bb, tt, r.data());
    INFO("logits at b=" << bb << " t=" << tt);
    check_close("logits", a, r, 2e-2);
  }

  gpu->zero_grad();
  ref->zero_grad();
  const float dloss = 1.0f / (float)vg;
  gpu->backward(dloss);
  ref->backward(dloss);
  CHECK_THROWS(gpu->logits_at(0, 0, std::vector<float>(V).data()));  // overwritten by backward
  std::vector<float> gg(m.num_params()), gr(m.num_params());
  gpu->download_grads(gg.data());
  ref->download_grads(gr.data());
  for (const auto& pi : m.layout().params()) {
    std::vector<float> a(gg.begin() + pi.offset, gg.begin() + pi.offset + pi.numel);
    std::vector<float> r(gr.begin() + pi.offset, gr.begin() + pi.offset + pi.numel);
    check_close("grad " + pi.name, a, r, 5e-2);
  }
  check_close("all gradients", gg, gr, 2.5e-2);

  // grad_sq_norm is the exact double sum of the fp32 gradients (order aside).
  double h = 0;
  for (float x : gg) h += (double)x * x;
  CHECK(std::fabs(gpu->grad_sq_norm() - h) <= 1e-9 * h);

  // Newton-Muon inputs: the same activations as the CPU's, to bf16 accuracy.
  for (size_t i = 0; i < m.layout().size(); ++i) {
    int64_t rg = -1, rr = -1;
    const float* zg = gpu->matrix_input(i, &rg);
    const float* zr = ref->matrix_input(i, &rr);
    INFO("matrix_input of " << m.layout()[i].name);
    REQUIRE((zg == nullptr) == (zr == nullptr));
    if (!zg) continue;
    REQUIRE(rg == rr);
    const size_t n = (size_t)rr * m.layout()[i].cols();
    check_close("matrix input", std::vector<float>(zg, zg + n), std::vector<float>(zr, zr + n), 2e-2);
  }

  // Determinism and accumulation: the same micro-batch again, first after zero_grad (same bits),
  // then without it (the gradients double).
  gpu->zero_grad();
  int64_t v2 = 0;
  const double lg2 = gpu->forward(b.in.data(), b.tg.data(), B, T, &v2);
  gpu->backward(dloss);
  std::vector<float> g2(m.num_params());
  gpu->download_grads(g2.data());
  CHECK(lg2 == lg);
  CHECK(std::memcmp(g2.data(), gg.data(), gg.size() * sizeof(float)) == 0);
  gpu->forward(b.in.data(), b.tg.data(), B, T, &v2);
  gpu->backward(dloss);
  std::vector<float> g3(m.num_params()), twice(gg.size());
  gpu->download_grads(g3.data());
  for (size_t i = 0; i < gg.size(); ++i) twice[i] = 2.0f * gg[i];
  check_close("accumulated gradients (two micro-steps)", g3, twice, 1e-6);

  gpu->scale_grads(0.5f);
  std::vector<float> g4(m.num_params());
  gpu->download_grads(g4.data());
  bool exact = true;
  for (size_t i = 0; i < g4.size(); ++i) exact &= g4[i] == g3[i] * 0.5f;
  CHECK(exact);

  // Smaller batch than allocated, and logits only.
  const int B1 = 1, T1 = T / 2 + 1;
  int64_t v3 = -1;
  CHECK(gpu->forward(b.in.data(), nullptr, B1, T1, &v3) == 0.0);
  CHECK(v3 == 0);
  ref->forward(b.in.data(), nullptr, B1, T1, nullptr);
  std::vector<float> a(V), r(V);
  gpu->logits_at(0, T1 - 1, a.data());
  ref->logits_at(0, T1 - 1, r.data());
  check_close("logits (no targets, smaller batch)", a, r, 2e-2);
  CHECK_THROWS(gpu->backward(dloss));
}

}  // namespace

TEST_CASE("cuda backend matches the cpu backend: GPT-2", "[gpu][model]") {
  GPU_TEST_REQUIRE_DEVICE();
  compare_model(gpt2_cfg(0), 2, 64, "gpt2 (bias, tied head, HS 64)");
  compare_model(gpt2_cfg(1), 2, 48, "gpt2 (no bias, untied, HS 128, scaled attention)");
}

TEST_CASE("cuda backend matches the cpu backend: LLaMA", "[gpu][model]") {
  GPU_TEST_REQUIRE_DEVICE();
  compare_model(llama_cfg(0), 2, 64, "llama (GQA, HS 64)");
  compare_model(llama_cfg(1), 3, 40, "llama (HS 128, intermediate 350)");
}

TEST_CASE("cuda backend rejects what its kernels cannot do", "[gpu][model]") {
  GPU_TEST_REQUIRE_DEVICE();
  ModelConfig c = gpt2_cfg(0);
  c.n_head = 4;  // head size 32
  Model m(c);
  CHECK_THROWS_AS(make_backend("cuda", m, 1, 8), InputError);
  Model ok(gpt2_cfg(0));
  auto be = make_backend("cuda", ok, 1, 8);
  std::vector<int32_t> bad(8, 5);
  bad[3] = 1000;  // == vocab_size
  CHECK_THROWS_AS(be->forward(bad.data(), nullptr, 1, 8, nullptr), InputError);
  CHECK_THROWS(be->forward(bad.data(), nullptr, 2, 8, nullptr));  // B above max_B
}

namespace {

// Learnable data: each row follows next = (7 * prev + 3) % 97 with probability 0.9, else a random
// token of the first 97 ids.
Batch pattern_batch(int B, int T, uint64_t seed) {
  Rng r(seed);
  Batch b;
  for (int row = 0; row < B; ++row) {
    int32_t x = (int32_t)(r.next_u64() % 97);
    std::vector<int32_t> seq{x};
    for (int t = 0; t < T; ++t) {
      x = r.uniform() < 0.9 ? (7 * x + 3) % 97 : (int32_t)(r.next_u64() % 97);
      seq.push_back(x);
    }
    for (int t = 0; t < T; ++t) {
      b.in.push_back(seq[t]);
      b.tg.push_back(seq[t + 1]);
    }
  }
  return b;
}

// The same host-side AdamW loop over any backend (through download/upload), so both backends see
// identical optimizer arithmetic; returns the loss per step.
// Adam on the host (fp32 masters). The weights handed to the backend each step are rounded to
// bf16 when `bf16_weights`: that is what the CUDA backend computes with, so the CPU run with
// rounded weights is the fair reference for it.
std::vector<double> train_curve(Backend& be, const Model& m, int steps, int B, int T, bool bf16_weights) {
  std::vector<float> w(m.num_params()), g(m.num_params()), mo(m.num_params(), 0.0f), ve(m.num_params(), 0.0f);
  std::vector<float> up(m.num_params());
  m.init_params(w.data(), 99);
  const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
  std::vector<double> losses;
  for (int s = 1; s <= steps; ++s) {
    for (size_t i = 0; i < w.size(); ++i) up[i] = bf16_weights ? round_bf16(w[i]) : w[i];
    be.upload_params(up.data());
    const Batch b = pattern_batch(B, T, 1000 + s);
    be.zero_grad();
    int64_t valid = 0;
    const double sum = be.forward(b.in.data(), b.tg.data(), B, T, &valid);
    losses.push_back(sum / (double)valid);
    be.backward(1.0f / (float)valid);
    be.download_grads(g.data());
    const float c1 = 1.0f - std::pow(b1, (float)s), c2 = 1.0f - std::pow(b2, (float)s);
    for (size_t i = 0; i < w.size(); ++i) {
      mo[i] = b1 * mo[i] + (1 - b1) * g[i];
      ve[i] = b2 * ve[i] + (1 - b2) * g[i] * g[i];
      w[i] -= lr * (mo[i] / c1) / (std::sqrt(ve[i] / c2) + eps);
    }
  }
  return losses;
}

}  // namespace

// The learning rate matters. At lr 3e-3 this tiny model learns the pattern in a burst (with a loss
// spike around step 10) whose timing is chaotic: rounding the weights to bf16 alone moves the CPU
// curve by up to 11% there, so no bf16 backend could follow the fp32 curve within a few percent.
// At lr 1e-3 training is smooth, and under the CPU emulator (tests/emu) the CUDA curve matched the
// bf16-weight CPU curve to 2e-4 relative at every one of 30 steps.
TEST_CASE("a short training run on the cuda backend follows the cpu loss curve", "[gpu][model][train]") {
  GPU_TEST_REQUIRE_DEVICE();
  for (const ModelConfig& cfg : {gpt2_cfg(0), llama_cfg(0)}) {
    INFO("arch " << cfg.arch);
    Model m(cfg);
    const int B = 4, T = 64, steps = 40;
    auto gpu = make_backend("cuda", m, B, T);
    auto ref = make_cpu_backend(m, B, T);
    const auto lg = train_curve(*gpu, m, steps, B, T, false);
    const auto lr = train_curve(*ref, m, steps, B, T, true);
    for (int s = 0; s < steps; ++s) {
      INFO("step " << s + 1 << ": cuda " << lg[s] << " cpu " << lr[s]);
      CHECK(std::fabs(lg[s] - lr[s]) <= 1e-2 * lr[s]);
    }
    // Both learn (at least the 97-token unigram, ln 97 = 4.6 from ln V = 6.9).
    CHECK(lr.back() < 0.75 * lr.front());
    CHECK(lg.back() < 0.75 * lg.front());
  }
}

namespace {

struct RunResult {
  double loss = 0;
  std::vector<float> grads;
  std::vector<std::vector<float>> inputs;  // matrix_input of every parameter that has one
  size_t bytes = 0;
};

// Two micro-batches of forward + backward (the second accumulates), then every matrix input.
RunResult run_micro_steps(const Model& m, int B, int T, const BackendOptions& o) {
  auto be = make_backend("cuda", m, B, T, o);
  const auto p = test_params(m, 23, false);
  be->upload_params(p.data());
  be->begin_step(3);
  be->zero_grad();
  RunResult r;
  for (uint64_t seed : {8, 9}) {
    const Batch b = random_batch(B, T, m.config().vocab_size, seed);
    int64_t valid = 0;
    r.loss += be->forward(b.in.data(), b.tg.data(), B, T, &valid);
    be->backward(1.0f / 100.0f);
  }
  r.grads.resize(m.num_params());
  be->download_grads(r.grads.data());
  for (size_t i = 0; i < m.layout().size(); ++i) {
    int64_t rows = 0;
    const float* z = be->matrix_input(i, &rows);
    if (z) r.inputs.emplace_back(z, z + rows * m.layout()[i].cols());
  }
  r.bytes = be->memory_bytes();
  return r;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("cuda recompute 1 and 2 give bitwise the results of recompute 0, with less memory", "[gpu][model][recompute]") {
  GPU_TEST_REQUIRE_DEVICE();
  struct Case {
    ModelConfig cfg;
    int B, T;
  };
  for (const Case& k : {Case{gpt2_cfg(0), 2, 64}, Case{gpt2_cfg(1), 2, 48}, Case{llama_cfg(0), 2, 64},
                        Case{llama_cfg(1), 3, 40}}) {
    INFO("arch " << k.cfg.arch << " C " << k.cfg.n_embd);
    Model m(k.cfg);
    RunResult r[3];
    for (int rc = 0; rc <= 2; ++rc) {
      BackendOptions o;
      o.recompute = rc;
      r[rc] = run_micro_steps(m, k.B, k.T, o);
    }
    for (int rc = 1; rc <= 2; ++rc) {
      INFO("recompute " << rc);
      CHECK(std::memcmp(&r[rc].loss, &r[0].loss, sizeof(double)) == 0);
      CHECK(same_bits(r[rc].grads, r[0].grads));
      REQUIRE(r[rc].inputs.size() == r[0].inputs.size());
      for (size_t i = 0; i < r[0].inputs.size(); ++i) CHECK(same_bits(r[rc].inputs[i], r[0].inputs[i]));
    }
    // bf16 activations: L [N, H] MLP activations become one (1); 2L [N, C] norm outputs become one
    // plus fp32 statistics scratch (mean for LayerNorm, rstd) of N rows (2). The dropped buffers
    // are not allocated at all, so the difference is exact.
    const size_t N = (size_t)k.B * k.T, L = k.cfg.n_layer;
    CHECK(r[0].bytes - r[1].bytes == (L - 1) * N * k.cfg.intermediate_size * 2);
    const size_t stats = (k.cfg.is_llama() ? 1 : 2) * N * sizeof(float);
    CHECK(r[1].bytes - r[2].bytes == (2 * L - 1) * N * k.cfg.n_embd * 2 - stats);
  }
  // The cuBLASLt GELU epilogue cannot be recomputed bit for bit: refused, not silently different.
  Model g(gpt2_cfg(0));
  CudaBackendOptions fused;
  fused.fuse_gelu = true;
  fused.recompute = 1;
  CHECK_THROWS_AS(CudaBackend(g, 1, 8, fused), InputError);
}

TEST_CASE("cuda stochastic rounding of the bf16 weights is keyed by (seed, step)", "[gpu][model][rounding]") {
  GPU_TEST_REQUIRE_DEVICE();
  Model m(gpt2_cfg(0));
  const int B = 2, T = 32;
  const auto p = test_params(m, 41, false);  // not bf16-exact: rounding matters
  const Batch b = random_batch(B, T, m.config().vocab_size, 12);
  auto loss_at = [&](Bf16Rounding rounding, uint64_t seed, int64_t step) {
    BackendOptions o;
    o.bf16_rounding = rounding;
    o.seed = seed;
    auto be = make_backend("cuda", m, B, T, o);
    be->upload_params(p.data());
    be->begin_step(step);
    int64_t valid = 0;
    const double l1 = be->forward(b.in.data(), b.tg.data(), B, T, &valid);
    const double l2 = be->forward(b.in.data(), b.tg.data(), B, T, &valid);  // refresh again: same copy
    CHECK(l1 == l2);
    return l1;
  };
  const double s = loss_at(Bf16Rounding::stochastic, 7, 10);
  CHECK(loss_at(Bf16Rounding::stochastic, 7, 10) == s);  // a fresh backend (a resumed run): same bits
  CHECK(loss_at(Bf16Rounding::stochastic, 7, 11) != s);  // another step: another rounding
  CHECK(loss_at(Bf16Rounding::stochastic, 8, 10) != s);  // another seed
  const double nearest = loss_at(Bf16Rounding::nearest, 7, 10);
  CHECK(loss_at(Bf16Rounding::nearest, 7, 11) == nearest);  // nearest ignores step and seed
  CHECK(s != nearest);
  // Both roundings keep the loss within bf16 noise of each other.
  CHECK(std::fabs(s - nearest) <= 1e-2 * std::fabs(nearest));

  // With stochastic rounding the backend's refresh is the only writer of the bf16 copy.
  CudaBackendOptions so;
  so.bf16_rounding = Bf16Rounding::stochastic;
  CudaBackend sb(m, B, T, so);
  CHECK_THROWS_AS(sb.bf16_params(), RuntimeError);
  CudaBackend nb(m, B, T);
  CHECK(nb.bf16_params() != nullptr);
  CHECK(nb.peak_flops() >= 0.0);
  CHECK(nb.memory_bytes() == nb.device_bytes());
}

// The overlapped data-parallel reduction relies on the backend's reports (Backend::set_grad_ready):
// head, blocks L-1..0, embeddings, contiguous and descending, and the reporting must not change
// the gradients. The CUDA backend reports a range once its kernels are queued; this checks the
// ranges and that a device copy of the reported range taken in the hook (queued on the backend's
// stream, like an NCCL bucket) sees the final gradients.
TEST_CASE("cuda backend reports gradient ranges for the overlapped all-reduce", "[gpu][model][reducer]") {
  GPU_TEST_REQUIRE_DEVICE();
  for (const ModelConfig& cfg : {gpt2_cfg(0), llama_cfg(0)}) {
    INFO("arch " << cfg.arch);
    Model m(cfg);
    const int B = 2, T = 64, L = cfg.n_layer;
    auto gpu = make_backend("cuda", m, B, T);
    const auto p = test_params(m, 23, true);
    gpu->upload_params(p.data());
    const Batch b = random_batch(B, T, cfg.vocab_size, 9);
    int64_t valid = 0;
    auto run = [&] {
      gpu->zero_grad();
      gpu->forward(b.in.data(), b.tg.data(), B, T, &valid);
      gpu->backward(1.0f / (float)valid);
    };
    run();
    std::vector<float> ref(m.num_params());
    gpu->download_grads(ref.data());

    std::vector<std::pair<size_t, size_t>> reports;
    auto snapshot = gpu->alloc_floats(m.num_params());
    gpu->set_grad_ready([&](size_t o, size_t n) {
      reports.push_back({o, n});
      gpu->copy_floats(snapshot.get() + o, gpu->grads() + o, n);
    });
    run();
    gpu->set_grad_ready(nullptr);
    REQUIRE(reports.size() == (size_t)L + 2);
    CHECK(reports.front() == std::make_pair(m.block_begin(L), m.num_params() - m.block_begin(L)));
    for (int l = L - 1; l >= 0; --l)
      CHECK(reports[(size_t)(L - l)] == std::make_pair(m.block_begin(l), m.block_begin(l + 1) - m.block_begin(l)));
    CHECK(reports.back() == std::make_pair((size_t)0, m.block_begin(0)));
    std::vector<float> got(m.num_params()), snap(m.num_params());
    gpu->download_grads(got.data());
    CHECK(std::memcmp(got.data(), ref.data(), got.size() * sizeof(float)) == 0);
    REQUIRE(cudaMemcpy(snap.data(), snapshot.get(), snap.size() * sizeof(float), cudaMemcpyDeviceToHost) ==
            cudaSuccess);
    CHECK(std::memcmp(snap.data(), ref.data(), snap.size() * sizeof(float)) == 0);
  }
}
