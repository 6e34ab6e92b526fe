// The CPU reference ops (kernels/cpu/ops.h) against the mathematics they implement. For each op, in
// double precision, the backward is compared with central finite differences of the scalar loss
// L = sum(out * R) (R a fixed random tensor) with respect to every input and parameter. Gradient
// buffers start from random values, so the same checks also prove the accumulate (+=) convention;
// calling backward a second time must add the same amount again. Further checks: forward against
// naive formulas (attention against an explicit masked softmax(QK^T)V), the fp32 instantiation
// against fp64, and bitwise-identical results for 1, 2 and 3 OpenMP threads.
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "cpu/ops.h"

using namespace llmtrain::cpu;

namespace {

using Vec = std::vector<double>;
using VecF = std::vector<float>;

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  double normal() { return std::normal_distribution<double>(0.0, 1.0)(g); }
  double uniform(double a, double b) { return std::uniform_real_distribution<double>(a, b)(g); }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); }  // inclusive
  Vec randn(size_t n, double scale = 1.0, double shift = 0.0) {
    Vec v(n);
    for (auto& x : v) x = shift + scale * normal();
    return v;
  }
};

VecF to_f(const Vec& v) { return VecF(v.begin(), v.end()); }

double sum_prod(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

double norm(const Vec& a) { return std::sqrt(sum_prod(a, a)); }

// Norm-wise relative error ||a - b|| / max(||a||, ||b||); 0 when both are exactly 0.
template <typename A, typename B>
double rel_err(const A& a, const B& b) {
  double num = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = (double)a[i] - (double)b[i];
    num += d * d;
    na += (double)a[i] * (double)a[i];
    nb += (double)b[i] * (double)b[i];
  }
  const double den = std::max(na, nb);
  return den == 0 ? 0.0 : std::sqrt(num / den);
}

// Element-wise error scaled by the largest magnitude: max_i |a_i - b_i| / max_i |b_i|.
double max_err(const Vec& a, const Vec& b) {
  double m = 0, s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(a[i] - b[i]));
    s = std::max(s, std::fabs(b[i]));
  }
  return s == 0 ? m : m / s;
}

Vec diff(const Vec& a, const Vec& b) {
  Vec d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

// Central differences of loss() with respect to every element of x (restored afterwards).
Vec numeric_grad(Vec& x, const std::function<double()>& loss, double h = 1e-5) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double lp = loss();
    x[i] = x0 - h;
    const double lm = loss();
    x[i] = x0;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

constexpr double kGradTol = 1e-6;

// The analytic gradient must match finite differences, be non-trivial, and the tolerance must be
// tight enough that a small error in it (one element off by 1e-4 of the norm) is caught.
void check_grad(const std::string& what, const Vec& analytic, const Vec& numeric) {
  INFO(what);
  REQUIRE(analytic.size() == numeric.size());
  REQUIRE(norm(numeric) > 1e-3);
  const double e = rel_err(analytic, numeric), m = max_err(analytic, numeric);
  INFO("norm-wise rel err " << e << ", element-wise " << m);
  CHECK(e < kGradTol);
  CHECK(m < kGradTol);
  Vec bad = analytic;
  size_t imax = 0;
  for (size_t i = 0; i < bad.size(); ++i)
    if (std::fabs(numeric[i]) > std::fabs(numeric[imax])) imax = i;
  bad[imax] += 1e-4 * norm(numeric);
  CHECK(rel_err(bad, numeric) > kGradTol);
}

// A gradient buffer that starts from random values, so += is observable: `once` and `twice` are the
// increments after one and two backward calls.
struct Grad {
  Vec init, buf;
  Grad(size_t n, Rng& r) : init(r.randn(n)), buf(init) {}
  double* p() { return buf.data(); }
  Vec delta() const { return diff(buf, init); }
};

void check_accumulates(const std::string& what, const Vec& once, const Vec& twice) {
  INFO(what << ": a second backward call must add the same gradient again");
  Vec dbl(once.size());
  for (size_t i = 0; i < once.size(); ++i) dbl[i] = 2 * once[i];
  CHECK(rel_err(twice, dbl) < 1e-12);
}

struct ThreadCount {  // restores the OpenMP thread count when a test ends
  int saved = omp_get_max_threads();
  ~ThreadCount() { omp_set_num_threads(saved); }
};

template <typename T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
TEST_CASE("embedding: backward matches finite differences and accumulates", "[ops]") {
  Rng r(1);
  const int B = 2, T = 5, C = 8, V = 7;
  std::vector<int32_t> inp(B * T);
  for (auto& i : inp) i = r.integer(0, V - 1);
  inp[3] = inp[7] = 2;  // a repeated token: its dwte row gets two contributions
  Vec wte = r.randn(V * C), wpe = r.randn(T * C), R = r.randn(B * T * C);
  auto loss = [&]() {
    Vec out(B * T * C);
    embedding_forward<double>(out.data(), inp.data(), wte.data(), wpe.data(), B, T, C);
    return sum_prod(out, R);
  };
  Grad gwte(V * C, r), gwpe(T * C, r);
  embedding_backward<double>(gwte.p(), gwpe.p(), R.data(), inp.data(), B, T, C);
  const Vec d_wte = gwte.delta(), d_wpe = gwpe.delta();
  check_grad("dwte", d_wte, numeric_grad(wte, loss));
  check_grad("dwpe", d_wpe, numeric_grad(wpe, loss));
  embedding_backward<double>(gwte.p(), gwpe.p(), R.data(), inp.data(), B, T, C);
  check_accumulates("dwte", d_wte, gwte.delta());
  check_accumulates("dwpe", d_wpe, gwpe.delta());

  // Without wpe (LLaMA): out is the token row, and dwte alone is updated.
  Vec out(B * T * C);
  embedding_forward<double>(out.data(), inp.data(), wte.data(), nullptr, B, T, C);
  for (int i = 0; i < B * T; ++i)
    for (int c = 0; c < C; ++c) REQUIRE(out[i * C + c] == wte[inp[i] * C + c]);
  Grad g2(V * C, r);
  embedding_backward<double>(g2.p(), nullptr, R.data(), inp.data(), B, T, C);
  CHECK(rel_err(g2.delta(), d_wte) < 1e-15);
}

// ------------------------------------------------------------------------------------------------
TEST_CASE("layernorm: forward statistics and backward vs finite differences", "[ops]") {
  Rng r(2);
  const int N = 10, C = 8;
  const float eps = 1e-5f;
  Vec x = r.randn(N * C, 1.5, 3.0), w = r.randn(C, 0.5, 1.0), bias = r.randn(C), R = r.randn(N * C);
  Vec out(N * C), mean(N), rstd(N);
  auto forward = [&]() { layernorm_forward<double>(out.data(), mean.data(), rstd.data(), x.data(), w.data(), bias.data(), N, C, eps); };
  auto loss = [&]() {
    forward();
    return sum_prod(out, R);
  };
  forward();
  for (int n = 0; n < N; ++n) {
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += x[n * C + c] / C;
    for (int c = 0; c < C; ++c) v += (x[n * C + c] - m) * (x[n * C + c] - m) / C;
    CHECK(mean[n] == Approx(m).epsilon(1e-14));
    CHECK(rstd[n] == Approx(1 / std::sqrt(v + (double)eps)).epsilon(1e-13));
    for (int c = 0; c < C; ++c)
      CHECK(out[n * C + c] == Approx((x[n * C + c] - m) / std::sqrt(v + (double)eps) * w[c] + bias[c]).epsilon(1e-12));
  }
  const Vec saved_mean = mean, saved_rstd = rstd;
  Grad gx(N * C, r), gw(C, r), gb(C, r);
  auto backward = [&]() {
    layernorm_backward<double>(gx.p(), gw.p(), gb.p(), R.data(), x.data(), w.data(), saved_mean.data(), saved_rstd.data(),
                               N, C);
  };
  backward();
  const Vec dx = gx.delta(), dw = gw.delta(), db = gb.delta();
  check_grad("dinp", dx, numeric_grad(x, loss));
  check_grad("dweight", dw, numeric_grad(w, loss));
  check_grad("dbias", db, numeric_grad(bias, loss));
  backward();
  check_accumulates("dinp", dx, gx.delta());
  check_accumulates("dweight", dw, gw.delta());
  check_accumulates("dbias", db, gb.delta());

  // bias = nullptr is a zero bias, forward and backward.
  Vec out0(N * C), zeros(C, 0.0), out_z(N * C);
  layernorm_forward<double>(out0.data(), mean.data(), rstd.data(), x.data(), w.data(), nullptr, N, C, eps);
  layernorm_forward<double>(out_z.data(), mean.data(), rstd.data(), x.data(), w.data(), zeros.data(), N, C, eps);
  CHECK(bitwise_equal(out0, out_z));
  Grad gx2(N * C, r);
  layernorm_backward<double>(gx2.p(), nullptr, nullptr, R.data(), x.data(), w.data(), saved_mean.data(), saved_rstd.data(),
                             N, C);
  CHECK(rel_err(gx2.delta(), dx) < 1e-14);
}

TEST_CASE("gradient check rejects a slightly wrong backward", "[ops]") {
  // rmsnorm backward fed an rstd that is off by 1e-4 (relative) must fail the 1e-6 criterion.
  Rng r(3);
  const int N = 6, C = 8;
  Vec x = r.randn(N * C), w = r.randn(C, 0.5, 1.0), R = r.randn(N * C), out(N * C), rstd(N);
  auto loss = [&]() {
    rmsnorm_forward<double>(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f);
    return sum_prod(out, R);
  };
  loss();
  Vec bad_rstd = rstd;
  for (auto& v : bad_rstd) v *= 1 + 1e-4;
  Vec dx(N * C, 0.0), dw(C, 0.0);
  rmsnorm_backward<double>(dx.data(), dw.data(), R.data(), x.data(), w.data(), bad_rstd.data(), N, C);
  CHECK(rel_err(dx, numeric_grad(x, loss)) > kGradTol);
  CHECK(rel_err(dw, numeric_grad(w, loss)) > kGradTol);
}

// ------------------------------------------------------------------------------------------------
TEST_CASE("rmsnorm: forward and backward vs finite differences", "[ops]") {
  Rng r(4);
  const int N = 10, C = 8;
  const float eps = 1e-6f;
  Vec x = r.randn(N * C, 1.0, 0.5), w = r.randn(C, 0.5, 1.0), R = r.randn(N * C), out(N * C), rstd(N);
  auto loss = [&]() {
    rmsnorm_forward<double>(out.data(), rstd.data(), x.data(), w.data(), N, C, eps);
    return sum_prod(out, R);
  };
  loss();
  for (int n = 0; n < N; ++n) {
    double ms = 0;
    for (int c = 0; c < C; ++c) ms += x[n * C + c] * x[n * C + c] / C;
    const double rs = 1 / std::sqrt(ms + (double)eps);
    CHECK(rstd[n] == Approx(rs).epsilon(1e-13));
    for (int c = 0; c < C; ++c) CHECK(out[n * C + c] == Approx(x[n * C + c] * rs * w[c]).epsilon(1e-13));
  }
  const Vec saved = rstd;
  Grad gx(N * C, r), gw(C, r);
  auto backward = [&]() { rmsnorm_backward<double>(gx.p(), gw.p(), R.data(), x.data(), w.data(), saved.data(), N, C); };
  backward();
  const Vec dx = gx.delta(), dw = gw.delta();
  check_grad("dinp", dx, numeric_grad(x, loss));
  check_grad("dweight", dw, numeric_grad(w, loss));
  backward();
  check_accumulates("dinp", dx, gx.delta());
  check_accumulates("dweight", dw, gw.delta());
}

// ------------------------------------------------------------------------------------------------
namespace {
// Naive triple loops in double: the matmul definitions, for shapes that exercise every edge path.
void naive_matmul(Vec& out, const Vec& inp, const Vec& w, const Vec* bias, int N, int C, int OC) {
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      double s = bias ? (*bias)[o] : 0.0;
      for (int c = 0; c < C; ++c) s += inp[(size_t)n * C + c] * w[(size_t)o * C + c];
      out[(size_t)n * OC + o] = s;
    }
}
}  // namespace

TEST_CASE("matmul: backward vs finite differences, accumulation", "[ops]") {
  Rng r(5);
  const int B = 2, T = 5, N = B * T, C = 8, OC = 12;
  Vec x = r.randn(N * C), w = r.randn(OC * C), bias = r.randn(OC), R = r.randn(N * OC), out(N * OC);
  auto loss = [&]() {
    matmul_forward<double>(out.data(), x.data(), w.data(), bias.data(), N, C, OC);
    return sum_prod(out, R);
  };
  Grad gx(N * C, r), gw(OC * C, r), gb(OC, r);
  auto backward = [&]() { matmul_backward<double>(gx.p(), gw.p(), gb.p(), R.data(), x.data(), w.data(), N, C, OC); };
  backward();
  const Vec dx = gx.delta(), dw = gw.delta(), db = gb.delta();
  check_grad("dinp", dx, numeric_grad(x, loss));
  check_grad("dweight", dw, numeric_grad(w, loss));
  check_grad("dbias", db, numeric_grad(bias, loss));
  backward();
  check_accumulates("dinp", dx, gx.delta());
  check_accumulates("dweight", dw, gw.delta());
  check_accumulates("dbias", db, gb.delta());
}

TEST_CASE("matmul: forward and backward equal naive loops at edge and blocked shapes", "[ops]") {
  Rng r(6);
  // Shapes below, at and above the register tile and the cache blocks (depth 256, 1024 columns).
  const int shapes[][3] = {{1, 1, 1}, {7, 13, 11}, {6, 16, 16}, {49, 257, 33}, {70, 300, 40}, {13, 5, 1030}};
  for (const auto& s : shapes) {
    const int N = s[0], C = s[1], OC = s[2];
    INFO("N=" << N << " C=" << C << " OC=" << OC);
    Vec x = r.randn((size_t)N * C), w = r.randn((size_t)OC * C), bias = r.randn(OC), dout = r.randn((size_t)N * OC);
    Vec out((size_t)N * OC), ref((size_t)N * OC);
    matmul_forward<double>(out.data(), x.data(), w.data(), bias.data(), N, C, OC);
    naive_matmul(ref, x, w, &bias, N, C, OC);
    CHECK(rel_err(out, ref) < 1e-13);
    matmul_forward<double>(out.data(), x.data(), w.data(), nullptr, N, C, OC);
    naive_matmul(ref, x, w, nullptr, N, C, OC);
    CHECK(rel_err(out, ref) < 1e-13);

    Vec dx((size_t)N * C, 0.0), dw((size_t)OC * C, 0.0), db(OC, 0.0);
    matmul_backward<double>(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), N, C, OC);
    Vec rx((size_t)N * C, 0.0), rw((size_t)OC * C, 0.0), rb(OC, 0.0);
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < OC; ++o) {
        const double d = dout[(size_t)n * OC + o];
        rb[o] += d;
        for (int c = 0; c < C; ++c) {
          rx[(size_t)n * C + c] += d * w[(size_t)o * C + c];
          rw[(size_t)o * C + c] += d * x[(size_t)n * C + c];
        }
      }
    CHECK(rel_err(dx, rx) < 1e-13);
    CHECK(rel_err(dw, rw) < 1e-13);
    CHECK(rel_err(db, rb) < 1e-13);
  }
}

// ------------------------------------------------------------------------------------------------
namespace {
struct AttnShape {
  int B, T, NH, NKV, HS, q_stride, kv_stride;
};

// Explicit causal softmax(scale Q K^T) V per (b, h), and the row log-sum-exp.
void naive_attention(Vec& out, Vec& lse, const double* q, const double* k, const double* v, const AttnShape& s,
                     double scale) {
  const int group = s.NH / s.NKV;
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.NH; ++h) {
      std::vector<Vec> P(s.T, Vec(s.T, 0.0));
      for (int t = 0; t < s.T; ++t) {
        Vec sc(s.T, -INFINITY);
        double mx = -INFINITY;
        for (int u = 0; u <= t; ++u) {
          double d = 0;
          for (int i = 0; i < s.HS; ++i)
            d += q[(b * s.T + t) * s.q_stride + h * s.HS + i] * k[(b * s.T + u) * s.kv_stride + (h / group) * s.HS + i];
          sc[u] = scale * d;
          mx = std::max(mx, sc[u]);
        }
        double z = 0;
        for (int u = 0; u <= t; ++u) z += std::exp(sc[u] - mx);
        for (int u = 0; u <= t; ++u) P[t][u] = std::exp(sc[u] - mx) / z;
        lse[(b * s.NH + h) * s.T + t] = mx + std::log(z);
      }
      for (int t = 0; t < s.T; ++t)
        for (int i = 0; i < s.HS; ++i) {
          double o = 0;
          for (int u = 0; u < s.T; ++u) o += P[t][u] * v[(b * s.T + u) * s.kv_stride + (h / group) * s.HS + i];
          out[(b * s.T + t) * s.NH * s.HS + h * s.HS + i] = o;
        }
    }
}

// One attention configuration: q, k, v live in `buf` at offsets qo, ko, vo (GPT-2: one fused
// buffer). Checks forward vs naive, then the backward vs finite differences over the whole buffer.
void check_attention(const AttnShape& s, size_t buf_size, size_t qo, size_t ko, size_t vo, uint64_t seed) {
  Rng r(seed);
  const double scale = 1.0 / std::sqrt((double)s.HS);
  const size_t out_n = (size_t)s.B * s.T * s.NH * s.HS, lse_n = (size_t)s.B * s.NH * s.T;
  Vec buf = r.randn(buf_size), R = r.randn(out_n), out(out_n), lse(lse_n);
  auto forward = [&]() {
    attention_forward<double>(out.data(), lse.data(), buf.data() + qo, buf.data() + ko, buf.data() + vo, s.B, s.T, s.NH,
                              s.NKV, s.HS, s.q_stride, s.kv_stride, (float)scale);
  };
  forward();
  Vec ref(out_n), ref_lse(lse_n);
  naive_attention(ref, ref_lse, buf.data() + qo, buf.data() + ko, buf.data() + vo, s, (double)(float)scale);
  CHECK(rel_err(out, ref) < 1e-13);
  CHECK(rel_err(lse, ref_lse) < 1e-13);

  const Vec saved_out = out, saved_lse = lse;
  Grad g(buf_size, r);
  auto backward = [&]() {
    attention_backward<double>(g.p() + qo, g.p() + ko, g.p() + vo, R.data(), buf.data() + qo, buf.data() + ko,
                               buf.data() + vo, saved_out.data(), saved_lse.data(), s.B, s.T, s.NH, s.NKV, s.HS,
                               s.q_stride, s.kv_stride, (float)scale);
  };
  backward();
  const Vec d = g.delta();
  const Vec num = numeric_grad(buf, [&]() {
    forward();
    return sum_prod(out, R);
  });
  check_grad("d(q, k, v)", d, num);
  backward();
  check_accumulates("d(q, k, v)", d, g.delta());
}
}  // namespace

TEST_CASE("attention: GPT-2 fused qkv layout, forward vs naive, backward vs finite differences", "[ops]") {
  const int B = 2, T = 5, NH = 2, HS = 4, C = NH * HS;
  check_attention({B, T, NH, NH, HS, 3 * C, 3 * C}, (size_t)B * T * 3 * C, 0, C, 2 * C, 7);
}

TEST_CASE("attention: grouped kv heads with padded strides", "[ops]") {
  SECTION("NH=4, NKV=2") {
    const AttnShape s{2, 5, 4, 2, 4, 4 * 4 + 3, 2 * 4 + 1};
    const size_t qn = (size_t)s.B * s.T * s.q_stride, kn = (size_t)s.B * s.T * s.kv_stride;
    check_attention(s, qn + 2 * kn, 0, qn, qn + kn, 8);
  }
  SECTION("NH=2, NKV=1 (multi-query)") {
    const AttnShape s{2, 6, 2, 1, 4, 2 * 4, 1 * 4};
    const size_t qn = (size_t)s.B * s.T * s.q_stride, kn = (size_t)s.B * s.T * s.kv_stride;
    check_attention(s, qn + 2 * kn, 0, qn, qn + kn, 9);
  }
  SECTION("odd head size, NH=3, NKV=1, longer T") {
    const AttnShape s{1, 11, 3, 1, 5, 3 * 5, 5};
    const size_t qn = (size_t)s.B * s.T * s.q_stride, kn = (size_t)s.B * s.T * s.kv_stride;
    check_attention(s, qn + 2 * kn, 0, qn, qn + kn, 10);
  }
}

// ------------------------------------------------------------------------------------------------
TEST_CASE("gelu: tanh approximation and backward vs finite differences", "[ops]") {
  Rng r(10);
  const int N = 60;
  Vec x(N), R = r.randn(N), out(N);
  for (auto& v : x) v = r.uniform(-4, 4);
  double one = 1.0, g1 = 0;
  gelu_forward<double>(&g1, &one, 1);
  CHECK(g1 == Approx(0.8411919906082768).epsilon(1e-14));  // 0.5 (1 + tanh(sqrt(2/pi) 1.044715))
  auto loss = [&]() {
    gelu_forward<double>(out.data(), x.data(), N);
    return sum_prod(out, R);
  };
  Grad gx(N, r);
  gelu_backward<double>(gx.p(), R.data(), x.data(), N);
  const Vec dx = gx.delta();
  check_grad("dinp", dx, numeric_grad(x, loss));
  gelu_backward<double>(gx.p(), R.data(), x.data(), N);
  check_accumulates("dinp", dx, gx.delta());
}

TEST_CASE("swiglu: forward and backward vs finite differences", "[ops]") {
  Rng r(11);
  const int N = 60;
  Vec gate = r.randn(N, 2.0), up = r.randn(N), R = r.randn(N), out(N);
  auto loss = [&]() {
    swiglu_forward<double>(out.data(), gate.data(), up.data(), N);
    return sum_prod(out, R);
  };
  loss();
  for (int i = 0; i < N; ++i) CHECK(out[i] == Approx(gate[i] / (1 + std::exp(-gate[i])) * up[i]).epsilon(1e-14));
  Grad gg(N, r), gu(N, r);
  swiglu_backward<double>(gg.p(), gu.p(), R.data(), gate.data(), up.data(), N);
  const Vec dg = gg.delta(), du = gu.delta();
  check_grad("dgate", dg, numeric_grad(gate, loss));
  check_grad("dup", du, numeric_grad(up, loss));
  swiglu_backward<double>(gg.p(), gu.p(), R.data(), gate.data(), up.data(), N);
  check_accumulates("dgate", dg, gg.delta());
  check_accumulates("dup", du, gu.delta());
}

TEST_CASE("residual: out = a + b", "[ops]") {
  Rng r(12);
  const int N = 37;
  Vec a = r.randn(N), b = r.randn(N), out(N);
  residual_forward<double>(out.data(), a.data(), b.data(), N);
  for (int i = 0; i < N; ++i) REQUIRE(out[i] == a[i] + b[i]);
}

// ------------------------------------------------------------------------------------------------
TEST_CASE("rope: tables, rotate_half pairing, backward is the exact adjoint", "[ops]") {
  Rng r(13);
  const int B = 2, T = 5, H = 3, HS = 8, half = HS / 2, stride = H * HS + 4;  // 4 padding values per token
  const float theta = 10000.0f;
  VecF cs(T * half), sn(T * half);
  rope_tables(cs.data(), sn.data(), T, HS, theta);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < half; ++i) {
      const double ang = t * std::pow(10000.0, -2.0 * i / HS);
      CHECK(cs[t * half + i] == Approx(std::cos(ang)).margin(1e-7));
      CHECK(sn[t * half + i] == Approx(std::sin(ang)).margin(1e-7));
    }

  // A unit vector in dim i of one head moves into dims i and i + HS/2 of that head only.
  {
    Vec x((size_t)B * T * stride, 0.0);
    const int t = 3, h = 1, i = 1;
    const size_t base = (size_t)(1 * T + t) * stride + h * HS;
    x[base + i] = 1.0;
    rope_forward<double>(x.data(), cs.data(), sn.data(), B, T, H, HS, stride);
    for (size_t j = 0; j < x.size(); ++j) {
      if (j == base + i)
        CHECK(x[j] == (double)cs[t * half + i]);
      else if (j == base + i + half)
        CHECK(x[j] == (double)sn[t * half + i]);
      else
        CHECK(x[j] == 0.0);
    }
  }

  Vec x = r.randn((size_t)B * T * stride), R = r.randn(x.size());
  auto loss = [&]() {
    Vec y = x;
    rope_forward<double>(y.data(), cs.data(), sn.data(), B, T, H, HS, stride);
    return sum_prod(y, R);
  };
  Vec g = R;  // backward works in place on the gradient (padding is left as is, like forward)
  rope_backward<double>(g.data(), cs.data(), sn.data(), B, T, H, HS, stride);
  check_grad("dx", g, numeric_grad(x, loss));
  // Adjoint: <R, rope(x)> == <rope^T(R), x> to rounding.
  CHECK(loss() == Approx(sum_prod(g, x)).epsilon(1e-14));
  // Inverse up to the fp32 tables (cos^2 + sin^2 = 1 to ~1e-7).
  Vec y = x;
  rope_forward<double>(y.data(), cs.data(), sn.data(), B, T, H, HS, stride);
  rope_backward<double>(y.data(), cs.data(), sn.data(), B, T, H, HS, stride);
  CHECK(rel_err(y, x) < 1e-6);
}

// ------------------------------------------------------------------------------------------------
TEST_CASE("softmax_xent: padded vocab, ignored rows, backward vs finite differences", "[ops]") {
  Rng r(14);
  const int N = 6, V = 7, Vp = 10;
  Vec logits = r.randn((size_t)N * Vp, 2.0), dloss = r.randn(N);
  for (int n = 0; n < N; ++n)
    for (int j = V; j < Vp; ++j) logits[n * Vp + j] = 50.0 + j;  // would dominate if not ignored
  std::vector<int32_t> tgt = {3, -1, 0, 6, -100, 2};
  Vec losses(N);
  softmax_xent_forward<double>(losses.data(), logits.data(), tgt.data(), N, V, Vp);
  for (int n = 0; n < N; ++n) {
    if (tgt[n] < 0) {
      CHECK(losses[n] == 0.0);
      continue;
    }
    double z = 0;
    for (int j = 0; j < V; ++j) z += std::exp(logits[n * Vp + j]);
    CHECK(losses[n] == Approx(std::log(z) - logits[n * Vp + tgt[n]]).epsilon(1e-13));
  }
  auto loss = [&]() {
    softmax_xent_forward<double>(losses.data(), logits.data(), tgt.data(), N, V, Vp);
    return sum_prod(losses, dloss);
  };
  Vec dl((size_t)N * Vp, NAN);  // overwritten, not accumulated
  softmax_xent_backward<double>(dl.data(), logits.data(), tgt.data(), dloss.data(), N, V, Vp);
  for (int n = 0; n < N; ++n)
    for (int j = 0; j < Vp; ++j)
      if (tgt[n] < 0 || j >= V) REQUIRE(dl[n * Vp + j] == 0.0);
  check_grad("dlogits", dl, numeric_grad(logits, loss));
  Vec dl2((size_t)N * Vp, 123.0);
  softmax_xent_backward<double>(dl2.data(), logits.data(), tgt.data(), dloss.data(), N, V, Vp);
  CHECK(bitwise_equal(dl, dl2));
}

// ------------------------------------------------------------------------------------------------
TEST_CASE("fp32 instantiation agrees with fp64", "[ops]") {
  Rng r(15);
  constexpr double tol = 1e-5;
  const int B = 2, T = 33, N = B * T, C = 300, OC = 70;
  const Vec x = r.randn((size_t)N * C, 1.0, 0.5), w = r.randn((size_t)OC * C, 0.05), bias = r.randn(OC),
            gain = r.randn(C, 0.3, 1.0), gC = r.randn((size_t)N * C);
  const VecF xf = to_f(x), wf = to_f(w), bf = to_f(bias), gainf = to_f(gain), gCf = to_f(gC);
  const Vec xd(xf.begin(), xf.end()), wd(wf.begin(), wf.end()), bd(bf.begin(), bf.end()), gaind(gainf.begin(), gainf.end()),
      gCd(gCf.begin(), gCf.end());  // fp64 copies of exactly the fp32 inputs

  SECTION("matmul") {
    Vec o((size_t)N * OC);
    VecF of((size_t)N * OC);
    matmul_forward<double>(o.data(), xd.data(), wd.data(), bd.data(), N, C, OC);
    matmul_forward<float>(of.data(), xf.data(), wf.data(), bf.data(), N, C, OC);
    CHECK(rel_err(of, o) < tol);
    const Vec dout = r.randn((size_t)N * OC);
    const VecF doutf = to_f(dout);
    const Vec doutd(doutf.begin(), doutf.end());
    Vec dx((size_t)N * C, 0.0), dw((size_t)OC * C, 0.0), db(OC, 0.0);
    VecF dxf((size_t)N * C, 0.f), dwf((size_t)OC * C, 0.f), dbf(OC, 0.f);
    matmul_backward<double>(dx.data(), dw.data(), db.data(), doutd.data(), xd.data(), wd.data(), N, C, OC);
    matmul_backward<float>(dxf.data(), dwf.data(), dbf.data(), doutf.data(), xf.data(), wf.data(), N, C, OC);
    CHECK(rel_err(dxf, dx) < tol);
    CHECK(rel_err(dwf, dw) < tol);
    CHECK(rel_err(dbf, db) < tol);
  }
  SECTION("layernorm and rmsnorm") {
    Vec o((size_t)N * C), m(N), rs(N);
    VecF of((size_t)N * C), mf(N), rsf(N);
    layernorm_forward<double>(o.data(), m.data(), rs.data(), xd.data(), gaind.data(), gaind.data(), N, C, 1e-5f);
    layernorm_forward<float>(of.data(), mf.data(), rsf.data(), xf.data(), gainf.data(), gainf.data(), N, C, 1e-5f);
    CHECK(rel_err(of, o) < tol);
    Vec dx((size_t)N * C, 0.0), dw(C, 0.0), db(C, 0.0);
    VecF dxf((size_t)N * C, 0.f), dwf(C, 0.f), dbf(C, 0.f);
    layernorm_backward<double>(dx.data(), dw.data(), db.data(), gCd.data(), xd.data(), gaind.data(), m.data(), rs.data(), N, C);
    layernorm_backward<float>(dxf.data(), dwf.data(), dbf.data(), gCf.data(), xf.data(), gainf.data(), mf.data(), rsf.data(), N,
                              C);
    CHECK(rel_err(dxf, dx) < tol);
    CHECK(rel_err(dwf, dw) < tol);
    CHECK(rel_err(dbf, db) < tol);
    rmsnorm_forward<double>(o.data(), rs.data(), xd.data(), gaind.data(), N, C, 1e-6f);
    rmsnorm_forward<float>(of.data(), rsf.data(), xf.data(), gainf.data(), N, C, 1e-6f);
    CHECK(rel_err(of, o) < tol);
    std::fill(dx.begin(), dx.end(), 0.0);
    std::fill(dxf.begin(), dxf.end(), 0.f);
    rmsnorm_backward<double>(dx.data(), dw.data(), gCd.data(), xd.data(), gaind.data(), rs.data(), N, C);
    rmsnorm_backward<float>(dxf.data(), dwf.data(), gCf.data(), xf.data(), gainf.data(), rsf.data(), N, C);
    CHECK(rel_err(dxf, dx) < tol);
  }
  SECTION("elementwise ops and embedding") {
    const size_t n = (size_t)N * C;
    Vec o(n), o2(n);
    VecF of(n), of2(n);
    gelu_forward<double>(o.data(), xd.data(), n);
    gelu_forward<float>(of.data(), xf.data(), n);
    CHECK(rel_err(of, o) < tol);
    swiglu_forward<double>(o.data(), xd.data(), gCd.data(), n);
    swiglu_forward<float>(of.data(), xf.data(), gCf.data(), n);
    CHECK(rel_err(of, o) < tol);
    {
      // Far tails, where the fp32 path's sigmoid saturates or underflows: element-wise agreement.
      const VecF ext = {-100.f, -30.f, -12.f, -9.f, -5.f, -1.f, -1e-3f, 0.f, 1e-3f, 1.f, 5.f, 9.f, 12.f, 30.f, 100.f};
      const Vec extd(ext.begin(), ext.end());
      const size_t m = ext.size();
      for (int op = 0; op < 4; ++op) {
        Vec od(m, 0.0);
        VecF of32(m, 0.f);
        if (op == 0) gelu_forward<double>(od.data(), extd.data(), m), gelu_forward<float>(of32.data(), ext.data(), m);
        if (op == 1) gelu_backward<double>(od.data(), extd.data(), extd.data(), m), gelu_backward<float>(of32.data(), ext.data(), ext.data(), m);
        if (op == 2) swiglu_forward<double>(od.data(), extd.data(), extd.data(), m), swiglu_forward<float>(of32.data(), ext.data(), ext.data(), m);
        if (op == 3) {
          Vec od2(m, 0.0);
          VecF of2(m, 0.f);
          swiglu_backward<double>(od.data(), od2.data(), extd.data(), extd.data(), extd.data(), m);
          swiglu_backward<float>(of32.data(), of2.data(), ext.data(), ext.data(), ext.data(), m);
          for (size_t i = 0; i < m; ++i) CHECK(std::fabs(of2[i] - od2[i]) <= 1e-5 * std::fabs(od2[i]) + 1e-30);
        }
        for (size_t i = 0; i < m; ++i) {
          INFO("op " << op << " x = " << ext[i] << ": fp32 " << of32[i] << " fp64 " << od[i]);
          CHECK(std::isfinite(of32[i]));
          CHECK(std::fabs(of32[i] - od[i]) <= 1e-5 * std::fabs(od[i]) + 1e-30);
        }
      }
    }
    residual_forward<double>(o.data(), xd.data(), gCd.data(), n);
    residual_forward<float>(of.data(), xf.data(), gCf.data(), n);
    CHECK(rel_err(of, o) < tol);
    std::vector<int32_t> tok(N);
    for (auto& t : tok) t = r.integer(0, 9);
    embedding_forward<double>(o.data(), tok.data(), xd.data(), gCd.data(), B, T, C);
    embedding_forward<float>(of.data(), tok.data(), xf.data(), gCf.data(), B, T, C);
    CHECK(rel_err(of, o) < tol);
    const int H = 5, HS = 60;  // 5 * 60 = C
    VecF cs(T * HS / 2), sn(T * HS / 2);
    rope_tables(cs.data(), sn.data(), T, HS, 10000.f);
    o = xd;
    of = xf;
    rope_forward<double>(o.data(), cs.data(), sn.data(), B, T, H, HS, C);
    rope_forward<float>(of.data(), cs.data(), sn.data(), B, T, H, HS, C);
    CHECK(rel_err(of, o) < tol);
  }
  SECTION("attention") {
    // HS = 20 is a multiple of no vector strip width: exercises the kernels' leftover columns.
    const int HS = GENERATE(16, 20), NH = 4, NKV = 2, qs = NH * HS, ks = NKV * HS;
    const Vec q = r.randn((size_t)N * qs), k = r.randn((size_t)N * ks), v = r.randn((size_t)N * ks);
    const VecF qf = to_f(q), kf = to_f(k), vf = to_f(v);
    const Vec qd(qf.begin(), qf.end()), kd(kf.begin(), kf.end()), vd(vf.begin(), vf.end());
    Vec o((size_t)N * qs), l((size_t)B * NH * T);
    VecF of((size_t)N * qs), lf((size_t)B * NH * T);
    const float sc = 0.25f;
    attention_forward<double>(o.data(), l.data(), qd.data(), kd.data(), vd.data(), B, T, NH, NKV, HS, qs, ks, sc);
    attention_forward<float>(of.data(), lf.data(), qf.data(), kf.data(), vf.data(), B, T, NH, NKV, HS, qs, ks, sc);
    CHECK(rel_err(of, o) < tol);
    CHECK(rel_err(lf, l) < tol);
    const Vec dout = r.randn((size_t)N * qs);
    const VecF doutf = to_f(dout);
    const Vec doutd(doutf.begin(), doutf.end());
    Vec dq(q.size(), 0.0), dk(k.size(), 0.0), dv(v.size(), 0.0);
    VecF dqf(q.size(), 0.f), dkf(k.size(), 0.f), dvf(v.size(), 0.f);
    attention_backward<double>(dq.data(), dk.data(), dv.data(), doutd.data(), qd.data(), kd.data(), vd.data(), o.data(), l.data(),
                               B, T, NH, NKV, HS, qs, ks, sc);
    attention_backward<float>(dqf.data(), dkf.data(), dvf.data(), doutf.data(), qf.data(), kf.data(), vf.data(), of.data(),
                              lf.data(), B, T, NH, NKV, HS, qs, ks, sc);
    CHECK(rel_err(dqf, dq) < tol);
    CHECK(rel_err(dkf, dk) < tol);
    CHECK(rel_err(dvf, dv) < tol);
  }
  SECTION("softmax_xent") {
    const int Vr = 501, Vpad = 512;  // 501: a vector-width leftover in the fp32 row loops
    Vec lg = r.randn((size_t)N * Vpad, 3.0);
    for (int n = 0; n < N; n += 3) lg[(size_t)n * Vpad + 7] = 40.0;  // rows whose other logits are e^-40 small
    for (int n = 1; n < N; n += 3) lg[(size_t)n * Vpad + 7] = -120.0; // an entry whose e^x underflows
    const VecF lgf = to_f(lg);
    const Vec lgd(lgf.begin(), lgf.end());
    std::vector<int32_t> tg(N);
    for (auto& t : tg) t = r.integer(-1, Vr - 1);
    Vec ls(N), dl((size_t)N * Vpad), dls(N, 1.0 / N);
    VecF lsf(N), dlf((size_t)N * Vpad), dlsf(N, 1.0f / N);
    softmax_xent_forward<double>(ls.data(), lgd.data(), tg.data(), N, Vr, Vpad);
    softmax_xent_forward<float>(lsf.data(), lgf.data(), tg.data(), N, Vr, Vpad);
    CHECK(rel_err(lsf, ls) < tol);
    softmax_xent_backward<double>(dl.data(), lgd.data(), tg.data(), dls.data(), N, Vr, Vpad);
    softmax_xent_backward<float>(dlf.data(), lgf.data(), tg.data(), dlsf.data(), N, Vr, Vpad);
    CHECK(rel_err(dlf, dl) < tol);
  }
}

// ------------------------------------------------------------------------------------------------
TEST_CASE("results are bitwise identical for 1, 2 and 3 OpenMP threads", "[ops]") {
  ThreadCount restore;
  Rng r(16);
  const int B = 2, T = 48, N = B * T, C = 300, OC = 130;
  const VecF x = to_f(r.randn((size_t)N * C)), w = to_f(r.randn((size_t)OC * C, 0.05)), bias = to_f(r.randn(OC)),
             dout = to_f(r.randn((size_t)N * OC));
  const int NH = 4, NKV = 2, HS = 16, qs = NH * HS + 5, ks = NKV * HS + 3;
  const VecF q = to_f(r.randn((size_t)N * qs)), k = to_f(r.randn((size_t)N * ks)), v = to_f(r.randn((size_t)N * ks)),
             datt = to_f(r.randn((size_t)N * NH * HS));
  const VecF lnw = to_f(r.randn(C, 0.3, 1.0)), gC = to_f(r.randn((size_t)N * C));
  std::vector<int32_t> tok(N);
  for (auto& t : tok) t = r.integer(0, 20);

  struct Result {
    std::vector<VecF> bufs;
  };
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    Result res;
    VecF out((size_t)N * OC), dx((size_t)N * C, 0.5f), dw((size_t)OC * C, 0.25f), db(OC, 0.f);
    matmul_forward<float>(out.data(), x.data(), w.data(), bias.data(), N, C, OC);
    matmul_backward<float>(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), N, C, OC);
    VecF ao((size_t)N * NH * HS), lse((size_t)B * NH * T), dq(q.size(), 0.f), dk(k.size(), 0.f), dv(v.size(), 0.f);
    attention_forward<float>(ao.data(), lse.data(), q.data(), k.data(), v.data(), B, T, NH, NKV, HS, qs, ks, 0.25f);
    attention_backward<float>(dq.data(), dk.data(), dv.data(), datt.data(), q.data(), k.data(), v.data(), ao.data(),
                              lse.data(), B, T, NH, NKV, HS, qs, ks, 0.25f);
    VecF lo((size_t)N * C), m(N), rs(N), lx((size_t)N * C, 0.f), lw(C, 0.f), lb(C, 0.f), dwte((size_t)21 * C, 0.f),
        dwpe((size_t)T * C, 0.f);
    layernorm_forward<float>(lo.data(), m.data(), rs.data(), x.data(), lnw.data(), lnw.data(), N, C, 1e-5f);
    layernorm_backward<float>(lx.data(), lw.data(), lb.data(), gC.data(), x.data(), lnw.data(), m.data(), rs.data(), N, C);
    embedding_backward<float>(dwte.data(), dwpe.data(), gC.data(), tok.data(), B, T, C);
    res.bufs = {out, dx, dw, db, ao, lse, dq, dk, dv, lo, lx, lw, lb, dwte, dwpe};
    return res;
  };
  const Result one = run(1), two = run(2), three = run(3);
  const char* names[] = {"matmul out", "matmul dinp", "matmul dweight", "matmul dbias", "attention out", "attention lse",
                         "attention dq", "attention dk", "attention dv", "layernorm out", "layernorm dinp",
                         "layernorm dweight", "layernorm dbias", "embedding dwte", "embedding dwpe"};
  for (size_t i = 0; i < one.bufs.size(); ++i) {
    INFO(names[i]);
    CHECK(bitwise_equal(one.bufs[i], two.bufs[i]));
    CHECK(bitwise_equal(one.bufs[i], three.bufs[i]));
  }
}
