// Orthogonalization on the CPU: the approximate polar factor msgn(X) = U V^T (X = U S V^T) by
// quintic Newton-Schulz iterations with named coefficient sets, the exact polar factor by QDWH,
// the low-rank sketch used by low-rank Muon, and row normalization (RMNP). fp32 matrices,
// row-major [rows, cols]; every function is deterministic and thread-count independent.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "llmtrain/rng.h"

namespace llmtrain {

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

// out [m,n] = the polar factor U V^T of G by the QDWH iteration (Nakatsukasa, Bai & Gygi 2010) in
// double precision: converges to machine precision in at most ~6 iterations for any condition
// number; zero singular values stay zero (out is then the partial isometry on G's range).
void polar_qdwh(const float* G, int64_t m, int64_t n, float* out);

// Low-rank orthogonalization: Q [m,k] = orthonormal basis of the sampled columns X[:, idx] (thin
// Householder QR), out [m,n] = Q * NS(Q^T X) (= NS(Q Q^T X) in exact arithmetic: rank <= k).
// q_out [m,k] receives Q when not null.
void lowrank_orthogonalize(const float* X, int64_t m, int64_t n, const std::vector<int64_t>& idx,
                           const NsCoefficients& c, int steps, float* out, float* q_out = nullptr);
// k distinct column indices of [0, n) (partial Fisher-Yates on `rng`), sorted ascending.
std::vector<int64_t> sample_columns(Rng& rng, int64_t n, int64_t k);

// D [m,n]: each row of U divided by max(||row||_2, eps) (RMNP). D may alias U.
void normalize_rows(const float* U, int64_t m, int64_t n, float eps, float* D);

}  // namespace llmtrain
