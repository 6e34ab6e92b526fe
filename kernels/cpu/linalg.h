// Dense linear algebra for the optimizers, on the CPU: a cache-blocked GEMM (the workhorse of
// Newton-Schulz, QDWH and Newton-Muon), transposes, and the small factorizations the matrix
// methods need (Cholesky and its inverse, Householder QR, a one-sided Jacobi SVD used by tests and
// diagnostics). Everything is row-major. Parallel loops split over output rows (or independent
// columns) only, so every result is summed in one fixed order and does not depend on the number
// of OpenMP threads: optimizer updates, and therefore resumed runs, are bit-reproducible.
#pragma once
#include <cstdint>
#include <vector>

namespace llmtrain::linalg {

// C[m,n] = A[m,k] * B[k,n] (accumulate = false) or C += A * B (accumulate = true).
// lda/ldb/ldc are row strides. F is float or double.
template <typename F>
void gemm(int64_t m, int64_t n, int64_t k, const F* A, int64_t lda, const F* B, int64_t ldb, F* C, int64_t ldc,
          bool accumulate = false);

// Convenience for contiguous operands: C[m,n] = A[m,k] * B[k,n].
template <typename F>
inline void matmul(const F* A, const F* B, F* C, int64_t m, int64_t k, int64_t n) {
  gemm<F>(m, n, k, A, k, B, n, C, n, false);
}

// At[n,m] = A[m,n]^T.
template <typename F>
void transpose(const F* A, F* At, int64_t m, int64_t n);

// Frobenius norm and inner product, accumulated in double in index order.
template <typename F>
double frobenius_norm(const F* A, int64_t numel);
template <typename F>
double frobenius_dot(const F* A, const F* B, int64_t numel);

// In-place Cholesky A = L L^T of a symmetric positive definite [n,n] matrix (lower triangle of A
// is read and overwritten with L; the strict upper triangle is zeroed). False if a pivot is not
// positive (A is not numerically positive definite).
bool cholesky(double* A, int64_t n);
// Ainv = (L L^T)^{-1} from the Cholesky factor L.
void cholesky_inverse(const double* L, double* Ainv, int64_t n);

// Thin Householder QR of A [m,n], m >= n: A = Q R with Q [m,n] (orthonormal columns) and R [n,n]
// upper triangular (R may be null).
void householder_qr(const double* A, int64_t m, int64_t n, double* Q, double* R);

// Thin SVD by one-sided Jacobi (accurate, O(mn min(m,n)) per sweep; for tests and small matrices):
// A [m,n] = U diag(S) V^T with r = min(m,n), U [m,r], V [n,r], S descending.
struct Svd {
  int64_t m = 0, n = 0, r = 0;
  std::vector<double> U, S, V;
};
Svd svd_jacobi(const double* A, int64_t m, int64_t n);

}  // namespace llmtrain::linalg
