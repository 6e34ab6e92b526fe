// Orthogonalization kernels (see newton_schulz.h): Newton-Schulz in fp32 on the short side with
// the blocked GEMM, QDWH in double for exact polar factors, the low-rank sketch and RMNP's row
// normalization. Coefficient sets are the published ones; the table below says where each is from.
#include "optim/newton_schulz.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "llmtrain/error.h"
#include "optim/linalg.h"

namespace llmtrain {
namespace {

std::vector<std::array<double, 3>> polar_express_steps() {
  // Amsel, Persson, Musco & Gower (2025), "The Polar Express", Algorithm 1 (degree 5): the optimal
  // polynomial for each of the first seven steps, then the limit (1.875, -1.25, 0.375) repeats.
  // The first seven are divided by the safety factor 1.01 (a/1.01, b/1.01^3, c/1.01^5) so that
  // rounding cannot push singular values past the point where the next step would blow them up.
  const double raw[8][3] = {{8.28721201814563, -23.595886519098837, 17.300387312530933},
                            {4.107059111542203, -2.9478499167379106, 0.5448431082926601},
                            {3.9486908534822946, -2.908902115962949, 0.5518191394370137},
                            {3.3184196573706015, -2.488488024314874, 0.51004894012372},
                            {2.300652019954817, -1.6689039845747493, 0.4188073119525673},
                            {1.891301407787398, -1.2679958271945868, 0.37680408948524835},
                            {1.8750014808534479, -1.2500016453999487, 0.3750001645474248},
                            {1.875, -1.25, 0.375}};
  std::vector<std::array<double, 3>> s;
  const double f = 1.01;
  for (int i = 0; i < 7; ++i) s.push_back({raw[i][0] / f, raw[i][1] / (f * f * f), raw[i][2] / (f * f * f * f * f)});
  s.push_back({raw[7][0], raw[7][1], raw[7][2]});
  return s;
}

std::vector<NsCoefficients> make_sets() {
  std::vector<NsCoefficients> v;
  // Keller Jordan's quintic (Muon): slope 3.4445 at zero; singular values end up in ~[0.7, 1.2].
  v.push_back({"jordan5", {{3.4445, -4.7750, 2.0315}}, 5, 1.0});
  // The Polar Express also scales the Frobenius pre-normalization by the safety factor 1.01.
  v.push_back({"polar_express8", polar_express_steps(), 8, 1.01});
  v.push_back({"polar_express5", polar_express_steps(), 5, 1.01});
  // You Jiacheng's six steps (found by optimization, with @leloykun's stability loss).
  v.push_back({"you6",
               {{3955.0 / 1024, -8306.0 / 1024, 5008.0 / 1024},
                {3735.0 / 1024, -6681.0 / 1024, 3463.0 / 1024},
                {3799.0 / 1024, -6499.0 / 1024, 3211.0 / 1024},
                {4019.0 / 1024, -6385.0 / 1024, 2906.0 / 1024},
                {2677.0 / 1024, -3029.0 / 1024, 1162.0 / 1024},
                {2172.0 / 1024, -1833.0 / 1024, 682.0 / 1024}},
               6,
               1.0});
  return v;
}

const std::vector<NsCoefficients>& sets() {
  static const std::vector<NsCoefficients> s = make_sets();
  return s;
}

}  // namespace

const NsCoefficients& ns_coefficients(const std::string& name) {
  for (const auto& s : sets())
    if (s.name == name) return s;
  throw RuntimeError("unknown Newton-Schulz coefficient set '" + name + "'");
}

const std::vector<std::string>& ns_coefficient_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& s : sets()) n.push_back(s.name);
    return n;
  }();
  return names;
}

void newton_schulz(const float* G, int64_t m, int64_t n, const NsCoefficients& c, int steps, float* out) {
  if (steps <= 0) steps = c.default_steps;
  const bool tall = m > n;  // iterate on X X^T of the short side: s x s instead of l x l
  const int64_t s = tall ? n : m, l = tall ? m : n;
  std::vector<float> X((size_t)(s * l)), Xt((size_t)(l * s)), A((size_t)(s * s)), AA((size_t)(s * s)),
      BX((size_t)(s * l));
  if (tall)
    linalg::transpose(G, X.data(), m, n);
  else
    std::memcpy(X.data(), G, sizeof(float) * (size_t)(s * l));
  const float denom = (float)(c.norm_factor * linalg::frobenius_norm(X.data(), s * l) + 1e-7);
  for (auto& x : X) x /= denom;
  for (int t = 0; t < steps; ++t) {
    const auto& abc = c.steps[std::min<size_t>((size_t)t, c.steps.size() - 1)];
    const float a = (float)abc[0], b = (float)abc[1], cc = (float)abc[2];
    linalg::transpose(X.data(), Xt.data(), s, l);
    linalg::matmul(X.data(), Xt.data(), A.data(), s, l, s);  // A = X X^T
    linalg::matmul(A.data(), A.data(), AA.data(), s, s, s);  // A^2
    for (size_t i = 0; i < A.size(); ++i) A[i] = b * A[i] + cc * AA[i];
    linalg::matmul(A.data(), X.data(), BX.data(), s, s, l);  // (bA + cA^2) X
    for (size_t i = 0; i < X.size(); ++i) X[i] = a * X[i] + BX[i];
  }
  if (tall)
    linalg::transpose(X.data(), out, s, l);
  else
    std::memcpy(out, X.data(), sizeof(float) * (size_t)(s * l));
}

void polar_qdwh(const float* G, int64_t m, int64_t n, float* out) {
  // QDWH works on a tall matrix: X_{k+1} = X_k (a I + b X^T X)(I + c X^T X)^{-1} with dynamically
  // weighted (a, b, c) chosen from a lower bound l_k on the smallest singular value, which maps
  // [l_k, 1] as close to 1 as a rational function of this form can.
  const bool wide = m < n;
  const int64_t rows = wide ? n : m, cols = wide ? m : n;
  std::vector<double> X((size_t)(rows * cols));
  if (wide) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) X[j * m + i] = G[i * n + j];
  } else {
    for (int64_t i = 0; i < rows * cols; ++i) X[i] = G[i];
  }
  const double alpha = linalg::frobenius_norm(X.data(), rows * cols);  // >= ||G||_2
  if (!(alpha > 0)) {
    std::fill(out, out + m * n, 0.0f);
    return;
  }
  for (auto& x : X) x /= alpha;
  // A conservative lower bound: the iteration count depends on it only logarithmically (about
  // six iterations even for 1e-16), so no condition-number estimate is needed.
  double l = 1e-12;
  const double eps = 2.220446049250313e-16;
  std::vector<double> Xn((size_t)(rows * cols)), Xt((size_t)(cols * rows)), Z, Q, C((size_t)(cols * cols)),
      Cinv((size_t)(cols * cols));
  for (int it = 0; it < 40; ++it) {
    const double l2 = l * l;
    const double gam = std::cbrt(4.0 * (1.0 - l2) / (l2 * l2));
    const double sq = std::sqrt(1.0 + gam);
    const double a = sq + 0.5 * std::sqrt(8.0 - 4.0 * gam + 8.0 * (2.0 - l2) / (l2 * sq));
    const double b = (a - 1.0) * (a - 1.0) / 4.0;
    const double c = a + b - 1.0;
    if (c > 100) {
      // Early iterations (large c): QR of [sqrt(c) X; I] = [Q1; Q2] R gives the same update,
      // X_{k+1} = (b/c) X + (a - b/c)/sqrt(c) Q1 Q2^T, without forming the ill-conditioned
      // I + c X^T X.
      const int64_t zr = rows + cols;
      Z.assign((size_t)(zr * cols), 0.0);
      const double sc = std::sqrt(c);
      for (int64_t i = 0; i < rows * cols; ++i) Z[i] = sc * X[i];
      for (int64_t i = 0; i < cols; ++i) Z[(rows + i) * cols + i] = 1.0;
      Q.resize((size_t)(zr * cols));
      linalg::householder_qr(Z.data(), zr, cols, Q.data(), nullptr);
      std::vector<double> Q2t((size_t)(cols * cols));
      linalg::transpose(Q.data() + rows * cols, Q2t.data(), cols, cols);
      linalg::matmul(Q.data(), Q2t.data(), Xn.data(), rows, cols, cols);  // Q1 Q2^T
      const double w = (a - b / c) / sc;
      for (int64_t i = 0; i < rows * cols; ++i) Xn[i] = (b / c) * X[i] + w * Xn[i];
    } else {
      // Later iterations: Cholesky of I + c X^T X is well conditioned.
      linalg::transpose(X.data(), Xt.data(), rows, cols);
      linalg::matmul(Xt.data(), X.data(), C.data(), cols, rows, cols);
      for (int64_t i = 0; i < cols * cols; ++i) C[i] *= c;
      for (int64_t i = 0; i < cols; ++i) C[i * cols + i] += 1.0;
      if (!linalg::cholesky(C.data(), cols)) throw RuntimeError("QDWH: Cholesky of I + cX^TX failed");
      linalg::cholesky_inverse(C.data(), Cinv.data(), cols);
      linalg::matmul(X.data(), Cinv.data(), Xn.data(), rows, cols, cols);
      const double w = a - b / c;
      for (int64_t i = 0; i < rows * cols; ++i) Xn[i] = (b / c) * X[i] + w * Xn[i];
    }
    l = std::min(1.0, l * (a + b * l2) / (1.0 + c * l2));
    double diff = 0;
    for (int64_t i = 0; i < rows * cols; ++i) diff += (Xn[i] - X[i]) * (Xn[i] - X[i]);
    X.swap(Xn);
    // Nakatsukasa & Higham's stopping rule: cubic convergence makes the next step exact once
    // the change is below (5 eps)^(1/3) and l is 1 to working precision.
    if (std::sqrt(diff) <= std::cbrt(5 * eps) && 1.0 - l <= 5 * eps) break;
  }
  if (wide) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) out[i * n + j] = (float)X[j * m + i];
  } else {
    for (int64_t i = 0; i < rows * cols; ++i) out[i] = (float)X[i];
  }
}

std::vector<int64_t> sample_columns(Rng& rng, int64_t n, int64_t k) {
  std::vector<int64_t> perm((size_t)n);
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j = i + (int64_t)(rng.next_u64() % (uint64_t)(n - i));
    std::swap(perm[i], perm[j]);
  }
  perm.resize((size_t)k);
  std::sort(perm.begin(), perm.end());
  return perm;
}

void lowrank_orthogonalize(const float* X, int64_t m, int64_t n, const std::vector<int64_t>& idx,
                           const NsCoefficients& c, int steps, float* out, float* q_out) {
  const int64_t k = (int64_t)idx.size();
  if (k <= 0 || k > m) throw RuntimeError("lowrank_orthogonalize: rank must be in [1, rows]");
  std::vector<double> S((size_t)(m * k)), Qd((size_t)(m * k));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < k; ++j) S[i * k + j] = X[i * n + idx[j]];
  linalg::householder_qr(S.data(), m, k, Qd.data(), nullptr);
  std::vector<float> Q((size_t)(m * k)), Qt((size_t)(k * m)), P((size_t)(k * n));
  for (size_t i = 0; i < Q.size(); ++i) Q[i] = (float)Qd[i];
  linalg::transpose(Q.data(), Qt.data(), m, k);
  linalg::matmul(Qt.data(), X, P.data(), k, m, n);  // P = Q^T X: the sketch, k x n
  newton_schulz(P.data(), k, n, c, steps, P.data());
  linalg::matmul(Q.data(), P.data(), out, m, k, n);  // lift back: Q NS(Q^T X)
  if (q_out) std::memcpy(q_out, Q.data(), sizeof(float) * Q.size());
}

void normalize_rows(const float* U, int64_t m, int64_t n, float eps, float* D) {
#pragma omp parallel for schedule(static) if (m * n > (1 << 15))
  for (int64_t i = 0; i < m; ++i) {
    const float* u = U + i * n;
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += (double)u[j] * (double)u[j];
    const float d = std::max((float)std::sqrt(s), eps);
    float* o = D + i * n;
    for (int64_t j = 0; j < n; ++j) o[j] = u[j] / d;
  }
}

}  // namespace llmtrain
