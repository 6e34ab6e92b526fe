// Dense linear algebra for the optimizers (see linalg.h). The GEMM is the usual three-level
// blocking: a KC x NC block of B and an MC x KC block of A are copied into contiguous slivers and
// an MR x NR register tile (GCC vector extensions: SSE2 in the default build, AVX2 picked at run
// time where the CPU has it) walks them. Threads own disjoint row blocks of C and each element is
// summed over the depth in ascending order, so the bits of C depend neither on the thread count
// nor on the vector width.
#include "cpu/linalg.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace llmtrain::linalg {
namespace {

constexpr int KC = 256;  // depth of one pass: an MR x KC sliver of A and KC x NR of B fit in L1
constexpr int NC = 512;  // columns of packed B kept in L2 across the row blocks of one thread
constexpr int MC = 48;   // rows per work item (a multiple of every MR below)

template <typename F, int VB>
struct Vec {
  typedef F type __attribute__((vector_size(VB)));
  static constexpr int L = VB / (int)sizeof(F);
};

template <typename F>
struct GemmArgs {
  int64_t m, n, k;
  const F* A;
  int64_t lda;
  const F* B;
  int64_t ldb;
  F* C;
  int64_t ldc;
  bool accumulate;
};

// tile[MR][NR] = sum_p Ap[p][:] (x) Bp[p][:] over p < kc, accumulated from zero in order. Each
// lane does the same multiply and add in the same order whatever the vector width, and the
// build has no FMA contraction (-std=c++17), so every instance gives the same bits.
template <typename F, int VB, int MR>
__attribute__((always_inline)) inline void micro_kernel(int kc, const F* __restrict Ap, const F* __restrict Bp,
                                                        F* __restrict tile) {
  using V = typename Vec<F, VB>::type;
  constexpr int L = Vec<F, VB>::L, NR = 2 * L;
  V c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = V{};
  for (int p = 0; p < kc; ++p) {
    V b0, b1;
    std::memcpy(&b0, Bp + (size_t)p * NR, sizeof(V));
    std::memcpy(&b1, Bp + (size_t)p * NR + L, sizeof(V));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const F a = Ap[(size_t)p * MR + i];
      c0[i] += a * b0;
      c1[i] += a * b1;
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    std::memcpy(tile + i * NR, &c0[i], sizeof(V));
    std::memcpy(tile + i * NR + L, &c1[i], sizeof(V));
  }
}

// The work of one thread inside gemm's parallel region (an orphaned "omp for" over row blocks, so
// this function can carry its own instruction-set target).
template <typename F, int VB, int MR>
__attribute__((always_inline)) inline void gemm_thread(const GemmArgs<F>& g) {
  constexpr int NR = 2 * Vec<F, VB>::L;
  const int64_t nblocks = (g.m + MC - 1) / MC;
  const int64_t ncmax = std::min<int64_t>(NC, g.n);
  std::vector<F> Bp((size_t)KC * (size_t)((ncmax + NR - 1) / NR * NR));
  std::vector<F> Ap((size_t)MC * KC);
  alignas(64) F tile[MR * NR];
#pragma omp for schedule(static)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t ic = blk * MC;
    const int mc = (int)std::min<int64_t>(MC, g.m - ic);
    if (!g.accumulate)
      for (int i = 0; i < mc; ++i) std::fill(g.C + (ic + i) * g.ldc, g.C + (ic + i) * g.ldc + g.n, F(0));
    for (int64_t jc = 0; jc < g.n; jc += NC) {
      const int nc = (int)std::min<int64_t>(NC, g.n - jc);
      for (int64_t pc = 0; pc < g.k; pc += KC) {
        const int kc = (int)std::min<int64_t>(KC, g.k - pc);
        // Pack B[pc:pc+kc, jc:jc+nc] as NR-column slivers [kc][NR], zero-padded.
        for (int jr = 0; jr < nc; jr += NR) {
          F* dst = Bp.data() + (size_t)jr * kc;
          const int nr = std::min(NR, nc - jr);
          for (int p = 0; p < kc; ++p) {
            const F* src = g.B + (pc + p) * g.ldb + jc + jr;
            F* d = dst + (size_t)p * NR;
            for (int j = 0; j < nr; ++j) d[j] = src[j];
            for (int j = nr; j < NR; ++j) d[j] = F(0);
          }
        }
        // Pack A[ic:ic+mc, pc:pc+kc] as MR-row slivers [kc][MR], zero-padded.
        for (int ir = 0; ir < mc; ir += MR) {
          F* dst = Ap.data() + (size_t)ir * kc;
          const int mr = std::min(MR, mc - ir);
          for (int i = 0; i < MR; ++i) {
            if (i < mr) {
              const F* src = g.A + (ic + ir + i) * g.lda + pc;
              for (int p = 0; p < kc; ++p) dst[(size_t)p * MR + i] = src[p];
            } else {
              for (int p = 0; p < kc; ++p) dst[(size_t)p * MR + i] = F(0);
            }
          }
        }
        for (int jr = 0; jr < nc; jr += NR) {
          const int nr = std::min(NR, nc - jr);
          for (int ir = 0; ir < mc; ir += MR) {
            const int mr = std::min(MR, mc - ir);
            micro_kernel<F, VB, MR>(kc, Ap.data() + (size_t)ir * kc, Bp.data() + (size_t)jr * kc, tile);
            F* c = g.C + (ic + ir) * g.ldc + jc + jr;
            for (int i = 0; i < mr; ++i)
              for (int j = 0; j < nr; ++j) c[i * g.ldc + j] += tile[i * NR + j];
          }
        }
      }
    }
  }
}

template <typename F>
void gemm_thread_base(const GemmArgs<F>& g) {
#if defined(__AVX__)
  gemm_thread<F, 32, 6>(g);
#else
  gemm_thread<F, 16, 4>(g);
#endif
}

#if defined(__x86_64__) && !defined(__AVX2__) && !defined(LLMTRAIN_OPTIM_GENERIC_ONLY)
#define LLMTRAIN_OPTIM_AVX2 1
// The same kernel with 256-bit vectors, chosen at run time on CPUs that have AVX2. Same bits as
// the portable instance (see micro_kernel), just twice as many lanes per instruction.
template <typename F>
__attribute__((target("avx2"))) void gemm_thread_avx2(const GemmArgs<F>& g) {
  gemm_thread<F, 32, 6>(g);
}
bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
#endif

}  // namespace

template <typename F>
void gemm(int64_t m, int64_t n, int64_t k, const F* A, int64_t lda, const F* B, int64_t ldb, F* C, int64_t ldc,
          bool accumulate) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(C + i * ldc, C + i * ldc + n, F(0));
    return;
  }
  const GemmArgs<F> g{m, n, k, A, lda, B, ldb, C, ldc, accumulate};
  // Small products are not worth a thread team (the bits are the same either way).
  const bool par = (double)m * (double)n * (double)k > 3.0e5 && m > MC;
  bool avx2 = false;
#ifdef LLMTRAIN_OPTIM_AVX2
  avx2 = have_avx2();
#endif
#pragma omp parallel if (par)
  {
#ifdef LLMTRAIN_OPTIM_AVX2
    if (avx2)
      gemm_thread_avx2<F>(g);
    else
#endif
      gemm_thread_base<F>(g);
  }
  (void)avx2;
}

template <typename F>
void transpose(const F* A, F* At, int64_t m, int64_t n) {
  constexpr int64_t TB = 32;
  const int64_t nb = (n + TB - 1) / TB;
#pragma omp parallel for schedule(static) if (m * n > (1 << 16))
  for (int64_t jb = 0; jb < nb; ++jb) {  // block of At's rows = A's columns: disjoint writes
    const int64_t j0 = jb * TB, j1 = std::min(n, j0 + TB);
    for (int64_t i0 = 0; i0 < m; i0 += TB) {
      const int64_t i1 = std::min(m, i0 + TB);
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < i1; ++i) At[j * m + i] = A[i * n + j];
    }
  }
}

template <typename F>
double frobenius_norm(const F* A, int64_t numel) {
  double s = 0;
  for (int64_t i = 0; i < numel; ++i) s += (double)A[i] * (double)A[i];
  return std::sqrt(s);
}

template <typename F>
double frobenius_dot(const F* A, const F* B, int64_t numel) {
  double s = 0;
  for (int64_t i = 0; i < numel; ++i) s += (double)A[i] * (double)B[i];
  return s;
}

bool cholesky(double* A, int64_t n) {
  // Left-looking by columns: column j of L needs only columns < j, and its entries below the
  // diagonal are independent dot products (one per row, each summed by one thread).
  for (int64_t j = 0; j < n; ++j) {
    const double* Lj = A + j * n;
    double s = A[j * n + j];
    for (int64_t p = 0; p < j; ++p) s -= Lj[p] * Lj[p];
    if (!(s > 0) || !std::isfinite(s)) return false;
    const double d = std::sqrt(s);
    A[j * n + j] = d;
#pragma omp parallel for schedule(static) if ((n - j) * j > 4000000)
    for (int64_t i = j + 1; i < n; ++i) {
      const double* Li = A + i * n;
      double t = A[i * n + j];
      for (int64_t p = 0; p < j; ++p) t -= Li[p] * Lj[p];
      A[i * n + j] = t / d;
    }
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) A[i * n + j] = 0;
  return true;
}

void cholesky_inverse(const double* L, double* Ainv, int64_t n) {
  // Linv by forward substitution, one column of the identity per work item; then
  // Ainv = Linv^T Linv.
  std::vector<double> Linv((size_t)(n * n), 0.0);
#pragma omp parallel
  {
    std::vector<double> x((size_t)n);
#pragma omp for schedule(dynamic, 8)
    for (int64_t c = 0; c < n; ++c) {
      x[c] = 1.0 / L[c * n + c];
      for (int64_t i = c + 1; i < n; ++i) {
        const double* Li = L + i * n;
        double s = 0;
        for (int64_t p = c; p < i; ++p) s += Li[p] * x[p];
        x[i] = -s / Li[i];
      }
      for (int64_t i = c; i < n; ++i) Linv[i * n + c] = x[i];
    }
  }
  std::vector<double> LinvT((size_t)(n * n));
  transpose(Linv.data(), LinvT.data(), n, n);
  matmul(LinvT.data(), Linv.data(), Ainv, n, n, n);
}

void householder_qr(const double* A, int64_t m, int64_t n, double* Q, double* R) {
  // Blocked Householder (LAPACK's dgeqrf shape): a panel of NB columns is reduced with single
  // reflectors H_j = I - tau_j v_j v_j^T, which are then gathered into one block reflector
  // H_j0 ... H_j0+nb-1 = I - V T V^T (T upper triangular) and applied to the trailing columns
  // with GEMMs. Row-major work copy; the in-panel updates are axpys along rows.
  constexpr int64_t NB = 32;
  std::vector<double> W(A, A + m * n);
  std::vector<double> V((size_t)(m * n), 0.0);  // column j holds v_j in rows j..m-1
  std::vector<double> tau((size_t)n, 0.0), diag((size_t)n, 0.0), s((size_t)NB);
  std::vector<std::vector<double>> Ts;  // one T per panel
  auto block = [&](int64_t j0, int64_t jb, std::vector<double>& Vp) {
    // Vp [m - j0, jb] = the panel's reflectors, contiguous.
    const int64_t mr = m - j0;
    Vp.assign((size_t)(mr * jb), 0.0);
    for (int64_t i = 0; i < mr; ++i)
      for (int64_t c = 0; c < jb; ++c) Vp[i * jb + c] = V[(j0 + i) * n + j0 + c];
  };
  // C[mr, nc] (row stride ldc) -= Vp [mr, jb] * (Tm [jb, jb] * (Vp^T C)), with Tm = T or T^T.
  auto apply_block = [&](const std::vector<double>& Vp, const std::vector<double>& Tm, int64_t mr, int64_t jb,
                         double* C, int64_t ldc, int64_t nc) {
    if (nc <= 0) return;
    std::vector<double> Vt((size_t)(jb * mr)), Y((size_t)(jb * nc)), Y2((size_t)(jb * nc)), D((size_t)(mr * nc));
    transpose(Vp.data(), Vt.data(), mr, jb);
    gemm<double>(jb, nc, mr, Vt.data(), mr, C, ldc, Y.data(), nc);
    gemm<double>(jb, nc, jb, Tm.data(), jb, Y.data(), nc, Y2.data(), nc);
    gemm<double>(mr, nc, jb, Vp.data(), jb, Y2.data(), nc, D.data(), nc);
#pragma omp parallel for schedule(static) if (mr * nc > (1 << 16))
    for (int64_t i = 0; i < mr; ++i)
      for (int64_t c = 0; c < nc; ++c) C[i * ldc + c] -= D[i * nc + c];
  };
  std::vector<double> Vp;
  for (int64_t j0 = 0; j0 < n; j0 += NB) {
    const int64_t jb = std::min(NB, n - j0), pend = j0 + jb;
    for (int64_t j = j0; j < pend; ++j) {
      double nrm2 = 0;
      for (int64_t i = j; i < m; ++i) nrm2 += W[i * n + j] * W[i * n + j];
      const double nrm = std::sqrt(nrm2);
      if (nrm == 0) continue;  // nothing to annihilate: H = I (tau 0, v 0)
      const double alpha = W[j * n + j];
      const double beta = alpha >= 0 ? -nrm : nrm;  // avoids cancellation in alpha - beta
      for (int64_t i = j; i < m; ++i) V[i * n + j] = W[i * n + j];
      V[j * n + j] = alpha - beta;  // v = x - beta e1
      tau[j] = 2.0 / (nrm2 - alpha * alpha + V[j * n + j] * V[j * n + j]);
      diag[j] = beta;
      // Rest of the panel: W[j:, j+1:pend] -= tau v (v^T W[j:, j+1:pend]).
      const int64_t lo = j + 1, w = pend - lo;
      if (w <= 0) continue;
      std::fill(s.begin(), s.end(), 0.0);
      for (int64_t i = j; i < m; ++i) {
        const double vi = V[i * n + j];
        for (int64_t c = 0; c < w; ++c) s[c] += vi * W[i * n + lo + c];
      }
      for (int64_t c = 0; c < w; ++c) s[c] *= tau[j];
      for (int64_t i = j; i < m; ++i) {
        const double vi = V[i * n + j];
        for (int64_t c = 0; c < w; ++c) W[i * n + lo + c] -= vi * s[c];
      }
    }
    // T: T[c][c] = tau_c, T[0:c, c] = -tau_c T[0:c, 0:c] (V[:, 0:c]^T v_c) (dlarft, forward).
    std::vector<double> T((size_t)(jb * jb), 0.0), z((size_t)jb);
    for (int64_t c = 0; c < jb; ++c) {
      const int64_t jc = j0 + c;
      T[c * jb + c] = tau[jc];
      for (int64_t r = 0; r < c; ++r) {
        double d = 0;
        for (int64_t i = jc; i < m; ++i) d += V[i * n + j0 + r] * V[i * n + jc];
        z[r] = d;
      }
      for (int64_t r = 0; r < c; ++r) {
        double d = 0;
        for (int64_t q = r; q < c; ++q) d += T[r * jb + q] * z[q];
        T[r * jb + c] = -tau[jc] * d;
      }
    }
    Ts.push_back(T);
    if (pend < n) {  // trailing columns: W <- (I - V T V^T)^T W = W - V T^T V^T W
      block(j0, jb, Vp);
      std::vector<double> Tt((size_t)(jb * jb));
      transpose(T.data(), Tt.data(), jb, jb);
      apply_block(Vp, Tt, m - j0, jb, W.data() + j0 * n + pend, n, n - pend);
    }
  }
  if (R) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < n; ++c) R[i * n + c] = c > i ? W[i * n + c] : (c == i ? diag[i] : 0.0);
  }
  // Thin Q = H_0 ... H_{n-1} [I; 0], panels applied last to first; the columns left of a panel
  // are still unit vectors above it and so untouched.
  std::fill(Q, Q + m * n, 0.0);
  for (int64_t c = 0; c < n; ++c) Q[c * n + c] = 1.0;
  const int64_t npanels = (n + NB - 1) / NB;
  for (int64_t p = npanels - 1; p >= 0; --p) {
    const int64_t j0 = p * NB, jb = std::min(NB, n - j0);
    block(j0, jb, Vp);
    apply_block(Vp, Ts[(size_t)p], m - j0, jb, Q + j0 * n + j0, n, n - j0);
  }
}

Svd svd_jacobi(const double* A, int64_t m, int64_t n) {
  // One-sided Jacobi on the columns of the tall orientation: rotate column pairs until all are
  // mutually orthogonal; then the column norms are the singular values.
  const bool tr = m < n;
  const int64_t rows = tr ? n : m, cols = tr ? m : n;
  std::vector<double> W((size_t)(rows * cols));  // column-major: column c at W[c*rows]
  if (tr) {
    std::memcpy(W.data(), A, sizeof(double) * (size_t)(rows * cols));  // columns of A^T = rows of A
  } else {
    transpose(A, W.data(), m, n);
  }
  std::vector<double> V((size_t)(cols * cols), 0.0);  // column-major
  for (int64_t c = 0; c < cols; ++c) V[c * cols + c] = 1.0;
  for (int sweep = 0; sweep < 100; ++sweep) {
    bool rotated = false;
    for (int64_t p = 0; p < cols - 1; ++p) {
      for (int64_t q = p + 1; q < cols; ++q) {
        double* wp = W.data() + p * rows;
        double* wq = W.data() + q * rows;
        double a = 0, b = 0, g = 0;
        for (int64_t i = 0; i < rows; ++i) {
          a += wp[i] * wp[i];
          b += wq[i] * wq[i];
          g += wp[i] * wq[i];
        }
        if (a == 0 || b == 0 || std::fabs(g) <= 1e-15 * std::sqrt(a * b)) continue;
        rotated = true;
        const double zeta = (b - a) / (2 * g);
        const double t = (zeta >= 0 ? 1.0 : -1.0) / (std::fabs(zeta) + std::sqrt(1 + zeta * zeta));
        const double c = 1 / std::sqrt(1 + t * t), s = c * t;
        for (int64_t i = 0; i < rows; ++i) {
          const double x = wp[i], y = wq[i];
          wp[i] = c * x - s * y;
          wq[i] = s * x + c * y;
        }
        double* vp = V.data() + p * cols;
        double* vq = V.data() + q * cols;
        for (int64_t i = 0; i < cols; ++i) {
          const double x = vp[i], y = vq[i];
          vp[i] = c * x - s * y;
          vq[i] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  std::vector<double> sig((size_t)cols);
  for (int64_t c = 0; c < cols; ++c) sig[c] = std::sqrt(frobenius_dot(W.data() + c * rows, W.data() + c * rows, rows));
  std::vector<int64_t> order((size_t)cols);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return sig[x] > sig[y]; });
  Svd s;
  s.m = m;
  s.n = n;
  s.r = cols;
  s.S.resize((size_t)cols);
  std::vector<double> Ut((size_t)(rows * cols)), Vt((size_t)(cols * cols));  // row-major [rows,r], [cols,r]
  for (int64_t k = 0; k < cols; ++k) {
    const int64_t c = order[k];
    s.S[k] = sig[c];
    for (int64_t i = 0; i < rows; ++i) Ut[i * cols + k] = sig[c] > 0 ? W[c * rows + i] / sig[c] : 0.0;
    for (int64_t i = 0; i < cols; ++i) Vt[i * cols + k] = V[c * cols + i];
  }
  // Tall orientation: A = Ut S Vt^T. If we worked on A^T, swap the roles.
  if (tr) {
    s.U = std::move(Vt);
    s.V = std::move(Ut);
  } else {
    s.U = std::move(Ut);
    s.V = std::move(Vt);
  }
  return s;
}

template void gemm<float>(int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t,
                          bool);
template void gemm<double>(int64_t, int64_t, int64_t, const double*, int64_t, const double*, int64_t, double*,
                           int64_t, bool);
template void transpose<float>(const float*, float*, int64_t, int64_t);
template void transpose<double>(const double*, double*, int64_t, int64_t);
template double frobenius_norm<float>(const float*, int64_t);
template double frobenius_norm<double>(const double*, int64_t);
template double frobenius_dot<float>(const float*, const float*, int64_t);
template double frobenius_dot<double>(const double*, const double*, int64_t);

}  // namespace llmtrain::linalg
