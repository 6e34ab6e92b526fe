// The optimizers' math on the CPU, the reference of kernels/cuda/optim.h: AdamW's element update,
// the matrix methods' momentum rule and decoupled-decay update, RMNP's row normalisation, and the
// orthogonalizations (Newton-Schulz with named coefficient sets, the exact polar factor by QDWH,
// low-rank Muon's sketch). One file per optimizer in kernels/cpu/, the same base names as the device
// kernels. fp32, row-major [rows, cols] ([out, in] for weights); every function is deterministic
// and independent of the number of OpenMP threads, so resumed runs are bit-reproducible.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "llmtrain/rng.h"

namespace llmtrain {

// ---- AdamW (adamw.cpp): m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, w = w keep - step_size u,
// u = (m ibc1) / (sqrt(v ibc2) + eps), or m / (sqrt(v) + eps) when `uncorrected` (the caller folds
// the bias corrections into step_size). keep = 1 - lr wd, or 1 for roles without decay. ----
struct AdamArgs {
  float b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, ibc1 = 1, ibc2 = 1, step_size = 0, keep = 1;
  bool uncorrected = false;
};
void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, const AdamArgs& a);

// ---- momentum (momentum.cpp): the matrix methods' momentum rule and decoupled-decay update ----
//   ema: M = b M + (1 - b) G,  U = nesterov ? (1 - b) G + b M : M
//   sum: M = b M + G,          U = nesterov ? G + b M : M
struct MomentumRule {
  float beta = 0.95f;
  bool nesterov = true, sum_form = false;
  float next_m(float m, float g) const { return sum_form ? beta * m + g : beta * m + (1.0f - beta) * g; }
  // U from the updated M and the gradient that produced it.
  float u(float m, float g) const { return nesterov ? (sum_form ? g + beta * m : (1.0f - beta) * g + beta * m) : m; }
};
// m [n] updated in place from g; u [n] = U (may alias g, not m).
void momentum_update(const MomentumRule& r, float* m, const float* g, float* u, int64_t n);
// w = w keep - step d (keep = 1 - lr wd, step = lr scale).
void decay_update(float* w, const float* d, int64_t n, float keep, float step);

// ---- Newton-Schulz (newton_schulz.cpp) ----
// A named sequence of quintic steps X <- a X + b (X X^T) X + c (X X^T)^2 X.
struct NsCoefficients {
  std::string name;
  std::vector<std::array<double, 3>> steps;  // used in order; the last one repeats if more are asked
  int default_steps = 5;
  double norm_factor = 1.0;  // X0 = G / (norm_factor * ||G||_F + 1e-7)
};

// The sets: jordan5 (Keller Jordan's (3.4445, -4.7750, 2.0315), 5 steps), polar_express8 and
// polar_express5 (Amsel et al. 2025, Algorithm 1: per-step minimax coefficients with the 1.01
// safety factor, 8 or the first 5 steps), you6 (You Jiacheng's 6 steps). RuntimeError if unknown.
const NsCoefficients& ns_coefficients(const std::string& name);
const std::vector<std::string>& ns_coefficient_names();

// out [m,n] = NS(G [m,n]) with `steps` steps (<= 0: the set's default). Runs on the short side
// (a tall G is transposed first and the result transposed back). out may alias G.
void newton_schulz(const float* G, int64_t m, int64_t n, const NsCoefficients& c, int steps, float* out);

// ---- PolarGrad (polargrad.cpp) ----
// out [m,n] = the polar factor U V^T of G by the QDWH iteration (Nakatsukasa, Bai & Gygi 2010) in
// double precision: converges to machine precision in at most ~6 iterations for any condition
// number; zero singular values stay zero (out is then the partial isometry on G's range).
void polar_qdwh(const float* G, int64_t m, int64_t n, float* out);

// ---- low-rank Muon (lowrank_muon.cpp) ----
// Low-rank orthogonalization: Q [m,k] = orthonormal basis of the sampled columns X[:, idx] (thin
// Householder QR), out [m,n] = Q * NS(Q^T X) (= NS(Q Q^T X) in exact arithmetic: rank <= k).
// q_out [m,k] receives Q when not null.
void lowrank_orthogonalize(const float* X, int64_t m, int64_t n, const std::vector<int64_t>& idx,
                           const NsCoefficients& c, int steps, float* out, float* q_out = nullptr);
// k distinct column indices of [0, n) (partial Fisher-Yates on `rng`), sorted ascending.
std::vector<int64_t> sample_columns(Rng& rng, int64_t n, int64_t k);

// ---- RMNP (rmnp.cpp): D [m,n] = each row of U divided by max(||row||_2, eps). D may alias U. ----
void normalize_rows(const float* U, int64_t m, int64_t n, float eps, float* D);

}  // namespace llmtrain
