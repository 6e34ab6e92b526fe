// The element-wise and reduction kernels behind the device optimizers (src/optim/*_cuda.cpp):
// fused AdamW, the momentum rule, the decoupled-decay update, RMNP's fused row kernel, and the
// helpers of Newton-Schulz (Frobenius pre-normalisation and bf16 cast), PolarGrad (<U, P>), low-rank
// Muon (column gather) and QDWH / Newton-Muon (fp32 <-> fp64 copies, stacking, symmetrisation).
//
// Multi-tensor launches: a table of units (one contiguous tensor or row block each) and a table of
// chunks (kChunk consecutive elements of one unit) live in device memory; one block per chunk, so a
// launch covers every tensor of a group however uneven their sizes. Reductions are deterministic:
// fixed partial counts summed in a fixed order (no atomics). Plain C++ can include this header.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace llmtrain::cuda::optim {

constexpr int64_t kChunk = 8192;  // elements per block in the multi-tensor kernels

struct Chunk {
  int32_t unit;
  int32_t pad;
  int64_t start;
};

// `vec`: every pointer of the unit is 16-byte aligned and n % 4 == 0 (float4 accesses).
struct AdamUnit {
  float* w;
  const float* g;
  float* m;
  float* v;
  void* wbf;  // bf16 copy of w, or null
  int64_t n;
  int32_t decay;
  int32_t vec;
};
struct AdamArgs {
  float b1, b2, omb1, omb2, eps, ibc1, ibc2, step_size, keep;
  int uncorrected;
};
void adamw_multi(const AdamUnit* units, const Chunk* chunks, int nchunks, const AdamArgs& a, cudaStream_t s);

// M = b M + (1 - b) G (ema) or b M + G (sum); U = nesterov ? ... : M (see optim/optimizers.h).
struct MomUnit {
  const float* g;
  float* m;
  float* u;
  int64_t n;
  int32_t vec;
  int32_t pad;
};
struct MomArgs {
  float b, omb;
  int sum_form, nesterov;
};
void momentum_multi(const MomUnit* units, const Chunk* chunks, int nchunks, const MomArgs& a, cudaStream_t s);

// W = W keep - (lr scales[scale_idx]) D with D fp32 (d_bf16 = false) or bf16.
struct UpdUnit {
  float* w;
  void* wbf;
  const void* d;
  int64_t n;
  int32_t scale_idx;
  int32_t vec;
};
void update_multi(const UpdUnit* units, const Chunk* chunks, int nchunks, bool d_bf16, const float* scales, float keep,
                  float lr, cudaStream_t s);

// RMNP, one block per row of every unit (all units of a launch share `cols`): momentum, Nesterov,
// D = U / max(||U_row||, eps), W = W keep - lr scale D, one read and one write of each state.
// units sorted by row0 (prefix sums of rows).
struct RowUnit {
  float* w;
  const float* g;
  float* m;
  void* wbf;
  int64_t row0;
  int32_t rows, cols;
  float scale;
  int32_t vec;
};
struct RmnpArgs {
  float b, omb;
  int sum_form, nesterov;
  float eps, keep, lr;
};
void rmnp_rows(const RowUnit* units, int nunits, int64_t total_rows, int cols, bool vec, const RmnpArgs& a,
               cudaStream_t s);

// D = S / max(||S_row||, eps) per row, RowUnit.g = S and RowUnit.w = D (bench of the bare row
// normalisation; the optimizer itself uses the fused rmnp_rows).
void normalize_rows_multi(const RowUnit* units, int nunits, int64_t total_rows, int cols, float eps, cudaStream_t s);

// ---- Newton-Schulz helpers: count contiguous matrices of n_each fp32 elements ----
constexpr int kNormParts = 64;  // partial sums per matrix
// partials[mat * kNormParts + p] = sum of squares of part p of matrix mat.
void sumsq_partials(const float* x, int count, int64_t n_each, float* partials, cudaStream_t s);
// out (bf16) = x / (norm_factor * ||x_mat||_F + 1e-7), the norm from the partials.
void cast_scaled_bf16(const float* x, void* out, int count, int64_t n_each, const float* partials, float norm_factor,
                      cudaStream_t s);
// *scale_out = (float) <a, b> (b bf16 or fp32), deterministic; partials: kNormParts doubles.
void dot_to_scale(const float* a, const void* b, bool b_bf16, int64_t n, double* partials, float* scale_out,
                  cudaStream_t s);
void cast_bf16_to_f32(const void* in, float* out, int64_t n, cudaStream_t s);
// Symmetric Newton-Schulz (NsEngine): `count` column-major bf16 [s, s] matrices, ld s, `stride`
// elements apart, of which the blocks rows [h, s) x cols [0, h) are known; copies their transposes
// into rows [0, h) x cols [h, s), completing each symmetric matrix.
void mirror_block_bf16(void* M, int s, int h, int count, long long stride, cudaStream_t st);

// S (column-major [m, k], ld m) = X[:, idx] for row-major X [m, n]; idx on the device.
void gather_cols_colmajor(const float* X, int64_t m, int64_t n, const int64_t* idx, int64_t k, float* S,
                          cudaStream_t s);

// p[i] = scale * u(seed, i), u uniform in [-1, 1) (benchmark inputs).
void fill_uniform(float* p, int64_t n, uint64_t seed, float scale, cudaStream_t s);

// ---- fp64 helpers (QDWH, Newton-Muon) ----
// out (double) = in; with transpose, in is row-major [m, n] and out column-major [m, n] (ld m).
void f32_to_f64(const float* in, double* out, int64_t m, int64_t n, bool transpose, cudaStream_t s);
// Inverse of f32_to_f64: in column-major [m, n] (transpose) or flat, out row-major fp32.
void f64_to_f32(const double* in, float* out, int64_t m, int64_t n, bool transpose, cudaStream_t s);
// Z (column-major [R + C, C], ld R + C) = [sc X; I] for X column-major [R, C].
void qdwh_stack(const double* X, double* Z, int64_t R, int64_t C, double sc, cudaStream_t s);
// A[i, i] += d for a column-major [n, n] matrix.
void add_diag(double* A, int64_t n, double d, cudaStream_t s);
// out (double [b, b]) = K + damping tr(K) / b I for K fp32 [b, b]; tr_scratch: one double.
void ridge_to_f64(const float* K, double* out, int64_t b, double damping, double* tr_scratch, cudaStream_t s);
// out (fp32 [n, n], symmetric) from the lower triangle of a column-major double matrix.
void sym_lower_to_f32(const double* L, float* out, int64_t n, cudaStream_t s);
// out = I (fp32 [n, n]).
void set_identity(float* out, int64_t n, cudaStream_t s);

}  // namespace llmtrain::cuda::optim
