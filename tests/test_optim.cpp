// Optimizer layer tests: orthogonalization kernels against SVD, each optimizer's defining
// property, AdamW against a hand-computed example, schedules, config validation, group routing,
// and bit-exact state round trips (the basis of exact resume).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "llmtrain/error.h"
#include "llmtrain/optim.h"
#include "llmtrain/rng.h"
#include "cpu/linalg.h"
#include "cpu/optim.h"
#include "optim/optimizers.h"

using namespace llmtrain;
using nlohmann::json;

namespace {

std::vector<float> randn(Rng& r, size_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = scale * (float)r.normal();
  return v;
}

linalg::Svd svd_of(const std::vector<float>& A, int64_t m, int64_t n) {
  std::vector<double> d(A.begin(), A.end());
  return linalg::svd_jacobi(d.data(), m, n);
}

// U V^T from an SVD, keeping the first `rank` singular triplets (all when rank < 0).
std::vector<double> polar_from_svd(const linalg::Svd& s, int64_t rank = -1) {
  const int64_t r = rank < 0 ? s.r : rank;
  std::vector<double> P((size_t)(s.m * s.n), 0.0);
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      double v = 0;
      for (int64_t k = 0; k < r; ++k) v += s.U[i * s.r + k] * s.V[j * s.r + k];
      P[i * s.n + j] = v;
    }
  return P;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i) e = std::max(e, std::fabs((double)a[i] - b[i]));
  return e;
}

double rel_fro_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

// A small model: named tensors with weights and gradients, handed to optimizers as ParamRefs.
struct Model {
  std::vector<ParamInfo> infos;
  std::vector<std::vector<float>> w, g;
  void add(const std::string& name, ParamRole role, std::vector<int64_t> shape) {
    ParamInfo p;
    p.name = name;
    p.role = role;
    p.shape = shape;
    p.numel = 1;
    for (int64_t d : shape) p.numel *= (size_t)d;
    infos.push_back(p);
    w.emplace_back(p.numel, 0.0f);
    g.emplace_back(p.numel, 0.0f);
  }
  std::vector<ParamRef> refs() {
    std::vector<ParamRef> r;
    for (size_t i = 0; i < infos.size(); ++i) r.push_back({&infos[i], w[i].data(), g[i].data()});
    return r;
  }
  void fill_weights(Rng& r, float scale) {
    for (auto& t : w)
      for (auto& x : t) x = scale * (float)r.normal();
  }
  void fill_grads(Rng& r, float scale) {
    for (auto& t : g)
      for (auto& x : t) x = scale * (float)r.normal();
  }
};

GroupConfig group(const std::string& type, float lr, float wd, json options = json::object()) {
  GroupConfig c;
  c.name = "g";
  c.type = type;
  c.lr = lr;
  c.weight_decay = wd;
  c.options = std::move(options);
  return c;
}

std::string input_error(const json& optimizer) {
  try {
    parse_optimizer_config(optimizer, Schedule{}, "cfg.json");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("jordan5 Newton-Schulz puts singular values in [0.6, 1.2]", "[optim]") {
  Rng r(11);
  const int64_t shapes[][2] = {{64, 96}, {96, 64}, {32, 128}, {128, 48}};
  for (const auto& sh : shapes) {
    const int64_t m = sh[0], n = sh[1];
    auto G = randn(r, (size_t)(m * n));
    std::vector<float> O((size_t)(m * n));
    newton_schulz(G.data(), m, n, ns_coefficients("jordan5"), 0, O.data());
    auto s = svd_of(O, m, n);
    INFO(m << "x" << n << ": singular values in [" << s.S.back() << ", " << s.S.front() << "]");
    CHECK(s.S.back() >= 0.6);
    CHECK(s.S.front() <= 1.2);
    // the input's singular values spread wider than that: NS really flattened them
    auto sg = svd_of(G, m, n);
    CHECK(sg.S.front() / sg.S.back() > 2.5);
  }
}

TEST_CASE("polar_express8 matches the SVD polar factor", "[optim]") {
  Rng r(12);
  const int64_t shapes[][2] = {{64, 96}, {96, 64}, {40, 120}};
  for (const auto& sh : shapes) {
    const int64_t m = sh[0], n = sh[1];
    auto G = randn(r, (size_t)(m * n));
    std::vector<float> O((size_t)(m * n));
    newton_schulz(G.data(), m, n, ns_coefficients("polar_express8"), 0, O.data());
    auto P = polar_from_svd(svd_of(G, m, n));
    INFO(m << "x" << n);
    CHECK(max_abs_diff(O, P) < 2e-2);
    CHECK(rel_fro_diff(O, P) < 2e-2);
  }
  // jordan5 is deliberately inexact: it does not pass the same bar
  auto G = randn(r, 64 * 96);
  std::vector<float> O(64 * 96);
  newton_schulz(G.data(), 64, 96, ns_coefficients("jordan5"), 0, O.data());
  CHECK(rel_fro_diff(O, polar_from_svd(svd_of(G, 64, 96))) > 2e-2);
}

TEST_CASE("other coefficient sets and QDWH", "[optim]") {
  Rng r(13);
  auto G = randn(r, 48 * 80);
  auto P = polar_from_svd(svd_of(G, 48, 80));
  std::vector<float> O(48 * 80);
  newton_schulz(G.data(), 48, 80, ns_coefficients("you6"), 0, O.data());
  auto s = svd_of(O, 48, 80);
  CHECK(s.S.back() > 0.7);
  CHECK(s.S.front() < 1.1);
  newton_schulz(G.data(), 48, 80, ns_coefficients("polar_express5"), 0, O.data());
  s = svd_of(O, 48, 80);
  CHECK(s.S.back() > 0.7);
  CHECK(s.S.front() < 1.2);
  CHECK_THROWS_AS(ns_coefficients("jordan7"), RuntimeError);
  // the published numbers: Polar Express's first step with the 1.01 safety factor, its last
  // (limit) step unscaled, its 1.01 pre-normalization; Jordan's and You's first steps
  const auto& pe = ns_coefficients("polar_express8");
  REQUIRE(pe.steps.size() == 8);
  CHECK(pe.steps[0][0] == Approx(8.28721201814563 / 1.01));
  CHECK(pe.steps[0][1] == Approx(-23.595886519098837 / std::pow(1.01, 3)));
  CHECK(pe.steps[0][2] == Approx(17.300387312530933 / std::pow(1.01, 5)));
  CHECK(pe.steps[7][0] == 1.875);
  CHECK(pe.norm_factor == 1.01);
  CHECK(ns_coefficients("polar_express5").default_steps == 5);
  CHECK(ns_coefficients("jordan5").steps[0][1] == -4.7750);
  CHECK(ns_coefficients("you6").steps[0][0] == 3955.0 / 1024);
  // QDWH: the exact polar factor to fp32 precision, for wide and tall inputs
  polar_qdwh(G.data(), 48, 80, O.data());
  CHECK(max_abs_diff(O, P) < 1e-5);
  std::vector<float> Gt(80 * 48), Ot(80 * 48);
  linalg::transpose(G.data(), Gt.data(), 48, 80);
  polar_qdwh(Gt.data(), 80, 48, Ot.data());
  std::vector<float> OtT(48 * 80);
  linalg::transpose(Ot.data(), OtT.data(), 80, 48);
  CHECK(max_abs_diff(OtT, P) < 1e-5);
}

TEST_CASE("GEMM is exact on integers and independent of blocking", "[optim]") {
  // Sizes straddle the block edges (MC 48, KC 256, NC 512) and the register tile.
  const int64_t m = 97, k = 300, n = 530;
  Rng r(14);
  std::vector<double> A((size_t)(m * k)), B((size_t)(k * n)), C((size_t)(m * n));
  for (auto& x : A) x = (double)(int)(r.uniform() * 7) - 3;
  for (auto& x : B) x = (double)(int)(r.uniform() * 7) - 3;
  linalg::matmul(A.data(), B.data(), C.data(), m, k, n);
  double err = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += A[i * k + p] * B[p * n + j];
      err = std::max(err, std::fabs(s - C[i * n + j]));
    }
  CHECK(err == 0.0);
}

TEST_CASE("RMNP rows have unit norm and ||D||_F^2 = rows", "[optim]") {
  Rng r(21);
  for (auto shape : {std::vector<int64_t>{48, 64}, std::vector<int64_t>{96, 32}}) {
    const int64_t rows = shape[0], cols = shape[1];
    auto U = randn(r, (size_t)(rows * cols));
    std::vector<float> D(U.size());
    normalize_rows(U.data(), rows, cols, 1e-12f, D.data());
    double fro = 0;
    for (int64_t i = 0; i < rows; ++i) {
      double s = 0;
      for (int64_t j = 0; j < cols; ++j) s += (double)D[i * cols + j] * D[i * cols + j];
      CHECK(s == Approx(1.0).epsilon(1e-5));
      fro += s;
    }
    CHECK(fro == Approx((double)rows).epsilon(1e-5));

    // Through the optimizer: W1 = W0 - lr s D with s = max(1, sqrt(out/in)).
    Model md;
    md.add("h.0.mlp.c_fc.weight", ParamRole::hidden_matrix, shape);
    md.fill_weights(r, 0.02f);
    md.fill_grads(r, 1.0f);
    auto w0 = md.w[0];
    auto opt = make_optimizer(group("rmnp", 0.1f, 0.0f), md.refs(), 1);
    opt->step(md.refs(), 0.1f, 1);
    const double s = std::max(1.0, std::sqrt((double)rows / (double)cols));
    double fro2 = 0;
    for (int64_t i = 0; i < rows; ++i) {
      double rn = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const double d = ((double)w0[i * cols + j] - md.w[0][i * cols + j]) / (0.1 * s);
        rn += d * d;
      }
      CHECK(rn == Approx(1.0).epsilon(1e-3));
      fro2 += rn;
    }
    CHECK(fro2 == Approx((double)rows).epsilon(1e-3));
  }
  // a zero row stays zero (eps guards the division)
  std::vector<float> Z(2 * 3, 0.0f), DZ(6);
  Z[3] = 3;
  Z[4] = 4;
  normalize_rows(Z.data(), 2, 3, 1e-12f, DZ.data());
  CHECK(DZ[0] == 0.0f);
  CHECK(DZ[3] == Approx(0.6f));
  CHECK(DZ[4] == Approx(0.8f));
}

TEST_CASE("RMNP: EMA and sum momentum give the same normalized update", "[optim]") {
  Rng r(22);
  for (bool nesterov : {true, false}) {
    Model a, b;
    a.add("h.0.attn.c_proj.weight", ParamRole::hidden_matrix, {40, 56});
    b.add("h.0.attn.c_proj.weight", ParamRole::hidden_matrix, {40, 56});
    a.fill_weights(r, 0.02f);
    b.w = a.w;
    auto oa = make_optimizer(group("rmnp", 0.01f, 0.1f, {{"momentum_form", "ema"}, {"nesterov", nesterov}}), a.refs(), 1);
    auto ob = make_optimizer(group("rmnp", 0.01f, 0.1f, {{"momentum_form", "sum"}, {"nesterov", nesterov}}), b.refs(), 1);
    for (int t = 1; t <= 5; ++t) {
      a.fill_grads(r, 1.0f);
      b.g = a.g;
      oa->step(a.refs(), 0.01f, t);
      ob->step(b.refs(), 0.01f, t);
    }
    double e = 0, moved = 0;
    for (size_t i = 0; i < a.w[0].size(); ++i) {
      e = std::max(e, (double)std::fabs(a.w[0][i] - b.w[0][i]));
      moved = std::max(moved, (double)std::fabs(a.w[0][i]));
    }
    CHECK(e < 1e-6);
    CHECK(moved > 1e-3);
    // the momentum buffers differ by the factor (1 - beta): the forms really are different
    auto sa = oa->state(), sb = ob->state();
    CHECK(sa[0].data[0] == Approx(0.05 * sb[0].data[0]).epsilon(1e-4));
  }
}

TEST_CASE("low-rank Muon is msgn(Q Q^T X) for the sampled Q, of rank k", "[optim]") {
  const int64_t m = 64, n = 96, k = 8;
  const uint64_t seed = 77;
  Rng r(31);
  Model md;
  md.add("h.0.mlp.c_proj.weight", ParamRole::hidden_matrix, {m, n});
  md.fill_grads(r, 1.0f);
  json opts = {{"rank", k}, {"full_threshold", 0}, {"momentum", 0.0}, {"coefficients", "polar_express8"}};
  auto opt = make_optimizer(group("lowrank_muon", 1.0f, 0.0f, opts), md.refs(), seed);
  opt->step(md.refs(), 1.0f, 1);  // W0 = 0, momentum 0, lr 1, s = 1: W1 = -O
  std::vector<float> O(m * n);
  for (size_t i = 0; i < O.size(); ++i) O[i] = -md.w[0][i];

  // the same columns, drawn from the optimizer's seed
  Rng rs(seed);
  auto idx = sample_columns(rs, n, k);
  REQUIRE(idx.size() == (size_t)k);
  std::vector<float> Oref(m * n), Q(m * k);
  lowrank_orthogonalize(md.g[0].data(), m, n, idx, ns_coefficients("polar_express8"), 0, Oref.data(), Q.data());
  CHECK(std::memcmp(O.data(), Oref.data(), sizeof(float) * O.size()) == 0);

  // Q spans the sampled columns: Q Q^T X[:, idx] = X[:, idx]
  std::vector<float> Qt(k * m), QQt(m * m), PX(m * n);
  linalg::transpose(Q.data(), Qt.data(), m, k);
  linalg::matmul(Q.data(), Qt.data(), QQt.data(), m, k, m);
  linalg::matmul(QQt.data(), md.g[0].data(), PX.data(), m, m, n);
  for (int64_t c : idx)
    for (int64_t i = 0; i < m; ++i) CHECK(PX[i * n + c] == Approx(md.g[0][i * n + c]).margin(1e-4));

  // O = msgn(Q Q^T X): compare with the SVD of the projected matrix, top k triplets
  auto sp = svd_of(PX, m, n);
  CHECK(sp.S[k] < 1e-4 * sp.S[0]);  // the projection has rank k
  auto P = polar_from_svd(sp, k);
  CHECK(max_abs_diff(O, P) < 2e-2);
  // and O itself has rank k with unit singular values
  auto so = svd_of(O, m, n);
  CHECK(so.S[k - 1] > 0.9);
  CHECK(so.S[0] < 1.1);
  CHECK(so.S[k] < 1e-4);

  // the next step draws fresh columns
  auto idx2 = sample_columns(rs, n, k);
  CHECK(idx2 != idx);
}

TEST_CASE("PolarGrad: nu is the nuclear norm when the polar factor is exact", "[optim]") {
  const int64_t m = 48, n = 72;
  Rng r(41);
  Model md;
  md.add("h.0.attn.c_proj.weight", ParamRole::hidden_matrix, {m, n});
  md.fill_grads(r, 0.1f);
  auto opt = make_optimizer(group("polargrad", 1.0f, 0.0f, {{"momentum", 0.0}, {"polar", "qdwh"}}), md.refs(), 1);
  opt->step(md.refs(), 1.0f, 1);  // W0 = 0, M = G: W1 = -nu polar(G)
  auto s = svd_of(md.g[0], m, n);
  double nuclear = 0;
  for (double x : s.S) nuclear += x;
  // ||W1||_F = nu ||P||_F = nu sqrt(min(m, n)) for a semi-orthogonal P
  const double nu = linalg::frobenius_norm(md.w[0].data(), m * n) / std::sqrt((double)std::min(m, n));
  CHECK(nu == Approx(nuclear).epsilon(1e-5));
  auto P = polar_from_svd(s);
  std::vector<float> Pw(m * n);
  for (size_t i = 0; i < Pw.size(); ++i) Pw[i] = (float)(-md.w[0][i] / nuclear);
  CHECK(max_abs_diff(Pw, P) < 1e-5);

  // with an inexact factor (jordan5) <M, U> is no longer the nuclear norm
  Model md2 = md;
  std::fill(md2.w[0].begin(), md2.w[0].end(), 0.0f);
  auto opt2 = make_optimizer(
      group("polargrad", 1.0f, 0.0f, {{"momentum", 0.0}, {"polar", "ns"}, {"coefficients", "jordan5"}}), md2.refs(), 1);
  opt2->step(md2.refs(), 1.0f, 1);
  const double nu2 = linalg::frobenius_norm(md2.w[0].data(), m * n) / std::sqrt((double)std::min(m, n));
  CHECK(std::fabs(nu2 / nuclear - 1.0) > 1e-3);
}

TEST_CASE("Newton-Muon with K = I equals Muon; otherwise it preconditions", "[optim]") {
  const int64_t out = 48, in = 64;
  Rng r(51);
  Model a, b;
  a.add("h.0.mlp.c_fc.weight", ParamRole::hidden_matrix, {out, in});
  b.add("h.0.mlp.c_fc.weight", ParamRole::hidden_matrix, {out, in});
  a.fill_weights(r, 0.02f);
  b.w = a.w;
  auto muon = make_optimizer(group("muon", 0.02f, 0.1f, {{"momentum", 0.9}}), a.refs(), 1);
  auto newton = make_optimizer(
      group("newton_muon", 0.02f, 0.1f, {{"momentum", 0.9}, {"damping", 0.0}, {"refresh_every", 1000}}), b.refs(), 1);
  CHECK(newton->wants_inputs(1));
  CHECK_FALSE(newton->wants_inputs(2));
  CHECK(newton->wants_inputs(1001));
  CHECK_FALSE(muon->wants_inputs(1));
  // Z = 8 I (N = 64 rows): Z^T Z / N = I exactly, and with no damping K^{-1} = I exactly.
  std::vector<float> Z(in * in, 0.0f);
  for (int64_t i = 0; i < in; ++i) Z[i * in + i] = 8.0f;
  newton->observe_inputs(b.infos[0], Z.data(), in, in);
  for (int t = 1; t <= 3; ++t) {
    a.fill_grads(r, 1.0f);
    b.g = a.g;
    muon->step(a.refs(), 0.02f, t);
    newton->step(b.refs(), 0.02f, t);
  }
  CHECK(std::memcmp(a.w[0].data(), b.w[0].data(), sizeof(float) * a.w[0].size()) == 0);

  // Random inputs, damping 0.2: the gradient the momentum sees is G (K + 0.2 tr(K)/n I)^{-1}.
  Model c;
  c.add("h.0.mlp.c_fc.weight", ParamRole::hidden_matrix, {out, in});
  auto nm = make_optimizer(group("newton_muon", 0.02f, 0.0f, {{"momentum", 0.5}, {"nesterov", false}}), c.refs(), 1);
  const int64_t N = 200;
  auto Zr = randn(r, (size_t)(N * in));
  for (int64_t i = 0; i < N; ++i) Zr[i * in + 3] *= 5.0f;  // an anisotropic input
  nm->observe_inputs(c.infos[0], Zr.data(), N, in);
  c.fill_grads(r, 1.0f);
  nm->step(c.refs(), 0.02f, 1);
  std::vector<double> K((size_t)(in * in), 0.0);
  for (int64_t i = 0; i < in; ++i)
    for (int64_t j = 0; j < in; ++j) {
      double s = 0;
      for (int64_t p = 0; p < N; ++p) s += (double)Zr[p * in + i] * Zr[p * in + j];
      K[i * in + j] = s / N;
    }
  double tr = 0;
  for (int64_t i = 0; i < in; ++i) tr += K[i * in + i];
  for (int64_t i = 0; i < in; ++i) K[i * in + i] += 0.2 * tr / in;
  auto st = nm->state();
  REQUIRE(st.size() == 2);
  CHECK(st[0].name == "m/h.0.mlp.c_fc.weight");
  CHECK(st[1].name == "K/h.0.mlp.c_fc.weight");
  CHECK(st[1].shape == std::vector<int64_t>{in, in});
  // M = (1 - 0.5) G': check G' (K + damping) = G
  double err = 0, gmax = 0;
  for (int64_t i = 0; i < out; ++i)
    for (int64_t j = 0; j < in; ++j) {
      double s = 0;
      for (int64_t p = 0; p < in; ++p) s += (double)st[0].data[i * in + p] / 0.5 * K[p * in + j];
      err = std::max(err, std::fabs(s - c.g[0][i * in + j]));
      gmax = std::max(gmax, (double)std::fabs(c.g[0][i * in + j]));
    }
  CHECK(err < 1e-3 * gmax);
}

TEST_CASE("Muon update: momentum, Newton-Schulz, scale and split QKV", "[optim]") {
  Rng r(55);
  const int64_t C = 16;
  for (std::string scale : {"max1", "moonlight"})
    for (bool split : {true, false}) {
      INFO(scale << " split " << split);
      Model md;
      md.add("h.0.attn.c_attn.weight", ParamRole::hidden_matrix, {3 * C, C});
      md.add("h.0.mlp.c_proj.weight", ParamRole::hidden_matrix, {C, 40});
      md.fill_weights(r, 0.05f);
      md.fill_grads(r, 1.0f);
      const auto w0 = md.w;
      const float lr = 0.05f, wd = 0.1f, b = 0.9f;
      auto opt = make_optimizer(group("muon", lr, wd, {{"momentum", b}, {"scale", scale}, {"split_qkv", split}}),
                                md.refs(), 1);
      opt->step(md.refs(), lr, 1);
      for (size_t t = 0; t < 2; ++t) {
        const int64_t rows = md.infos[t].rows(), cols = md.infos[t].cols();
        // first step: M = (1 - b) G, Nesterov U = (1 - b) G + b M
        std::vector<float> U(rows * cols), O(rows * cols);
        for (size_t i = 0; i < U.size(); ++i) U[i] = (1 - b) * md.g[t][i] + b * ((1 - b) * md.g[t][i]);
        const int nb = (t == 0 && split) ? 3 : 1;
        const int64_t br = rows / nb;
        for (int k = 0; k < nb; ++k)
          newton_schulz(U.data() + k * br * cols, br, cols, ns_coefficients("jordan5"), 5, O.data() + k * br * cols);
        const double s = scale == "max1" ? std::max(1.0, std::sqrt((double)br / cols))
                                         : 0.2 * std::sqrt((double)std::max(br, cols));
        for (size_t i = 0; i < U.size(); ++i)
          CHECK(md.w[t][i] == Approx(w0[t][i] * (1 - lr * wd) - lr * s * O[i]).margin(1e-6));
      }
    }
}

TEST_CASE("Newton-Muon: EWMA of K and block-diagonal preconditioning", "[optim]") {
  const int64_t out = 24, in = 64, bsz = 32, N = 100;
  Rng r(57);
  Model md;
  md.add("h.0.mlp.c_proj.weight", ParamRole::hidden_matrix, {out, in});
  auto opt = make_optimizer(group("newton_muon", 0.01f, 0.0f,
                                  {{"momentum", 0.5}, {"nesterov", false}, {"block", bsz}, {"beta2", 0.8},
                                   {"damping", 0.1}, {"refresh_every", 1}}),
                            md.refs(), 1);
  auto second_moment = [&](const std::vector<float>& Z) {
    std::vector<double> K((size_t)(in * in), 0.0);
    for (int64_t i = 0; i < in; ++i)
      for (int64_t j = 0; j < in; ++j) {
        double s = 0;
        for (int64_t p = 0; p < N; ++p) s += (double)Z[p * in + i] * Z[p * in + j];
        K[i * in + j] = s / N;
      }
    return K;
  };
  auto Z1 = randn(r, (size_t)(N * in)), Z2 = randn(r, (size_t)(N * in), 2.0f);
  opt->observe_inputs(md.infos[0], Z1.data(), N, in);
  md.fill_grads(r, 1.0f);
  opt->step(md.refs(), 0.01f, 1);
  auto st = opt->state();
  REQUIRE(st.size() == 2);
  CHECK(st[1].shape == std::vector<int64_t>{2, bsz, bsz});
  // M = 0.5 G K_bd^{-1} with K_bd the damped diagonal blocks of K = C1: check M / 0.5 K_bd = G
  auto K1 = second_moment(Z1);
  double err = 0;
  for (int64_t blk = 0; blk < 2; ++blk) {
    double tr = 0;
    for (int64_t d = 0; d < bsz; ++d) tr += K1[(blk * bsz + d) * in + blk * bsz + d];
    for (int64_t i = 0; i < out; ++i)
      for (int64_t j = 0; j < bsz; ++j) {
        double s = 0;
        for (int64_t p = 0; p < bsz; ++p) {
          double k = K1[(blk * bsz + p) * in + blk * bsz + j] + (p == j ? 0.1 * tr / bsz : 0.0);
          s += (double)st[0].data[i * in + blk * bsz + p] / 0.5 * k;
        }
        err = std::max(err, std::fabs(s - md.g[0][i * in + blk * bsz + j]));
      }
  }
  CHECK(err < 1e-3);
  // second observation: K = 0.8 C1 + 0.2 C2, block by block ([2, 32, 32] layout)
  opt->observe_inputs(md.infos[0], Z2.data(), N, in);
  auto K2 = second_moment(Z2);
  st = opt->state();
  for (int64_t blk = 0; blk < 2; ++blk)
    for (int64_t i = 0; i < bsz; ++i)
      for (int64_t j = 0; j < bsz; ++j) {
        const int64_t e = (blk * bsz + i) * in + blk * bsz + j;
        CHECK(st[1].data[(blk * bsz + i) * bsz + j] == Approx(0.8 * K1[e] + 0.2 * K2[e]).margin(1e-5));
      }
  CHECK(opt->scalar_state()["observed"] == json::array({2}));
  CHECK_THROWS_AS(opt->observe_inputs(md.infos[0], Z2.data(), N / 2, in / 2), RuntimeError);
  CHECK_THROWS_AS(make_optimizer(group("newton_muon", 0.01f, 0.0f, {{"block", 24}}), md.refs(), 1), InputError);
}

TEST_CASE("AdamW matches a hand-computed two-step example", "[optim]") {
  // lr 0.1, wd 0.1, betas (0.9, 0.95), eps 1e-8 (negligible here).
  // Matrix w = [1, -2] (decayed), grads g1 = [0.5, -1], g2 = [-0.25, 0.5]:
  //  step 1: m = 0.1 g1, v = 0.05 g1^2, so m/bc1 = g1, v/bc2 = g1^2 and u = sign(g1):
  //          w = 0.99 w - 0.1 sign(g1) = [0.99 - 0.1, -1.98 + 0.1] = [0.89, -1.88]
  //  step 2: m = 0.9 * 0.1 g1 + 0.1 g2 = [0.02, -0.04]
  //          v = 0.95 * 0.05 g1^2 + 0.05 g2^2 = [0.011875 + 0.003125, 0.0475 + 0.0125] = [0.015, 0.06]
  //          bc1 = 1 - 0.81 = 0.19, bc2 = 1 - 0.9025 = 0.0975
  //          u1 = (0.02/0.19) / sqrt(0.015/0.0975) = 0.105263158 / 0.392232270 = 0.268369448
  //          u2 = (-0.04/0.19) / sqrt(0.06/0.0975) = -u1
  //          w = 0.99 [0.89, -1.88] - 0.1 [u1, -u1] = [0.8811 - 0.0268369, -1.8612 + 0.0268369]
  //            = [0.8542631, -1.8343631]
  // Norm gain b = [0.5] (never decayed), g = 0.2 both steps: u = 1 both steps: 0.4, then 0.3.
  Model md;
  md.add("h.0.attn.c_attn.weight", ParamRole::hidden_matrix, {1, 2});
  md.add("h.0.ln_1.weight", ParamRole::norm_gain, {1});
  md.w[0] = {1.0f, -2.0f};
  md.w[1] = {0.5f};
  auto opt = make_optimizer(group("adamw", 0.1f, 0.1f), md.refs(), 1);
  md.g[0] = {0.5f, -1.0f};
  md.g[1] = {0.2f};
  opt->step(md.refs(), 0.1f, 1);
  CHECK(md.w[0][0] == Approx(0.89).epsilon(1e-6));
  CHECK(md.w[0][1] == Approx(-1.88).epsilon(1e-6));
  CHECK(md.w[1][0] == Approx(0.4).epsilon(1e-6));
  md.g[0] = {-0.25f, 0.5f};
  opt->step(md.refs(), 0.1f, 2);
  CHECK(md.w[0][0] == Approx(0.8542631).epsilon(1e-6));
  CHECK(md.w[0][1] == Approx(-1.8343631).epsilon(1e-6));
  CHECK(md.w[1][0] == Approx(0.3).epsilon(1e-6));
  auto st = opt->state();
  REQUIRE(st.size() == 4);
  CHECK(st[0].name == "m/h.0.attn.c_attn.weight");
  CHECK(st[2].name == "v/h.0.attn.c_attn.weight");
  CHECK(st[0].data[0] == Approx(0.02f));
  CHECK(st[2].data[1] == Approx(0.06f));

  // eps = 0.01 on the gain (g = 0.2, no decay), where the two eps modes differ:
  //  standard:    u = (m/bc1) / (sqrt(v/bc2) + eps) = 0.2 / 0.21 = 0.952381 both steps
  //               w = 0.5 - 0.0952381 = 0.4047619, then 0.3095238
  //  uncorrected: step 1: lr sqrt(bc2)/bc1 = 0.1 sqrt(0.05)/0.1 = 0.2236068,
  //               u = m / (sqrt(v) + eps) = 0.02 / (0.0447214 + 0.01) = 0.3654894,
  //               w = 0.5 - 0.0817256 = 0.4182744
  //               step 2: m = 0.038, v = 0.0039, lr sqrt(0.0975)/0.19 = 0.1643422,
  //               u = 0.038 / (0.0624500 + 0.01) = 0.5245000, w = 0.4182744 - 0.0861974 = 0.3320770
  for (std::string mode : {"standard", "uncorrected"}) {
    Model b;
    b.add("ln_f.weight", ParamRole::norm_gain, {1});
    b.w[0] = {0.5f};
    b.g[0] = {0.2f};
    auto o = make_optimizer(group("adamw", 0.1f, 0.1f, {{"eps", 0.01}, {"eps_mode", mode}}), b.refs(), 1);
    o->step(b.refs(), 0.1f, 1);
    CHECK(b.w[0][0] == Approx(mode == "standard" ? 0.4047619 : 0.4182744).epsilon(1e-6));
    o->step(b.refs(), 0.1f, 2);
    CHECK(b.w[0][0] == Approx(mode == "standard" ? 0.3095238 : 0.3320770).epsilon(1e-6));
  }
}

TEST_CASE("schedules at warmup, peak and end", "[optim]") {
  const int64_t T = 100;
  Schedule s;  // cosine, warmup 10% = 10 steps, min 0.1
  CHECK(schedule_lr(s, 1.0f, 0, T) == Approx(0.1));
  CHECK(schedule_lr(s, 1.0f, 4, T) == Approx(0.5));
  CHECK(schedule_lr(s, 1.0f, 9, T) == Approx(1.0));   // peak on the last warmup step
  CHECK(schedule_lr(s, 1.0f, 10, T) == Approx(1.0));  // cosine starts at the top
  CHECK(schedule_lr(s, 2.0f, 10 + 89 / 2, T) == Approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 44.0 / 89.0)))));
  CHECK(schedule_lr(s, 1.0f, 99, T) == Approx(0.1));
  CHECK(schedule_lr(s, 1.0f, 500, T) == Approx(0.1));  // past the end: stays at the floor
  s.type = "constant";
  CHECK(schedule_lr(s, 1.0f, 0, T) == Approx(0.1));
  CHECK(schedule_lr(s, 1.0f, 9, T) == Approx(1.0));
  CHECK(schedule_lr(s, 1.0f, 99, T) == Approx(1.0));
  s.type = "linear";
  CHECK(schedule_lr(s, 1.0f, 9, T) == Approx(1.0));
  CHECK(schedule_lr(s, 1.0f, 10, T) == Approx(1.0));
  CHECK(schedule_lr(s, 1.0f, 99, T) == Approx(0.1));
  CHECK(schedule_lr(s, 1.0f, 10 + 89 / 2, T) == Approx(1.0 - 0.9 * 44.0 / 89.0));
  s.type = "wsd";  // decay over the last 20 steps (80..99)
  CHECK(schedule_lr(s, 1.0f, 9, T) == Approx(1.0));
  CHECK(schedule_lr(s, 1.0f, 79, T) == Approx(1.0));
  CHECK(schedule_lr(s, 1.0f, 80, T) == Approx(1.0 - 0.9 / 20));
  CHECK(schedule_lr(s, 1.0f, 99, T) == Approx(0.1));
  s.type = "cosine";
  s.warmup_steps = 0;  // explicit steps override the fraction
  CHECK(schedule_lr(s, 1.0f, 0, T) == Approx(1.0));
  s.warmup_steps = 4;
  CHECK(schedule_lr(s, 1.0f, 0, T) == Approx(0.25));

  Schedule p = parse_schedule(json{{"type", "wsd"}, {"decay_frac", 0.3}}, "cfg.json", "schedule");
  CHECK(p.type == "wsd");
  CHECK(p.decay_frac == Approx(0.3));
  CHECK(p.warmup_frac == Approx(0.1));
  Schedule q = parse_schedule_over(json{{"min_lr_frac", 0.0}}, p, "cfg.json", "optimizer.matrix.schedule");
  CHECK(q.type == "wsd");
  CHECK(q.min_lr_frac == 0.0);
  try {
    parse_schedule(json{{"type", "step"}}, "cfg.json", "schedule");
    FAIL("no error");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("cfg.json: schedule.type") != std::string::npos);
  }
  try {
    parse_schedule_over(json{{"warmup_frac", 1.5}}, p, "cfg.json", "optimizer.matrix.schedule");
    FAIL("no error");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("optimizer.matrix.schedule.warmup_frac") != std::string::npos);
  }
}

TEST_CASE("optimizer config validation names the key", "[optim]") {
  auto has = [](const std::string& msg, const std::string& part) {
    INFO(msg);
    return msg.find(part) != std::string::npos;
  };
  CHECK(has(input_error({{"matrix", {{"type", "muon"}, {"lr", -0.1}}}}), "cfg.json: optimizer.matrix.lr: must be > 0"));
  CHECK(has(input_error({{"matrix", {{"type", "rmnp"}, {"momentum", 1.2}}}}),
            "cfg.json: optimizer.matrix.momentum: must be in [0, 1), got 1.2"));
  CHECK(has(input_error({{"matrix", {{"type", "muon"}, {"momentum", 1.0}}}}), "optimizer.matrix.momentum"));
  CHECK(has(input_error({{"matrix", {{"type", "sgd"}}}}), "cfg.json: optimizer.matrix.type: unknown value \"sgd\""));
  CHECK(has(input_error({{"matrix", {{"type", "muon"}, {"coefficients", "jordan7"}}}}),
            "cfg.json: optimizer.matrix.coefficients: unknown value \"jordan7\""));
  CHECK(has(input_error({{"matrix", {{"type", "muon"}, {"momentun", 0.9}}}}),
            "cfg.json: optimizer.matrix.momentun: unknown key"));
  CHECK(has(input_error({{"matrix", {{"type", "rmnp"}, {"split_qkv", true}}}}), "optimizer.matrix.split_qkv: unknown key"));
  CHECK(has(input_error({{"adamw", {{"beta2", 1.0}}}}), "optimizer.adamw.beta2: must be in [0, 1)"));
  CHECK(has(input_error({{"adamw", {{"eps_mode", "mars"}}}}), "optimizer.adamw.eps_mode"));
  CHECK(has(input_error({{"adamw", {{"weight_decay", -1}}}}), "optimizer.adamw.weight_decay"));
  CHECK(has(input_error({{"matrix", {{"lr", 0.02}}}}), "optimizer.matrix.type: missing"));
  CHECK(has(input_error({{"embed", {{"type", "adamw"}}}}), "optimizer.embed.roles: missing"));
  CHECK(has(input_error({{"matrix", {{"type", "muon"}, {"roles", {"hidden_matrix", "bias"}}}}}),
            "optimizer.matrix.roles"));
  CHECK(has(input_error({{"matrix", {{"type", "muon"}, {"roles", {"weights"}}}}}), "optimizer.matrix.roles"));
  CHECK(has(input_error({{"matrix", {{"type", "muon"}, {"schedule", {{"type", "cosine"}, {"warmup", 5}}}}}}),
            "optimizer.matrix.schedule.warmup: unknown key"));
  CHECK(has(input_error({{"a", {{"type", "muon"}, {"roles", {"hidden_matrix"}}}},
                         {"b", {{"type", "rmnp"}, {"roles", {"hidden_matrix"}}}}}),
            "optimizer.b.roles: role hidden_matrix is already taken by group \"a\""));
  CHECK(has(input_error({{"matrix", {{"type", "lowrank_muon"}, {"rank", 0}}}}), "optimizer.matrix.rank"));
  CHECK(has(input_error({{"matrix", {{"type", "newton_muon"}, {"refresh_every", 0}}}}),
            "optimizer.matrix.refresh_every"));
  CHECK(has(input_error({{"matrix", {{"type", "polargrad"}, {"polar", "svd"}}}}), "optimizer.matrix.polar"));
  CHECK(has(input_error({{"matrix", {{"type", "muon"}, {"ns_symmetric", "yes"}}}}), "optimizer.matrix.ns_symmetric"));
  CHECK(has(input_error({{"matrix", {{"type", "rmnp"}, {"ns_symmetric", true}}}}),
            "optimizer.matrix.ns_symmetric: unknown key"));
  CHECK(has(input_error(json::array()), "cfg.json: optimizer"));

  // valid configs: defaults filled in, type-specific options kept
  // ns_symmetric: false unless set, for every Newton-Schulz type (a GPU layout; the CPU accepts it).
  for (const char* t : {"muon", "lowrank_muon", "newton_muon", "polargrad"}) {
    INFO(t);
    for (const bool on : {false, true}) {
      json m{{"type", t}};
      if (on) m["ns_symmetric"] = true;
      const auto g = parse_optimizer_config(json{{"matrix", m}}, Schedule{}, "cfg.json");
      for (const auto& x : g)
        if (x.name == "matrix") CHECK(x.options.at("ns_symmetric") == on);
    }
  }
  auto gs = parse_optimizer_config(json::object(), Schedule{}, "cfg.json");
  REQUIRE(gs.size() == 1);
  CHECK(gs[0].name == "adamw");
  CHECK(gs[0].type == "adamw");
  CHECK(gs[0].catch_all);
  CHECK(gs[0].lr == Approx(1e-3));
  CHECK(gs[0].options["beta2"] == 0.95);
  Schedule base;
  base.type = "wsd";
  gs = parse_optimizer_config(
      {{"matrix", {{"type", "rmnp"}, {"lr", 0.004}, {"momentum", 0.9}, {"schedule", {{"min_lr_frac", 0.0}}}}},
       {"adamw", {{"type", "adamw"}, {"lr", 0.003}, {"weight_decay", 0.0}}}},
      base, "cfg.json");
  REQUIRE(gs.size() == 2);
  CHECK(gs[0].name == "adamw");
  CHECK(gs[1].name == "matrix");
  CHECK(gs[1].roles == std::vector<ParamRole>{ParamRole::hidden_matrix});
  CHECK(gs[1].options["momentum"] == 0.9);
  CHECK(gs[1].options["eps"] == 1e-12);
  CHECK(gs[1].schedule.type == "wsd");
  CHECK(gs[1].schedule.min_lr_frac == 0.0);
  CHECK(gs[0].schedule.min_lr_frac == Approx(0.1));
  CHECK(gs[0].weight_decay == 0.0f);
}

TEST_CASE("assign_groups routes by role", "[optim]") {
  Model md;
  md.add("wte.weight", ParamRole::embedding, {16, 8});
  md.add("h.0.ln_1.weight", ParamRole::norm_gain, {8});
  md.add("h.0.attn.c_attn.weight", ParamRole::hidden_matrix, {24, 8});
  md.add("h.0.attn.c_attn.bias", ParamRole::bias, {24});
  md.add("h.0.mlp.c_fc.weight", ParamRole::hidden_matrix, {32, 8});
  md.add("lm_head.weight", ParamRole::lm_head, {16, 8});
  auto all = md.refs();
  auto names = [](const std::vector<ParamRef>& v) {
    std::vector<std::string> n;
    for (const auto& r : v) n.push_back(r.info->name);
    return n;
  };
  auto gs = parse_optimizer_config({{"matrix", {{"type", "muon"}}}, {"adamw", {{"type", "adamw"}}}}, Schedule{}, "c");
  auto a = assign_groups(gs, all);  // groups: adamw, matrix
  CHECK(names(a[1]) == std::vector<std::string>{"h.0.attn.c_attn.weight", "h.0.mlp.c_fc.weight"});
  CHECK(names(a[0]) == std::vector<std::string>{"wte.weight", "h.0.ln_1.weight", "h.0.attn.c_attn.bias", "lm_head.weight"});

  // the MARS/RMNP GPT-2 setup: embeddings and head through the matrix optimizer
  gs = parse_optimizer_config(
      {{"matrix", {{"type", "rmnp"}, {"roles", {"hidden_matrix", "embedding", "lm_head"}}}}, {"adamw", json::object()}},
      Schedule{}, "c");
  a = assign_groups(gs, all);
  CHECK(names(a[1]) == std::vector<std::string>{"wte.weight", "h.0.attn.c_attn.weight", "h.0.mlp.c_fc.weight",
                                                 "lm_head.weight"});
  CHECK(names(a[0]) == std::vector<std::string>{"h.0.ln_1.weight", "h.0.attn.c_attn.bias"});
  for (size_t i = 0; i < gs.size(); ++i) CHECK(make_optimizer(gs[i], a[i], 1) != nullptr);

  // a third group by roles
  gs = parse_optimizer_config({{"matrix", {{"type", "muon"}}},
                               {"embed", {{"type", "adamw"}, {"lr", 0.01}, {"roles", {"embedding", "lm_head"}}}},
                               {"adamw", json::object()}},
                              Schedule{}, "c");
  a = assign_groups(gs, all);  // adamw, embed, matrix
  CHECK(names(a[1]) == std::vector<std::string>{"wte.weight", "lm_head.weight"});
  CHECK(names(a[0]) == std::vector<std::string>{"h.0.ln_1.weight", "h.0.attn.c_attn.bias"});

  // no catch-all: the norm gains and biases have nowhere to go
  gs = parse_optimizer_config({{"matrix", {{"type", "muon"}}}}, Schedule{}, "c");
  try {
    assign_groups(gs, all);
    FAIL("no error");
  } catch (const RuntimeError& e) {
    CHECK(std::string(e.what()).find("wte.weight") != std::string::npos);
  }
  // two groups claiming one role (only possible when built by hand)
  std::vector<GroupConfig> two(2);
  two[0].name = "x";
  two[0].roles = {ParamRole::bias};
  two[1].name = "y";
  two[1].roles = {ParamRole::bias};
  CHECK_THROWS_AS(assign_groups(two, {all[3]}), RuntimeError);

  // a matrix optimizer given a vector names the tensor
  try {
    make_optimizer(group("muon", 0.02f, 0.0f), {all[1]}, 1);
    FAIL("no error");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("h.0.ln_1.weight") != std::string::npos);
  }
  CHECK_THROWS_AS(make_optimizer(group("muon", 0.02f, 0.0f, {{"nesterov", 3}}), {all[2]}, 1), InputError);
  CHECK_THROWS_AS(make_optimizer(group("sgd", 0.02f, 0.0f), {all[2]}, 1), InputError);
}

TEST_CASE("every optimizer descends on a quadratic", "[optim]") {
  // loss = 0.5 ||W - W*||_F^2, G = W - W*: a sign or scale error in any update rule shows here.
  struct Case {
    std::string type;
    float lr;
    json opts;
  };
  const std::vector<Case> cases = {{"adamw", 0.01f, json::object()},
                                   {"muon", 0.02f, json::object()},
                                   {"rmnp", 0.02f, json::object()},
                                   {"lowrank_muon", 0.02f, {{"rank", 8}, {"full_threshold", 0}}},
                                   {"polargrad", 0.01f, json::object()},
                                   {"newton_muon", 0.02f, {{"refresh_every", 10}}}};
  for (const auto& c : cases) {
    INFO(c.type);
    Rng r(81);
    Model md;
    md.add("h.0.mlp.c_fc.weight", ParamRole::hidden_matrix, {24, 40});
    auto target = randn(r, 24 * 40, 0.1f);
    auto loss = [&] {
      double l = 0;
      for (size_t i = 0; i < target.size(); ++i) l += 0.5 * (md.w[0][i] - target[i]) * (md.w[0][i] - target[i]);
      return l;
    };
    const double l0 = loss();
    auto opt = make_optimizer(group(c.type, c.lr, 0.0f, c.opts), md.refs(), 3);
    auto Z = randn(r, 64 * 40);
    for (int t = 1; t <= 150; ++t) {
      for (size_t i = 0; i < target.size(); ++i) md.g[0][i] = md.w[0][i] - target[i];
      if (opt->wants_inputs(t)) opt->observe_inputs(md.infos[0], Z.data(), 64, 40);
      opt->step(md.refs(), c.lr * (1.0f - (float)(t - 1) / 150), t);
    }
    CHECK(loss() < 0.1 * l0);
  }
}

TEST_CASE("state save and load gives bitwise identical next updates", "[optim]") {
  struct Case {
    std::string type;
    json opts;
  };
  const std::vector<Case> cases = {
      {"adamw", json::object()},
      {"adamw", {{"eps_mode", "uncorrected"}}},
      {"muon", {{"split_qkv", true}}},
      {"muon", {{"coefficients", "polar_express5"}, {"scale", "moonlight"}, {"momentum_form", "sum"}}},
      {"rmnp", json::object()},
      {"lowrank_muon", {{"rank", 4}, {"full_threshold", 0}}},
      {"polargrad", {{"polar", "qdwh"}}},
      {"polargrad", {{"polar", "ns"}, {"nesterov", true}}},
      {"newton_muon", {{"refresh_every", 2}, {"block", 16}, {"split_qkv", true}}},
  };
  for (const auto& c : cases) {
    INFO(c.type << " " << c.opts.dump());
    Rng r(61);
    auto build = [&](Model& md) {
      md.add("h.0.attn.c_attn.weight", ParamRole::hidden_matrix, {48, 16});
      md.add("h.0.mlp.c_proj.weight", ParamRole::hidden_matrix, {16, 32});
      if (c.type == "adamw") md.add("h.0.ln_1.weight", ParamRole::norm_gain, {16});
    };
    Model a, b;
    build(a);
    build(b);
    a.fill_weights(r, 0.05f);
    auto oa = make_optimizer(group(c.type, 0.01f, 0.1f, c.opts), a.refs(), 99);
    auto feed = [&](Optimizer& o, Model& md, int64_t t, Rng& zr) {
      if (!o.wants_inputs(t)) return;
      for (auto& info : md.infos) {
        const int64_t N = 24;
        auto z = randn(zr, (size_t)(N * info.cols()));
        o.observe_inputs(info, z.data(), N, info.cols());
      }
    };
    Rng zr(5);
    for (int t = 1; t <= 3; ++t) {
      a.fill_grads(r, 1.0f);
      feed(*oa, a, t, zr);
      oa->step(a.refs(), 0.01f, t);
    }
    // "checkpoint": copy every state buffer and the scalar state through JSON text
    std::vector<std::vector<float>> saved;
    std::vector<std::string> saved_names;
    for (const auto& s : oa->state()) {
      saved.emplace_back(s.data, s.data + s.numel);
      saved_names.push_back(s.name);
    }
    const std::string scalars = oa->scalar_state().dump();
    b.w = a.w;
    auto ob = make_optimizer(group(c.type, 0.01f, 0.1f, c.opts), b.refs(), 12345);  // a different seed
    auto sb = ob->state();
    REQUIRE(sb.size() == saved.size());
    for (size_t i = 0; i < sb.size(); ++i) {
      CHECK(sb[i].name == saved_names[i]);
      REQUIRE(sb[i].numel == saved[i].size());
      std::memcpy(sb[i].data, saved[i].data(), sizeof(float) * saved[i].size());
    }
    ob->load_scalar_state(json::parse(scalars));
    // two more steps on both, the second a Newton-Muon refresh step
    for (int t = 4; t <= 5; ++t) {
      a.fill_grads(r, 1.0f);
      b.g = a.g;
      Rng za(1000 + t), zb(1000 + t);
      feed(*oa, a, t, za);
      feed(*ob, b, t, zb);
      oa->step(a.refs(), 0.01f, t);
      ob->step(b.refs(), 0.01f, t);
      for (size_t i = 0; i < a.w.size(); ++i)
        CHECK(std::memcmp(a.w[i].data(), b.w[i].data(), sizeof(float) * a.w[i].size()) == 0);
    }
    // and the weights did move
    double moved = 0;
    for (size_t i = 0; i < a.w[0].size(); ++i) moved += std::fabs(a.w[0][i]);
    CHECK(moved > 0);
  }
}

TEST_CASE("diagonal-dominance diagnostics", "[optim]") {
  // identical rows: every Gram entry equal, so r_i = 1 exactly
  std::vector<float> V(4 * 6);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 6; ++j) V[i * 6 + j] = (float)(j + 1);
  auto r = dominance_ratios(V.data(), 4, 6, true);
  REQUIRE(r.size() == 3);
  CHECK(r[0] == Approx(1.0));
  CHECK(r[1] == Approx(1.0));
  CHECK(r[2] == Approx(1.0));
  // rows e_0 + 0.1 e_1 style: Gram [[1.01, 0.1, 0], ...] hand-checkable 3x3 case
  //   V = [[1, 0.1, 0], [0.1, 1, 0], [0, 0, 2]]: G = V V^T = [[1.01, 0.2, 0], [0.2, 1.01, 0], [0, 0, 4]]
  //   r_0 = 1.01 / ((0.2 + 0) / 2) = 10.1, r_1 = 10.1, r_2 = 4 / 0 -> huge
  std::vector<float> W = {1, 0.1f, 0, 0.1f, 1, 0, 0, 0, 2};
  r = dominance_ratios(W.data(), 3, 3, true);
  CHECK(r[1] == Approx(10.1).epsilon(1e-5));
  CHECK(r[2] > 1e100);
  // a tall matrix on its short side uses V^T V
  std::vector<float> T(6 * 2);
  for (int i = 0; i < 6; ++i) {
    T[i * 2] = 1.0f;
    T[i * 2 + 1] = (float)i;
  }
  // V^T V = [[6, 15], [15, 55]]: r = [6/15, 55/15]
  r = dominance_ratios(T.data(), 6, 2, false);
  CHECK(r[1] == Approx(6.0 / 15.0));
  CHECK(r[2] == Approx(55.0 / 15.0));
  CHECK(r[0] == Approx((6.0 / 15.0 + 55.0 / 15.0) / 2));
  CHECK(dominance_ratios(T.data(), 6, 2, true).size() == 3);
  CHECK(dominance_ratios(V.data(), 1, 24, true).empty());

  // through an optimizer: null before the first step, then per-matrix and averaged ratios
  Rng rg(71);
  Model md;
  md.add("h.0.attn.c_proj.weight", ParamRole::hidden_matrix, {16, 24});
  md.add("h.0.mlp.c_fc.weight", ParamRole::hidden_matrix, {32, 16});
  for (std::string type : {"muon", "rmnp", "newton_muon"}) {
    auto o = make_optimizer(group(type, 0.01f, 0.0f), md.refs(), 1);
    CHECK(o->diagnostics().is_null());
    md.fill_grads(rg, 1.0f);
    o->step(md.refs(), 0.01f, 1);
    json d = o->diagnostics();
    REQUIRE(d.is_object());
    CHECK(d["matrices"].size() == 2);
    const double a0 = d["matrices"]["h.0.attn.c_proj.weight"]["r_avg"], a1 = d["matrices"]["h.0.mlp.c_fc.weight"]["r_avg"];
    CHECK(d["r_avg"].get<double>() == Approx((a0 + a1) / 2));
    CHECK(d["r_min"].get<double>() <= d["r_avg"].get<double>());
    CHECK(d["r_max"].get<double>() >= d["r_avg"].get<double>());
    CHECK(a0 > 1.0);  // random Gaussian rows are nearly orthogonal
  }
  // the optimizer's V is U = (1-b) G + b M after the step (first step: M = (1-b) G)
  Model one;
  one.add("h.0.mlp.c_fc.weight", ParamRole::hidden_matrix, {8, 12});
  one.fill_grads(rg, 1.0f);
  auto o = make_optimizer(group("muon", 0.01f, 0.0f, {{"diagnostics_side", "rows"}}), one.refs(), 1);
  o->step(one.refs(), 0.01f, 1);
  std::vector<float> U(8 * 12);
  for (size_t i = 0; i < U.size(); ++i) U[i] = 0.05f * one.g[0][i] + 0.95f * (0.05f * one.g[0][i]);
  auto want = dominance_ratios(U.data(), 8, 12, true);
  CHECK(o->diagnostics()["r_avg"].get<double>() == Approx(want[0]).epsilon(1e-5));
}
