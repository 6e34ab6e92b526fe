// Causal multi-head self-attention with grouped key/value heads (GQA; GPT-2 is the case NKV = NH).
// Query head h reads kv head h / (NH / NKV). q, k and v are read through token strides, so GPT-2's
// fused qkv buffer is used in place. As in flash attention, only the output and the per-row
// log-sum-exp (lse) are kept: backward recomputes each probability as exp(scale q.k - lse), so no
// T x T matrix is ever stored; each thread keeps two R x T score blocks as scratch.
//
// Work is split over independent rows only: the forward and dq over blocks of R query rows
// (b, h, t-block), dk and dv over blocks of R key rows (b, kv head, s-block). That recomputes the
// scores once more in backward but needs no atomics or cross-thread sums, so results are bitwise
// independent of the thread count. Causal cost grows with the row index, so blocks are dealt
// round-robin (static, 1) for balance. Within a block everything is two small matrix products:
// `dots` (R fixed rows against a run of rows: scores) and `rows_times` (an R x n block of weights
// times n rows: outputs and gradients), both register-blocked with GCC vector extensions.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "cpu/ops.h"
#include "cpu/common.h"

namespace llmtrain::cpu {
namespace {
constexpr int R = 4;  // rows per block

using simd::hsum;
using simd::load;
using simd::store;
template <typename F>
using Vec = simd::Vec<F>;

// out[r * ldo + j] = a[r] . x_j with x_j = x + j * x_stride, for r < R and j < nx (HS-long rows).
// Two x rows per step share the loads of the R a rows.
template <typename F>
void dots(const F* const a[R], const F* x, std::ptrdiff_t x_stride, int nx, int HS, F* out, int ldo) {
  using V = typename Vec<F>::type;
  constexpr int L = Vec<F>::L;
  const int HSv = HS / L * L;
  int j = 0;
  for (; j + 2 <= nx; j += 2) {
    const F* x0 = x + (std::ptrdiff_t)j * x_stride;
    const F* x1 = x0 + x_stride;
    V acc0[R] = {}, acc1[R] = {};
    for (int i = 0; i < HSv; i += L) {
      const V u0 = load(x0 + i), u1 = load(x1 + i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const V ar = load(a[r] + i);
        acc0[r] += ar * u0;
        acc1[r] += ar * u1;
      }
    }
    for (int r = 0; r < R; ++r) {
      F s0 = hsum<F>(acc0[r]), s1 = hsum<F>(acc1[r]);
      for (int i = HSv; i < HS; ++i) {
        s0 += a[r][i] * x0[i];
        s1 += a[r][i] * x1[i];
      }
      out[r * ldo + j] = s0;
      out[r * ldo + j + 1] = s1;
    }
  }
  if (j < nx) {
    const F* x0 = x + (std::ptrdiff_t)j * x_stride;
    V acc0[R] = {};
    for (int i = 0; i < HSv; i += L) {
      const V u0 = load(x0 + i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc0[r] += load(a[r] + i) * u0;
    }
    for (int r = 0; r < R; ++r) {
      F s0 = hsum<F>(acc0[r]);
      for (int i = HSv; i < HS; ++i) s0 += a[r][i] * x0[i];
      out[r * ldo + j] = s0;
    }
  }
}

// out[r][i] += sum_{j < nx} P[r * ldp + j] * m_j[i] with m_j = m + j * m_stride, for r < nr, i < HS.
// Columns go in strips of two vectors whose R x 2 accumulators stay in registers over all j.
// Rows of P at or past nr must hold finite values (they are computed and dropped).
template <typename F>
void rows_times(const F* P, int ldp, const F* m, std::ptrdiff_t m_stride, int nx, int HS, F* const out[R], int nr) {
  using V = typename Vec<F>::type;
  constexpr int L = Vec<F>::L;
  int i = 0;
  for (; i + 2 * L <= HS; i += 2 * L) {
    V acc0[R] = {}, acc1[R] = {};
    for (int j = 0; j < nx; ++j) {
      const F* mj = m + (std::ptrdiff_t)j * m_stride + i;
      const V u0 = load(mj), u1 = load(mj + L);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const F p = P[r * ldp + j];
        acc0[r] += p * u0;
        acc1[r] += p * u1;
      }
    }
    for (int r = 0; r < nr; ++r) {
      store(out[r] + i, load(out[r] + i) + acc0[r]);
      store(out[r] + i + L, load(out[r] + i + L) + acc1[r]);
    }
  }
  for (; i < HS; ++i)  // leftover columns (HS not a multiple of two vectors)
    for (int r = 0; r < nr; ++r) {
      F s = 0;
      for (int j = 0; j < nx; ++j) s += P[r * ldp + j] * m[(std::ptrdiff_t)j * m_stride + i];
      out[r][i] += s;
    }
}

template <typename F>
inline void add_scaled(F* y, F c, const F* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += c * x[i];
}
}  // namespace

template <typename F>
void attention_forward(F* out, F* lse, const F* q, const F* k, const F* v, int B, int T, int NH, int NKV, int HS,
                       int q_stride, int kv_stride, float scale) {
  const int group = NH / NKV, nblk = (T + R - 1) / R;
  const std::ptrdiff_t QD = (std::ptrdiff_t)NH * HS;
  const F sc = (F)scale;
#pragma omp parallel
  {
    std::vector<F> S((size_t)R * T);     // scores, then probabilities, of the block's rows
    std::vector<F> acc((size_t)R * HS);  // the block's output rows
    F* ar[R];
    for (int r = 0; r < R; ++r) ar[r] = acc.data() + (std::ptrdiff_t)r * HS;
#pragma omp for collapse(3) schedule(static, 1)
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < NH; ++h)
        for (int blk = 0; blk < nblk; ++blk) {
          const int t0 = blk * R, nr = std::min(R, T - t0), tend = t0 + nr;  // rows t0..tend-1
          const F* kb = k + (std::ptrdiff_t)b * T * kv_stride + (std::ptrdiff_t)(h / group) * HS;
          const F* vb = v + (std::ptrdiff_t)b * T * kv_stride + (std::ptrdiff_t)(h / group) * HS;
          const F* qr[R];
          for (int r = 0; r < R; ++r)  // a short last block repeats its last row; extras are dropped
            qr[r] = q + ((std::ptrdiff_t)b * T + t0 + std::min(r, nr - 1)) * q_stride + (std::ptrdiff_t)h * HS;
          dots(qr, kb, kv_stride, tend, HS, S.data(), T);  // keys s < tend; row t keeps s <= t
          for (int r = 0; r < R; ++r) {
            F* e = S.data() + (size_t)r * T;
            const int t = t0 + r;
            if (r >= nr) {
              std::fill(e, e + tend, F(0));
              continue;
            }
            for (int s = 0; s <= t; ++s) e[s] *= sc;
            const F mx = simd::row_max(e, t + 1);
            const double sum = simd::exp_sum(e, mx, e, t + 1);  // e^(score - max), summed in double
            const F inv = (F)(1.0 / sum);
            for (int s = 0; s <= t; ++s) e[s] *= inv;
            std::fill(e + t + 1, e + tend, F(0));  // causal mask
            lse[((std::ptrdiff_t)b * NH + h) * T + t] = (F)((double)mx + std::log(sum));
          }
          std::fill(acc.begin(), acc.end(), F(0));
          rows_times(S.data(), T, vb, kv_stride, tend, HS, ar, nr);
          for (int r = 0; r < nr; ++r)
            std::copy(ar[r], ar[r] + HS, out + ((std::ptrdiff_t)b * T + t0 + r) * QD + (std::ptrdiff_t)h * HS);
        }
  }
}

// With p = softmax row, dp[s] = dout_t . v_s and Dt = sum_s p[s] dp[s] = dout_t . out_t, the score
// gradient is ds[s] = p[s] (dp[s] - Dt); then dq_t = scale sum_s ds[s] k_s,
// dk_s = scale sum_t ds[t,s] q_t and dv_s = sum_t p[t,s] dout_t.
template <typename F>
void attention_backward(F* dq, F* dk, F* dv, const F* dout, const F* q, const F* k, const F* v, const F* out,
                        const F* lse, int B, int T, int NH, int NKV, int HS, int q_stride, int kv_stride,
                        float scale) {
  const int group = NH / NKV, nblk = (T + R - 1) / R;
  const std::ptrdiff_t QD = (std::ptrdiff_t)NH * HS;
  const F sc = (F)scale;
  auto row = [&](int b, int t) { return (std::ptrdiff_t)b * T + t; };
  auto stat = [&](int b, int h, int t) { return ((std::ptrdiff_t)b * NH + h) * T + t; };

  // Dt per query row, summed in double: ds subtracts it from dp, where cancellation bites.
  std::vector<F> D((size_t)B * NH * T);
#pragma omp parallel for collapse(3) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int t = 0; t < T; ++t) {
        const F* d = dout + row(b, t) * QD + (std::ptrdiff_t)h * HS;
        const F* o = out + row(b, t) * QD + (std::ptrdiff_t)h * HS;
        double s = 0;
        for (int i = 0; i < HS; ++i) s += (double)d[i] * (double)o[i];
        D[stat(b, h, t)] = (F)s;
      }

#pragma omp parallel
  {
    std::vector<F> S((size_t)R * T), DP((size_t)R * T);  // scores and dout.v of the block
    std::vector<F> acc_k((size_t)R * HS), acc_v((size_t)R * HS);
    F *ak[R], *av[R];
    for (int r = 0; r < R; ++r) ak[r] = acc_k.data() + (std::ptrdiff_t)r * HS, av[r] = acc_v.data() + (std::ptrdiff_t)r * HS;

    if (dq) {
      // Query blocks: dq_t = scale sum_{s <= t} ds[t,s] k_s.
#pragma omp for collapse(3) schedule(static, 1)
      for (int b = 0; b < B; ++b)
        for (int h = 0; h < NH; ++h)
          for (int blk = 0; blk < nblk; ++blk) {
            const int t0 = blk * R, nr = std::min(R, T - t0), tend = t0 + nr;
            const F* kb = k + row(b, 0) * kv_stride + (std::ptrdiff_t)(h / group) * HS;
            const F* vb = v + row(b, 0) * kv_stride + (std::ptrdiff_t)(h / group) * HS;
            const F *qr[R], *dr[R];
            for (int r = 0; r < R; ++r) {
              const int t = t0 + std::min(r, nr - 1);
              qr[r] = q + row(b, t) * q_stride + (std::ptrdiff_t)h * HS;
              dr[r] = dout + row(b, t) * QD + (std::ptrdiff_t)h * HS;
            }
            dots(qr, kb, kv_stride, tend, HS, S.data(), T);
            dots(dr, vb, kv_stride, tend, HS, DP.data(), T);
            for (int r = 0; r < R; ++r) {  // S becomes ds, zero where masked or past the block
              F* s_r = S.data() + (size_t)r * T;
              const F* dp_r = DP.data() + (size_t)r * T;
              const int t = t0 + r, last = r < nr ? t : -1;
              const F L = r < nr ? lse[stat(b, h, t)] : F(0), Dt = r < nr ? D[stat(b, h, t)] : F(0);
              for (int s = 0; s <= last; ++s) s_r[s] *= sc;
              simd::exp_sum(s_r, L, s_r, last + 1);  // p = e^(scale q.k - lse)
              for (int s = 0; s <= last; ++s) s_r[s] *= dp_r[s] - Dt;
              std::fill(s_r + last + 1, s_r + tend, F(0));
            }
            std::fill(acc_k.begin(), acc_k.end(), F(0));
            rows_times(S.data(), T, kb, kv_stride, tend, HS, ak, nr);
            for (int r = 0; r < nr; ++r) add_scaled(dq + row(b, t0 + r) * q_stride + (std::ptrdiff_t)h * HS, sc, ak[r], HS);
          }
    }
    if (dk || dv) {
      // Key blocks: dk_s = scale sum ds[t,s] q_t and dv_s = sum p[t,s] dout_t over every query head
      // of the group and every query t >= s.
#pragma omp for collapse(3) schedule(static, 1)
      for (int b = 0; b < B; ++b)
        for (int kh = 0; kh < NKV; ++kh)
          for (int blk = nblk - 1; blk >= 0; --blk) {  // longest first, for balance
            const int s0 = blk * R, nr = std::min(R, T - s0), nt = T - s0;  // queries t = s0 .. T-1
            const F *kr[R], *vr[R];
            for (int r = 0; r < R; ++r) {
              const int s = s0 + std::min(r, nr - 1);
              kr[r] = k + row(b, s) * kv_stride + (std::ptrdiff_t)kh * HS;
              vr[r] = v + row(b, s) * kv_stride + (std::ptrdiff_t)kh * HS;
            }
            std::fill(acc_k.begin(), acc_k.end(), F(0));
            std::fill(acc_v.begin(), acc_v.end(), F(0));
            for (int h = kh * group; h < (kh + 1) * group; ++h) {
              const F* qs = q + row(b, s0) * q_stride + (std::ptrdiff_t)h * HS;
              const F* ds0 = dout + row(b, s0) * QD + (std::ptrdiff_t)h * HS;
              dots(kr, qs, q_stride, nt, HS, S.data(), T);
              dots(vr, ds0, QD, nt, HS, DP.data(), T);
              for (int r = 0; r < R; ++r) {  // S becomes ds and DP becomes p; zero where masked
                F* s_r = S.data() + (size_t)r * T;
                F* p_r = DP.data() + (size_t)r * T;
                const int first = r < nr ? r : nt;  // key s0 + r is seen by queries t >= s0 + r
                std::fill(s_r, s_r + first, F(0));
                std::fill(p_r, p_r + first, F(0));
                const F* L = lse + stat(b, h, s0);  // per query t = s0 + j
                const F* Dt = D.data() + stat(b, h, s0);
                for (int j = first; j < nt; ++j) s_r[j] = sc * s_r[j] - L[j];
                simd::exp_sum(s_r + first, F(0), s_r + first, nt - first);  // s_r now holds p
                for (int j = first; j < nt; ++j) {
                  const F p = s_r[j];
                  s_r[j] = p * (p_r[j] - Dt[j]);
                  p_r[j] = p;
                }
              }
              rows_times(S.data(), T, qs, q_stride, nt, HS, ak, nr);
              rows_times(DP.data(), T, ds0, QD, nt, HS, av, nr);
            }
            for (int r = 0; r < nr; ++r) {
              if (dk) add_scaled(dk + row(b, s0 + r) * kv_stride + (std::ptrdiff_t)kh * HS, sc, ak[r], HS);
              if (dv) add_scaled(dv + row(b, s0 + r) * kv_stride + (std::ptrdiff_t)kh * HS, F(1), av[r], HS);
            }
          }
    }
  }
}

template void attention_forward<float>(float*, float*, const float*, const float*, const float*, int, int, int, int,
                                       int, int, int, float);
template void attention_forward<double>(double*, double*, const double*, const double*, const double*, int, int, int,
                                        int, int, int, int, float);
template void attention_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                        const float*, const float*, const float*, int, int, int, int, int, int, int,
                                        float);
template void attention_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                         const double*, const double*, const double*, int, int, int, int, int, int,
                                         int, float);

}  // namespace llmtrain::cpu
