// Newton-Schulz orthogonalization on the CPU, the reference the device iteration
// (kernels/cuda/newton_schulz.cu + cuBLASLt) is tested against: fp32 quintic steps on the short side
// with the blocked GEMM of cpu/linalg.h, and the published coefficient sets (the table below says
// where each is from).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/linalg.h"
#include "cpu/optim.h"
#include "llmtrain/error.h"

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

}  // namespace llmtrain
