// Causal flash attention, forward and backward, on bf16 tensor cores (mma.sync m16n8k16, fp32
// accumulation) for head sizes 64 and 128, with grouped KV heads and the strided q/k/v layout of
// cpu::attention_forward (q [B,T,NH,HS] with q_stride between tokens; k, v [B,T,NKV,HS] with
// kv_stride; out dense [B,T,NH,HS]; lse [B,NH,T] in natural log). No T x T matrix ever exists.
//
// Forward (FlashAttention-2 style): a block of 4 warps owns 64 query rows of one (b, head), each
// warp 16 rows with its Q fragments in registers; K/V tiles of 64 keys stream through shared memory
// (cp.async, double-buffered); S = QK^T and the online softmax stay in registers (log2 domain), and
// P is fed straight back as the A operand of P.V (the m16n8 accumulator layout of two adjacent
// n-tiles is the m16k16 A layout). Causality: key tiles beyond the diagonal are never visited;
// the diagonal tile is masked element-wise. Heavy (late) query tiles are launched first.
//
// Backward, deterministic and atomic-free, in three launches:
//   1. D[b,h,t] = sum_d dO . O (fp32 into the caller's scratch).
//   2. dK/dV: a block owns 64 keys of one (b, kv head) and loops over the query heads of its GQA
//      group and over the query tiles at or after its keys, accumulating dK and dV in registers:
//      S^T = K Q^T, P^T = exp(S^T - lse), dP^T = V dO^T, dS^T = P^T (dP^T - D),
//      dV += P^T dO, dK += dS^T Q (times scale at the end).
//   3. dQ: a block owns 64 query rows of one (b, head) and loops over key tiles up to the diagonal:
//      S, P, dP = dO V^T, dS as above, dQ += dS K (times scale).
// S and dP are recomputed in both 2 and 3 (7 tile products instead of 5) in exchange for exact
// ownership of every output element: results are bitwise reproducible.
//
// Fragment loads use ldmatrix from shared tiles whose rows are padded by 8 bf16 (16 bytes), which
// puts the 8 row addresses of each 8x8 matrix in distinct bank groups (conflict-free). Rows past T
// are zero-filled on load and never stored.
#include <cmath>

#include "common.cuh"
#include "cuda/ops.h"

namespace llmtrain::cuda {
namespace {

constexpr int kThreads = 128;  // 4 warps, 16 rows each
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ================================ kernels ================================

// ---- PTX wrappers ----
// Under LLMTRAIN_CUDA_EMU (tests/emu: the kernels compiled by g++ for the CPU emulator) each
// wrapper calls the emulator's implementation of the same instruction instead of inline PTX.
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
#if defined(LLMTRAIN_CUDA_EMU)
  ::emu::cp_async16(smem, gmem, src_bytes);
#else
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem), "r"(src_bytes));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(LLMTRAIN_CUDA_EMU)
  ::emu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(LLMTRAIN_CUDA_EMU)
  ::emu::cp_async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) {
#if defined(LLMTRAIN_CUDA_EMU)
  ::emu::ldmatrix_x4(r, p, false);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* p) {
#if defined(LLMTRAIN_CUDA_EMU)
  ::emu::ldmatrix_x4(r, p, true);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
#endif
}
// D += A(16x16, row) * B(16x8, col), bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(LLMTRAIN_CUDA_EMU)
  ::emu::mma_m16n8k16_bf16(d, a, b0, b1);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}
__device__ __forceinline__ float ex2(float x) {
#if defined(LLMTRAIN_CUDA_EMU)
  return ::emu::ex2_approx_ftz(x);
#else
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
#endif
}
// Two floats -> one register of two bf16, the lower column in the low half (mma operand order).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// ---- fragment loads from a row-major shared tile with row stride LD (elements) ----
// A operand (16x16) rows row0.., cols col0..: a0 (r0-7,c0-7) a1 (r8-15,c0-7) a2 (r0-7,c8-15) a3.
__device__ __forceinline__ void lds_a(uint32_t (&a)[4], const bf16* s, int LD, int row0, int col0, int lane) {
  ldmatrix_x4(a, s + (row0 + (lane & 15)) * LD + col0 + (lane >> 4) * 8);
}
// B operand from a tile stored [n][k] (e.g. K[key][d] for S = Q K^T): 8 n-rows from row0; b[0..1]
// is the k-step at col0, b[2..3] the k-step at col0 + 16.
__device__ __forceinline__ void lds_b_nk(uint32_t (&b)[4], const bf16* s, int LD, int row0, int col0, int lane) {
  ldmatrix_x4(b, s + (row0 + (lane & 7)) * LD + col0 + (lane >> 3) * 8);
}
// B operand from a tile stored [k][n] (e.g. V[key][d] for P V): 16 k-rows from row0; b[0..1] is
// the n-tile at col0, b[2..3] the n-tile at col0 + 8 (transposing ldmatrix).
__device__ __forceinline__ void lds_b_kn(uint32_t (&b)[4], const bf16* s, int LD, int row0, int col0, int lane) {
  ldmatrix_x4_trans(b, s + (row0 + (lane & 15)) * LD + col0 + (lane >> 4) * 8);
}
// Accumulators of n-tiles 2kk, 2kk+1 (16 x 16 block) -> A operand of the next product.
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack_bf16x2(c0[0], c0[1]);
  a[1] = pack_bf16x2(c0[2], c0[3]);
  a[2] = pack_bf16x2(c1[0], c1[1]);
  a[3] = pack_bf16x2(c1[2], c1[3]);
}

// ROWS x HS tile starting at token row0 of a [T, *] strided head slice; rows >= T zero-filled.
template <int HS, int ROWS>
__device__ __forceinline__ void load_tile(bf16* s, const bf16* g, int row0, int T, int stride, int tid) {
  constexpr int LD = HS + 8, CPR = HS / 8;
#pragma unroll
  for (int i = tid; i < ROWS * CPR; i += kThreads) {
    const int r = i / CPR, c = (i % CPR) * 8;
    const int t = row0 + r;
    const bf16* src = g + static_cast<size_t>(t < T ? t : T - 1) * stride + c;
    cp_async16(s + r * LD + c, src, t < T ? 16 : 0);
  }
}

// Stores (or adds to) 16 rows x HS of fp32 accumulators as bf16 at rows row0 + {g, g+8}.
template <int HS>
__device__ __forceinline__ void store_rows(bf16* dst, int stride, int row0, int T, const float (&acc)[HS / 8][4],
                                           float mul0, float mul1, bool accumulate, int lane) {
  const int g = lane >> 2, tq = lane & 3;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = row0 + g + 8 * r;
    if (t >= T) continue;
    const float mul = r == 0 ? mul0 : mul1;
    bf16* p = dst + static_cast<size_t>(t) * stride + 2 * tq;
#pragma unroll
    for (int dn = 0; dn < HS / 8; ++dn) {
      float x0 = acc[dn][2 * r] * mul, x1 = acc[dn][2 * r + 1] * mul;
      __nv_bfloat162* q = reinterpret_cast<__nv_bfloat162*>(p + dn * 8);
      if (accumulate) {
        const __nv_bfloat162 old = *q;
        x0 += __bfloat162float(old.x);
        x1 += __bfloat162float(old.y);
      }
      *q = __floats2bfloat162_rn(x0, x1);
    }
  }
}

// ---------------------------------------------------------------- forward
template <int HS>
__global__ void __launch_bounds__(kThreads)
    attn_fwd_kernel(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int T, int NH, int NKV,
                    int q_stride, int kv_stride, float scale_log2) {
  constexpr int LD = HS + 8, BR = 64, BC = 64;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* Ks = Qs + BR * LD;      // [2][BC][LD]
  bf16* Vs = Ks + 2 * BC * LD;  // [2][BC][LD]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tq = lane & 3;
  const int qt = gridDim.x - 1 - blockIdx.x;
  const int b = blockIdx.y / NH, h = blockIdx.y % NH, hk = h / (NH / NKV);
  const int q0 = qt * BR;
  const bf16* qg = q + static_cast<size_t>(b) * T * q_stride + static_cast<size_t>(h) * HS;
  const bf16* kg = k + static_cast<size_t>(b) * T * kv_stride + static_cast<size_t>(hk) * HS;
  const bf16* vg = v + static_cast<size_t>(b) * T * kv_stride + static_cast<size_t>(hk) * HS;

  load_tile<HS, BR>(Qs, qg, q0, T, q_stride, tid);
  load_tile<HS, BC>(Ks, kg, 0, T, kv_stride, tid);
  load_tile<HS, BC>(Vs, vg, 0, T, kv_stride, tid);
  cp_async_commit();

  uint32_t qf[HS / 16][4];
  float o[HS / 8][4];
#pragma unroll
  for (int i = 0; i < HS / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int row_base = q0 + warp * 16 + g;  // rows row_base and row_base + 8

  const int nkv = qt + 1;
  for (int j = 0; j < nkv; ++j) {
    const int buf = j & 1;
    if (j + 1 < nkv) {
      load_tile<HS, BC>(Ks + (buf ^ 1) * BC * LD, kg, (j + 1) * BC, T, kv_stride, tid);
      load_tile<HS, BC>(Vs + (buf ^ 1) * BC * LD, vg, (j + 1) * BC, T, kv_stride, tid);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < HS / 16; ++kk) lds_a(qf[kk], Qs, LD, warp * 16, kk * 16, lane);
    }
    const bf16* Kb = Ks + buf * BC * LD;
    const bf16* Vb = Vs + buf * BC * LD;

    float s[BC / 8][4];
#pragma unroll
    for (int nt = 0; nt < BC / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
    for (int nt = 0; nt < BC / 8; ++nt) {
#pragma unroll
      for (int k2 = 0; k2 < HS / 32; ++k2) {
        uint32_t bk[4];
        lds_b_nk(bk, Kb, LD, nt * 8, k2 * 32, lane);
        mma16816(s[nt], qf[2 * k2], bk[0], bk[1]);
        mma16816(s[nt], qf[2 * k2 + 1], bk[2], bk[3]);
      }
    }
    const bool diag = j == qt;
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nt = 0; nt < BC / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[nt][e] * scale_log2;
        if (diag) {
          const int col = j * BC + nt * 8 + 2 * tq + (e & 1);
          const int row = row_base + (e >> 1) * 8;
          if (col > row) x = -INFINITY;
        }
        s[nt][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
    }
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      base[r] = mx[r] == -INFINITY ? 0.0f : mx[r];
      const float corr = ex2(m[r] - base[r]);  // 0 on the first tile (m = -inf)
      m[r] = mx[r];
      l[r] *= corr;
#pragma unroll
      for (int dn = 0; dn < HS / 8; ++dn) {
        o[dn][2 * r] *= corr;
        o[dn][2 * r + 1] *= corr;
      }
    }
#pragma unroll
    for (int nt = 0; nt < BC / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = ex2(s[nt][e] - base[e >> 1]);
        s[nt][e] = p;
        l[e >> 1] += p;
      }
    }
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      uint32_t pa[4];
      acc_to_a(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int d2 = 0; d2 < HS / 16; ++d2) {
        uint32_t bv[4];
        lds_b_kn(bv, Vb, LD, kk * 16, d2 * 16, lane);
        mma16816(o[2 * d2], pa, bv[0], bv[1]);
        mma16816(o[2 * d2 + 1], pa, bv[2], bv[3]);
      }
    }
    __syncthreads();  // the next iteration's prefetch overwrites this buffer
  }

  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    inv[r] = 1.0f / l[r];
    const int row = row_base + 8 * r;
    if (tq == 0 && row < T) lse[(static_cast<size_t>(b) * NH + h) * T + row] = (m[r] + log2f(l[r])) * kLn2;
  }
  bf16* og = out + static_cast<size_t>(b) * T * NH * HS + static_cast<size_t>(h) * HS;
  store_rows<HS>(og, NH * HS, q0 + warp * 16, T, o, inv[0], inv[1], false, lane);
}

// ---------------------------------------------------------------- backward: D = rowsum(dO * O)
template <int HS>
__global__ void attn_bwd_dsum_kernel(float* dsum, const bf16* dout, const bf16* out, int B, int T, int NH) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;  // over (b, t, h)
  if (idx >= static_cast<int64_t>(B) * T * NH) return;
  const int h = static_cast<int>(idx % NH);
  const int64_t bt = idx / NH;
  const int t = static_cast<int>(bt % T), b = static_cast<int>(bt / T);
  const bf16* po = out + idx * HS;
  const bf16* pd = dout + idx * HS;
  float acc = 0.0f;
#pragma unroll
  for (int c = 0; c < HS; c += 8) {
    float a[8], d[8];
    unpack8(load16(po + c), a);
    unpack8(load16(pd + c), d);
#pragma unroll
    for (int j = 0; j < 8; ++j) acc += a[j] * d[j];
  }
  dsum[(static_cast<size_t>(b) * NH + h) * T + t] = acc;
}

// ---------------------------------------------------------------- backward: dK, dV
template <int HS, int BQ>
__global__ void __launch_bounds__(kThreads)
    attn_bwd_dkdv_kernel(bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k, const bf16* v,
                         const float* lse, const float* dsum, int T, int NH, int NKV, int q_stride, int kv_stride,
                         float scale, float scale_log2, bool accumulate) {
  constexpr int LD = HS + 8, BKV = 64;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Ks = reinterpret_cast<bf16*>(smem_raw);
  bf16* Vs = Ks + BKV * LD;
  bf16* Qs = Vs + BKV * LD;      // [2][BQ][LD]
  bf16* dOs = Qs + 2 * BQ * LD;  // [2][BQ][LD]
  float* lse_s = reinterpret_cast<float*>(dOs + 2 * BQ * LD);  // [2][BQ], log2 units
  float* d_s = lse_s + 2 * BQ;                                 // [2][BQ]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tq = lane & 3;
  const int kt = blockIdx.x;
  const int b = blockIdx.y / NKV, hk = blockIdx.y % NKV;
  const int G = NH / NKV;
  const int k0 = kt * BKV;
  const int qt_start = k0 / BQ, nqt = (T + BQ - 1) / BQ;
  const int per_head = nqt - qt_start, items = G * per_head;
  const bf16* kg = k + static_cast<size_t>(b) * T * kv_stride + static_cast<size_t>(hk) * HS;
  const bf16* vg = v + static_cast<size_t>(b) * T * kv_stride + static_cast<size_t>(hk) * HS;
  const size_t dO_head_stride = HS, dO_tok_stride = static_cast<size_t>(NH) * HS;

  auto load_item = [&](int it, int buf) {
    const int hh = hk * G + it / per_head;
    const int q0 = (qt_start + it % per_head) * BQ;
    load_tile<HS, BQ>(Qs + buf * BQ * LD, q + static_cast<size_t>(b) * T * q_stride + hh * HS, q0, T, q_stride, tid);
    load_tile<HS, BQ>(dOs + buf * BQ * LD, dout + static_cast<size_t>(b) * T * dO_tok_stride + hh * dO_head_stride,
                      q0, T, static_cast<int>(dO_tok_stride), tid);
    for (int i = tid; i < BQ; i += kThreads) {
      const int t = q0 + i;
      const size_t li = (static_cast<size_t>(b) * NH + hh) * T + t;
      lse_s[buf * BQ + i] = t < T ? lse[li] * kLog2e : INFINITY;
      d_s[buf * BQ + i] = t < T ? dsum[li] : 0.0f;
    }
  };

  load_tile<HS, BKV>(Ks, kg, k0, T, kv_stride, tid);
  load_tile<HS, BKV>(Vs, vg, k0, T, kv_stride, tid);
  load_item(0, 0);
  cp_async_commit();

  float dka[HS / 8][4], dva[HS / 8][4];
#pragma unroll
  for (int i = 0; i < HS / 8; ++i) {
    dka[i][0] = dka[i][1] = dka[i][2] = dka[i][3] = 0.0f;
    dva[i][0] = dva[i][1] = dva[i][2] = dva[i][3] = 0.0f;
  }
  const int j_base = k0 + warp * 16 + g;  // key rows j_base, j_base + 8

  for (int it = 0; it < items; ++it) {
    const int buf = it & 1;
    if (it + 1 < items) {
      load_item(it + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int q0 = (qt_start + it % per_head) * BQ;
    const bf16* Qb = Qs + buf * BQ * LD;
    const bf16* dOb = dOs + buf * BQ * LD;
    const float* lb = lse_s + buf * BQ;
    const float* db = d_s + buf * BQ;

    // S^T = K Q^T and dP^T = V dO^T, both [16 keys x BQ queries] per warp.
    float st[BQ / 8][4], dpt[BQ / 8][4];
#pragma unroll
    for (int nt = 0; nt < BQ / 8; ++nt) {
      st[nt][0] = st[nt][1] = st[nt][2] = st[nt][3] = 0.0f;
      dpt[nt][0] = dpt[nt][1] = dpt[nt][2] = dpt[nt][3] = 0.0f;
    }
#pragma unroll
    for (int k2 = 0; k2 < HS / 32; ++k2) {
      uint32_t ka0[4], ka1[4], va0[4], va1[4];
      lds_a(ka0, Ks, LD, warp * 16, k2 * 32, lane);
      lds_a(ka1, Ks, LD, warp * 16, k2 * 32 + 16, lane);
      lds_a(va0, Vs, LD, warp * 16, k2 * 32, lane);
      lds_a(va1, Vs, LD, warp * 16, k2 * 32 + 16, lane);
#pragma unroll
      for (int nt = 0; nt < BQ / 8; ++nt) {
        uint32_t bq[4], bo[4];
        lds_b_nk(bq, Qb, LD, nt * 8, k2 * 32, lane);
        mma16816(st[nt], ka0, bq[0], bq[1]);
        mma16816(st[nt], ka1, bq[2], bq[3]);
        lds_b_nk(bo, dOb, LD, nt * 8, k2 * 32, lane);
        mma16816(dpt[nt], va0, bo[0], bo[1]);
        mma16816(dpt[nt], va1, bo[2], bo[3]);
      }
    }
    // P^T (masked: query >= key and query < T), then dS^T = P^T (dP^T - D) into dpt.
#pragma unroll
    for (int nt = 0; nt < BQ / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int ql = nt * 8 + 2 * tq + (e & 1);
        const int qq = q0 + ql;
        const int j = j_base + (e >> 1) * 8;
        const float p = (qq >= j && qq < T) ? ex2(st[nt][e] * scale_log2 - lb[ql]) : 0.0f;
        st[nt][e] = p;
        dpt[nt][e] = p * (dpt[nt][e] - db[ql]);
      }
    }
    // dV += P^T dO, dK += dS^T Q: k runs over the BQ queries.
#pragma unroll
    for (int kk = 0; kk < BQ / 16; ++kk) {
      uint32_t pa[4], sa[4];
      acc_to_a(pa, st[2 * kk], st[2 * kk + 1]);
      acc_to_a(sa, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
      for (int d2 = 0; d2 < HS / 16; ++d2) {
        uint32_t bo[4], bq[4];
        lds_b_kn(bo, dOb, LD, kk * 16, d2 * 16, lane);
        mma16816(dva[2 * d2], pa, bo[0], bo[1]);
        mma16816(dva[2 * d2 + 1], pa, bo[2], bo[3]);
        lds_b_kn(bq, Qb, LD, kk * 16, d2 * 16, lane);
        mma16816(dka[2 * d2], sa, bq[0], bq[1]);
        mma16816(dka[2 * d2 + 1], sa, bq[2], bq[3]);
      }
    }
    __syncthreads();
  }
  const size_t base = static_cast<size_t>(b) * T * kv_stride + static_cast<size_t>(hk) * HS;
  store_rows<HS>(dk + base, kv_stride, k0 + warp * 16, T, dka, scale, scale, accumulate, lane);
  store_rows<HS>(dv + base, kv_stride, k0 + warp * 16, T, dva, 1.0f, 1.0f, accumulate, lane);
}

// ---------------------------------------------------------------- backward: dQ
template <int HS>
__global__ void __launch_bounds__(kThreads)
    attn_bwd_dq_kernel(bf16* dq, const bf16* dout, const bf16* q, const bf16* k, const bf16* v, const float* lse,
                       const float* dsum, int T, int NH, int NKV, int q_stride, int kv_stride, float scale,
                       float scale_log2, bool accumulate) {
  constexpr int LD = HS + 8, BR = 64, BC = 64;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* dOs = Qs + BR * LD;
  bf16* Ks = dOs + BR * LD;     // [2][BC][LD]
  bf16* Vs = Ks + 2 * BC * LD;  // [2][BC][LD]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tq = lane & 3;
  const int qt = gridDim.x - 1 - blockIdx.x;
  const int b = blockIdx.y / NH, h = blockIdx.y % NH, hk = h / (NH / NKV);
  const int q0 = qt * BR;
  const bf16* kg = k + static_cast<size_t>(b) * T * kv_stride + static_cast<size_t>(hk) * HS;
  const bf16* vg = v + static_cast<size_t>(b) * T * kv_stride + static_cast<size_t>(hk) * HS;

  load_tile<HS, BR>(Qs, q + static_cast<size_t>(b) * T * q_stride + static_cast<size_t>(h) * HS, q0, T, q_stride, tid);
  load_tile<HS, BR>(dOs, dout + static_cast<size_t>(b) * T * NH * HS + static_cast<size_t>(h) * HS, q0, T, NH * HS,
                    tid);
  load_tile<HS, BC>(Ks, kg, 0, T, kv_stride, tid);
  load_tile<HS, BC>(Vs, vg, 0, T, kv_stride, tid);
  cp_async_commit();

  const int row_base = q0 + warp * 16 + g;
  float lse2[2], dr[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = row_base + 8 * r;
    const size_t li = (static_cast<size_t>(b) * NH + h) * T + t;
    lse2[r] = t < T ? lse[li] * kLog2e : INFINITY;
    dr[r] = t < T ? dsum[li] : 0.0f;
  }
  float dqa[HS / 8][4];
#pragma unroll
  for (int i = 0; i < HS / 8; ++i) dqa[i][0] = dqa[i][1] = dqa[i][2] = dqa[i][3] = 0.0f;

  const int nkv = qt + 1;
  for (int j = 0; j < nkv; ++j) {
    const int buf = j & 1;
    if (j + 1 < nkv) {
      load_tile<HS, BC>(Ks + (buf ^ 1) * BC * LD, kg, (j + 1) * BC, T, kv_stride, tid);
      load_tile<HS, BC>(Vs + (buf ^ 1) * BC * LD, vg, (j + 1) * BC, T, kv_stride, tid);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const bf16* Kb = Ks + buf * BC * LD;
    const bf16* Vb = Vs + buf * BC * LD;

    float s[BC / 8][4], dp[BC / 8][4];
#pragma unroll
    for (int nt = 0; nt < BC / 8; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
      dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.0f;
    }
#pragma unroll
    for (int k2 = 0; k2 < HS / 32; ++k2) {
      uint32_t qa0[4], qa1[4], oa0[4], oa1[4];
      lds_a(qa0, Qs, LD, warp * 16, k2 * 32, lane);
      lds_a(qa1, Qs, LD, warp * 16, k2 * 32 + 16, lane);
      lds_a(oa0, dOs, LD, warp * 16, k2 * 32, lane);
      lds_a(oa1, dOs, LD, warp * 16, k2 * 32 + 16, lane);
#pragma unroll
      for (int nt = 0; nt < BC / 8; ++nt) {
        uint32_t bk[4], bv[4];
        lds_b_nk(bk, Kb, LD, nt * 8, k2 * 32, lane);
        mma16816(s[nt], qa0, bk[0], bk[1]);
        mma16816(s[nt], qa1, bk[2], bk[3]);
        lds_b_nk(bv, Vb, LD, nt * 8, k2 * 32, lane);
        mma16816(dp[nt], oa0, bv[0], bv[1]);
        mma16816(dp[nt], oa1, bv[2], bv[3]);
      }
    }
    const bool diag = j == qt;
#pragma unroll
    for (int nt = 0; nt < BC / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = j * BC + nt * 8 + 2 * tq + (e & 1);
        const int row = row_base + (e >> 1) * 8;
        const float p = (!diag || col <= row) ? ex2(s[nt][e] * scale_log2 - lse2[e >> 1]) : 0.0f;
        dp[nt][e] = p * (dp[nt][e] - dr[e >> 1]);
      }
    }
    // dQ += dS K: k runs over the BC keys, K read transposed from its [key][d] tile.
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      uint32_t sa[4];
      acc_to_a(sa, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
      for (int d2 = 0; d2 < HS / 16; ++d2) {
        uint32_t bk[4];
        lds_b_kn(bk, Kb, LD, kk * 16, d2 * 16, lane);
        mma16816(dqa[2 * d2], sa, bk[0], bk[1]);
        mma16816(dqa[2 * d2 + 1], sa, bk[2], bk[3]);
      }
    }
    __syncthreads();
  }
  bf16* dqg = dq + static_cast<size_t>(b) * T * q_stride + static_cast<size_t>(h) * HS;
  store_rows<HS>(dqg, q_stride, q0 + warp * 16, T, dqa, scale, scale, accumulate, lane);
}

// ---- launch helpers ----
constexpr int fwd_smem(int HS) { return (64 + 4 * 64) * (HS + 8) * 2; }
constexpr int dkdv_bq(int HS) { return HS == 128 ? 32 : 64; }
constexpr int dkdv_smem(int HS) { return (2 * 64 + 4 * dkdv_bq(HS)) * (HS + 8) * 2 + 4 * dkdv_bq(HS) * 4; }
constexpr int dq_smem(int HS) { return (2 * 64 + 4 * 64) * (HS + 8) * 2; }

template <class K>
void allow_smem(K kernel, int bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

void check_args(const char* who, int B, int T, int NH, int NKV, int HS, int q_stride, int kv_stride) {
  const std::string w(who);
  LLMTRAIN_CUDA_REQUIRE(HS == 64 || HS == 128, w + ": HS must be 64 or 128");
  LLMTRAIN_CUDA_REQUIRE(B > 0 && T > 0 && NH > 0 && NKV > 0, w + ": sizes must be positive");
  LLMTRAIN_CUDA_REQUIRE(NH % NKV == 0, w + ": NH must be a multiple of NKV");
  LLMTRAIN_CUDA_REQUIRE(q_stride % 8 == 0 && kv_stride % 8 == 0, w + ": strides must be multiples of 8");
  LLMTRAIN_CUDA_REQUIRE(q_stride >= NH * HS && kv_stride >= NKV * HS, w + ": strides too small for the heads");
}

template <int HS>
void launch_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int B, int T, int NH, int NKV,
                    int q_stride, int kv_stride, float scale, cudaStream_t stream) {
  allow_smem(attn_fwd_kernel<HS>, fwd_smem(HS));  // per call: cheap, and right on every device
  dim3 grid(ceil_div(T, 64), B * NH);
  attn_fwd_kernel<HS><<<grid, kThreads, fwd_smem(HS), stream>>>(out, lse, q, k, v, T, NH, NKV, q_stride, kv_stride,
                                                                 scale * kLog2e);
  CUDA_CHECK_LAUNCH();
}

template <int HS>
void launch_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k, const bf16* v,
                     const bf16* out, const float* lse, int B, int T, int NH, int NKV, int q_stride, int kv_stride,
                     float scale, float* dsum, cudaStream_t stream, bool accumulate) {
  constexpr int BQ = dkdv_bq(HS);
  allow_smem(attn_bwd_dkdv_kernel<HS, BQ>, dkdv_smem(HS));
  allow_smem(attn_bwd_dq_kernel<HS>, dq_smem(HS));
  const int64_t rows = static_cast<int64_t>(B) * T * NH;
  attn_bwd_dsum_kernel<HS><<<static_cast<unsigned>(ceil_div<int64_t>(rows, 256)), 256, 0, stream>>>(dsum, dout, out,
                                                                                                    B, T, NH);
  CUDA_CHECK_LAUNCH();
  dim3 grid_kv(ceil_div(T, 64), B * NKV);
  attn_bwd_dkdv_kernel<HS, BQ><<<grid_kv, kThreads, dkdv_smem(HS), stream>>>(
      dk, dv, dout, q, k, v, lse, dsum, T, NH, NKV, q_stride, kv_stride, scale, scale * kLog2e, accumulate);
  CUDA_CHECK_LAUNCH();
  dim3 grid_q(ceil_div(T, 64), B * NH);
  attn_bwd_dq_kernel<HS><<<grid_q, kThreads, dq_smem(HS), stream>>>(dq, dout, q, k, v, lse, dsum, T, NH, NKV, q_stride,
                                                                    kv_stride, scale, scale * kLog2e, accumulate);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

// ================================ launchers ================================

void attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int B, int T, int NH,
                       int NKV, int HS, int q_stride, int kv_stride, float scale, cudaStream_t stream) {
  check_args("attention_forward", B, T, NH, NKV, HS, q_stride, kv_stride);
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(out) && is_aligned16(q) && is_aligned16(k) && is_aligned16(v),
                        "attention_forward: pointers must be 16-byte aligned");
  if (HS == 64)
    launch_forward<64>(out, lse, q, k, v, B, T, NH, NKV, q_stride, kv_stride, scale, stream);
  else
    launch_forward<128>(out, lse, q, k, v, B, T, NH, NKV, q_stride, kv_stride, scale, stream);
}

size_t attention_backward_scratch_bytes(int B, int NH, int T) {
  return static_cast<size_t>(B) * NH * T * sizeof(float);
}

void attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k, const bf16* v,
                        const bf16* out, const float* lse, int B, int T, int NH, int NKV, int HS, int q_stride,
                        int kv_stride, float scale, void* scratch, cudaStream_t stream, bool accumulate) {
  check_args("attention_backward", B, T, NH, NKV, HS, q_stride, kv_stride);
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(dq) && is_aligned16(dk) && is_aligned16(dv) && is_aligned16(dout) &&
                            is_aligned16(q) && is_aligned16(k) && is_aligned16(v) && is_aligned16(out),
                        "attention_backward: pointers must be 16-byte aligned");
  LLMTRAIN_CUDA_REQUIRE(scratch != nullptr, "attention_backward: scratch is required");
  auto* dsum = static_cast<float*>(scratch);
  if (HS == 64)
    launch_backward<64>(dq, dk, dv, dout, q, k, v, out, lse, B, T, NH, NKV, q_stride, kv_stride, scale, dsum, stream,
                        accumulate);
  else
    launch_backward<128>(dq, dk, dv, dout, q, k, v, out, lse, B, T, NH, NKV, q_stride, kv_stride, scale, dsum, stream,
                         accumulate);
}

}  // namespace llmtrain::cuda
