// The exact polar factor on the CPU by QDWH (Nakatsukasa, Bai & Gygi 2010) in double precision:
// PolarGrad's `polar: qdwh` and the reference the device QDWH (cuSOLVER + kernels/cuda/linalg.cu) is
// tested against. PolarGrad's step scale <M, U> is a plain Frobenius dot (cpu/linalg.h).
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/linalg.h"
#include "cpu/optim.h"
#include "llmtrain/error.h"

namespace llmtrain {

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

}  // namespace llmtrain
