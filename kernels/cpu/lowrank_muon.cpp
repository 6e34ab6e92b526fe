// Low-rank Muon's sketch on the CPU: k sampled columns, their orthonormal basis Q by Householder QR,
// and Q NS(Q^T X). The device twin gathers columns in kernels/cuda/lowrank_muon.cu and factors
// with cuSOLVER.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "cpu/linalg.h"
#include "cpu/optim.h"
#include "llmtrain/error.h"

namespace llmtrain {

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

}  // namespace llmtrain
