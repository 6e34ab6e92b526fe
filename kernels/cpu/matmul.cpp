// Linear layer: out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias, and its backward. All three products
// (forward, dinp = dout @ weight, dweight = dout^T @ inp) go through one cache-blocked GEMM,
// C[i,j] += sum_p A(i,p) B(p,j) with A and B read through arbitrary strides, in the classic
// GotoBLAS shape: a KC x NC block of B and an MC x KC block of A are copied ("packed") into
// contiguous slivers, and a small MR x NR register tile walks them with vector multiply-adds.
// Vectors are GCC vector extensions, so the same source compiles to SSE2 in the default -O2 build
// and, on x86-64 CPUs that have them, to AVX2+FMA through a runtime-selected copy.
// Work is split over rows i only (rows of out / dinp, output channels of dweight): every output
// element is summed by one thread in a fixed order, so results never depend on the thread count.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

#include "cpu/ops.h"

namespace llmtrain::cpu {
namespace {

// KC bounds the depth of one pass so an MR x KC sliver of A and a KC x NR sliver of B sit in L1;
// MC rows of A (MR * kMicroTilesPerBlock) stay in L2 while all of B's slivers stream past them;
// NC columns of packed B (KC x NC) stay in L2/L3 across all row blocks.
constexpr int KC = 256;
constexpr int kMicroTilesPerBlock = 8;
constexpr int NC = 1024;

template <typename F, int VB>
struct Vec {
  typedef F type __attribute__((vector_size(VB)));
  static constexpr int L = VB / (int)sizeof(F);
};

// One GEMM: C[i*ldc + j] += sum_p A[i*a_is + p*a_ps] * B[p*b_ps + j*b_js]; i < m, j < n, p < k.
template <typename F>
struct Gemm {
  int m, n, k;
  const F* A;
  std::ptrdiff_t a_is, a_ps;
  const F* B;
  std::ptrdiff_t b_ps, b_js;
  F* C;
  std::ptrdiff_t ldc;
};

// Register tile: MR rows x NR = 2 vectors of columns, accumulated from zero over kc steps.
// Ap holds the sliver as [kc][MR], Bp as [kc][NR]; both are contiguous.
template <typename F, int VB, int MR>
__attribute__((always_inline)) inline void micro_kernel(int kc, const F* __restrict Ap, const F* __restrict Bp,
                                                        F* __restrict tile) {
  using V = typename Vec<F, VB>::type;
  constexpr int L = Vec<F, VB>::L, NR = 2 * L;
  V acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = V{};
  for (int p = 0; p < kc; ++p) {
    V b0, b1;
    std::memcpy(&b0, Bp + (std::ptrdiff_t)p * NR, sizeof(V));
    std::memcpy(&b1, Bp + (std::ptrdiff_t)p * NR + L, sizeof(V));
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const F a = Ap[(std::ptrdiff_t)p * MR + i];
      acc0[i] += a * b0;
      acc1[i] += a * b1;
    }
  }
  for (int i = 0; i < MR; ++i) {
    std::memcpy(tile + i * NR, &acc0[i], sizeof(V));
    std::memcpy(tile + i * NR + L, &acc1[i], sizeof(V));
  }
}

// Copy rows [i0, i0+mc) x depth [p0, p0+kc) of A into MR-row slivers, zero-padding the last one
// so the kernel never needs an edge case (padded rows are computed and then dropped).
template <typename F, int MR>
__attribute__((always_inline)) inline void pack_a(const Gemm<F>& g, int i0, int mc, int p0, int kc, F* Ap) {
  for (int ir = 0; ir < mc; ir += MR) {
    F* dst = Ap + (std::ptrdiff_t)ir * kc;
    const int mr = std::min(MR, mc - ir);
    if (g.a_is == 1 && mr == MR) {  // columns of A are contiguous (A = dout^T): walk depth outside
      const F* src = g.A + (std::ptrdiff_t)(i0 + ir) + (std::ptrdiff_t)p0 * g.a_ps;
      for (int p = 0; p < kc; ++p)
        for (int i = 0; i < MR; ++i) dst[p * MR + i] = src[p * g.a_ps + i];
      continue;
    }
    for (int i = 0; i < MR; ++i) {
      if (i >= mr) {
        for (int p = 0; p < kc; ++p) dst[p * MR + i] = F(0);
        continue;
      }
      const F* src = g.A + (std::ptrdiff_t)(i0 + ir + i) * g.a_is + (std::ptrdiff_t)p0 * g.a_ps;
      for (int p = 0; p < kc; ++p) dst[p * MR + i] = src[p * g.a_ps];
    }
  }
}

// Copy depth [p0, p0+kc) x columns [j0, j0+nr) of B into one NR-column sliver, zero-padded.
template <typename F, int NR>
__attribute__((always_inline)) inline void pack_b_sliver(const Gemm<F>& g, int p0, int kc, int j0, int nr, F* dst) {
  if (g.b_js == 1) {  // rows of B are contiguous: copy row by row
    for (int p = 0; p < kc; ++p) {
      const F* src = g.B + (std::ptrdiff_t)(p0 + p) * g.b_ps + j0;
      for (int j = 0; j < nr; ++j) dst[p * NR + j] = src[j];
      for (int j = nr; j < NR; ++j) dst[p * NR + j] = F(0);
    }
  } else {  // columns are contiguous (B is a transposed weight): walk each column
    for (int j = 0; j < NR; ++j) {
      if (j >= nr) {
        for (int p = 0; p < kc; ++p) dst[p * NR + j] = F(0);
        continue;
      }
      const F* src = g.B + (std::ptrdiff_t)p0 * g.b_ps + (std::ptrdiff_t)(j0 + j) * g.b_js;
      for (int p = 0; p < kc; ++p) dst[p * NR + j] = src[p * g.b_ps];
    }
  }
}

// The rows [i0, i1) of C, computed by one thread from start to end. Each thread packs its own copy
// of B's blocks, so threads never wait for one another (no barriers: an oversubscribed machine
// cannot stall the whole team), at the price of packing B once per thread, O(k n) against the
// O(m k n / threads) of the products.
template <typename F, int VB, int MR>
__attribute__((always_inline)) inline void gemm_rows(const Gemm<F>& g, int i0, int i1, F* Bp, F* Ap) {
  constexpr int NR = 2 * Vec<F, VB>::L;
  constexpr int MC = MR * kMicroTilesPerBlock;
  alignas(64) F tile[MR * NR];
  for (int jc = 0; jc < g.n; jc += NC) {
    const int nc = std::min(NC, g.n - jc);
    for (int pc = 0; pc < g.k; pc += KC) {
      const int kc = std::min(KC, g.k - pc);
      for (int jr = 0; jr < nc; jr += NR)
        pack_b_sliver<F, NR>(g, pc, kc, jc + jr, std::min(NR, nc - jr), Bp + (std::ptrdiff_t)jr * kc);
      for (int ic = i0; ic < i1; ic += MC) {
        const int mc = std::min(MC, i1 - ic);
        pack_a<F, MR>(g, ic, mc, pc, kc, Ap);
        for (int jr = 0; jr < nc; jr += NR) {
          const int nr = std::min(NR, nc - jr);
          for (int ir = 0; ir < mc; ir += MR) {
            const int mr = std::min(MR, mc - ir);
            micro_kernel<F, VB, MR>(kc, Ap + (std::ptrdiff_t)ir * kc, Bp + (std::ptrdiff_t)jr * kc, tile);
            F* c = g.C + (std::ptrdiff_t)(ic + ir) * g.ldc + jc + jr;
            if (nr == NR) {  // full-width tile: a fixed trip count the compiler vectorises
              for (int i = 0; i < mr; ++i)
                for (int j = 0; j < NR; ++j) c[(std::ptrdiff_t)i * g.ldc + j] += tile[i * NR + j];
            } else {
              for (int i = 0; i < mr; ++i)
                for (int j = 0; j < nr; ++j) c[(std::ptrdiff_t)i * g.ldc + j] += tile[i * NR + j];
            }
          }
        }
      }
    }
  }
}

// Register tile height: 6 rows x 2 vectors = 12 accumulators, which fits the 16 vector registers
// of both SSE2 and AVX2.
constexpr int MR = 6;
constexpr int MC = MR * kMicroTilesPerBlock;  // rows per block, the unit of the split over threads

// The portable instance uses the widest vectors the build's flags allow.
#if defined(__AVX__)
constexpr int kBaseVB = 32;
#else
constexpr int kBaseVB = 16;
#endif

template <typename F>
void gemm_rows_base(const Gemm<F>& g, int i0, int i1, F* Bp, F* Ap) {
  gemm_rows<F, kBaseVB, MR>(g, i0, i1, Bp, Ap);
}

#if defined(__x86_64__) && !defined(__AVX2__) && !defined(LLMTRAIN_GEMM_GENERIC_ONLY)
#define LLMTRAIN_GEMM_AVX2 1
// Same source, compiled for AVX2+FMA: twice the vector width and fused multiply-adds. Selected at
// run time, so the default (portable) build still uses them on CPUs that have them.
__attribute__((target("avx2,fma"))) void gemm_rows_avx2(const Gemm<float>& g, int i0, int i1, float* Bp, float* Ap) {
  gemm_rows<float, 32, MR>(g, i0, i1, Bp, Ap);
}
__attribute__((target("avx2,fma"))) void gemm_rows_avx2(const Gemm<double>& g, int i0, int i1, double* Bp,
                                                         double* Ap) {
  gemm_rows<double, 32, MR>(g, i0, i1, Bp, Ap);
}
bool use_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

template <typename F>
void gemm_acc(const Gemm<F>& g) {
  if (g.m <= 0 || g.n <= 0 || g.k <= 0) return;
  bool avx2 = false;
#ifdef LLMTRAIN_GEMM_AVX2
  avx2 = use_avx2();
#endif
  // Packed buffers sized for the wider instance (NR = two 32-byte vectors).
  constexpr int NRmax = 64 / (int)sizeof(F);
  const size_t b_size = (size_t)KC * ((std::min(NC, g.n) + NRmax - 1) / NRmax * NRmax);
  const int nblocks = (g.m + MC - 1) / MC;
  // Tiny products are not worth waking the team (the result is the same either way).
  const bool par = (double)g.m * g.n * g.k > 32768.0 && nblocks > 1;
#pragma omp parallel if (par)
  {
    // Contiguous shares of whole row blocks: which thread computes a row never changes its value.
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int i0 = std::min(g.m, (int)((int64_t)nblocks * tid / nt) * MC);
    const int i1 = std::min(g.m, (int)((int64_t)nblocks * (tid + 1) / nt) * MC);
    if (i0 < i1) {
      std::vector<F> Bp(b_size), Ap((size_t)MC * KC);
#ifdef LLMTRAIN_GEMM_AVX2
      if (avx2)
        gemm_rows_avx2(g, i0, i1, Bp.data(), Ap.data());
      else
#endif
        gemm_rows_base<F>(g, i0, i1, Bp.data(), Ap.data());
    }
  }
  (void)avx2;
}

}  // namespace

template <typename F>
void matmul_forward(F* out, const F* inp, const F* weight, const F* bias, int N, int C, int OC) {
  // Start from the bias (or zero), then accumulate inp @ weight^T; B(p=c, j=o) = weight[o*C + c].
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    F* o = out + (std::ptrdiff_t)n * OC;
    for (int j = 0; j < OC; ++j) o[j] = bias ? bias[j] : F(0);
  }
  gemm_acc<F>({N, OC, C, inp, C, 1, weight, 1, C, out, OC});
}

template <typename F>
void matmul_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight, int N, int C,
                     int OC) {
  // dinp[n,c] += sum_o dout[n,o] weight[o,c]: rows of dinp are split across threads.
  if (dinp) gemm_acc<F>({N, C, OC, dout, OC, 1, weight, C, 1, dinp, C});
  // dweight[o,c] += sum_n dout[n,o] inp[n,c]: A = dout^T, so output channels are split.
  if (dweight) gemm_acc<F>({OC, C, N, dout, 1, OC, inp, C, 1, dweight, C});
  if (dbias) {
    // Column sums in double over a chunk of channels per thread, rows in order.
    constexpr int CH = 64;
#pragma omp parallel for schedule(static)
    for (int o0 = 0; o0 < OC; o0 += CH) {
      const int oe = std::min(OC, o0 + CH);
      double acc[CH] = {};
      for (int n = 0; n < N; ++n) {
        const F* d = dout + (std::ptrdiff_t)n * OC;
#pragma omp simd
        for (int o = o0; o < oe; ++o) acc[o - o0] += (double)d[o];
      }
      for (int o = o0; o < oe; ++o) dbias[o] += (F)acc[o - o0];
    }
  }
}

template void matmul_forward<float>(float*, const float*, const float*, const float*, int, int, int);
template void matmul_forward<double>(double*, const double*, const double*, const double*, int, int, int);
template void matmul_backward<float>(float*, float*, float*, const float*, const float*, const float*, int, int,
                                     int);
template void matmul_backward<double>(double*, double*, double*, const double*, const double*, const double*, int,
                                      int, int);

}  // namespace llmtrain::cpu
