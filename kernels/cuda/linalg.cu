// fp64 helpers of the cuSOLVER paths (QDWH polar factor, Newton-Muon's Cholesky): fp32 <-> fp64
// copies with optional transpose, QDWH's [sqrt(c) X; I] stacking, diagonal shifts, the ridge
// K + damping tr(K)/n I, symmetrisation of a lower triangle, identity. CPU twin: kernels/cpu/linalg.cpp.
#include "cuda/optim_common.cuh"

namespace llmtrain::cuda::optim {
namespace {

__global__ void f32_to_f64_kernel(const float* __restrict__ in, double* __restrict__ out, int64_t m, int64_t n,
                                  bool transpose) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < m * n; e += (int64_t)gridDim.x * blockDim.x) {
    if (transpose) {
      const int64_t i = e / n, j = e % n;  // in row-major [m, n]
      out[i + j * m] = (double)in[e];
    } else {
      out[e] = (double)in[e];
    }
  }
}

__global__ void f64_to_f32_kernel(const double* __restrict__ in, float* __restrict__ out, int64_t m, int64_t n,
                                  bool transpose) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < m * n; e += (int64_t)gridDim.x * blockDim.x) {
    if (transpose) {
      const int64_t i = e / n, j = e % n;  // out row-major [m, n]
      out[e] = (float)in[i + j * m];
    } else {
      out[e] = (float)in[e];
    }
  }
}

__global__ void qdwh_stack_kernel(const double* __restrict__ X, double* __restrict__ Z, int64_t R, int64_t C,
                                  double sc) {
  const int64_t zr = R + C;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < zr * C; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = e % zr, c = e / zr;
    Z[e] = r < R ? sc * X[r + c * R] : (r - R == c ? 1.0 : 0.0);
  }
}

__global__ void add_diag_kernel(double* A, int64_t n, double d) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    A[i * n + i] += d;
}

__global__ void trace_kernel(const float* __restrict__ K, int64_t b, double* __restrict__ tr) {
  // One thread, index order: the same sum as the CPU's refresh_inverse.
  double s = 0.0;
  for (int64_t d = 0; d < b; ++d) s += (double)K[d * b + d];
  *tr = s;
}

__global__ void ridge_kernel(const float* __restrict__ K, double* __restrict__ out, int64_t b, double damping,
                             const double* __restrict__ tr) {
  const double ridge = damping * (*tr) / (double)b;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < b * b; e += (int64_t)gridDim.x * blockDim.x)
    out[e] = (double)K[e] + ((e / b) == (e % b) ? ridge : 0.0);
}

__global__ void sym_lower_kernel(const double* __restrict__ L, float* __restrict__ out, int64_t n) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n * n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e / n, j = e % n;
    const int64_t hi = i > j ? i : j, lo = i > j ? j : i;
    out[e] = (float)L[hi + lo * n];  // column-major lower triangle: row hi, column lo
  }
}

__global__ void identity_kernel(float* out, int64_t n) {
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n * n; e += (int64_t)gridDim.x * blockDim.x)
    out[e] = (e / n) == (e % n) ? 1.0f : 0.0f;
}

}  // namespace

void f32_to_f64(const float* in, double* out, int64_t m, int64_t n, bool transpose, cudaStream_t s) {
  f32_to_f64_kernel<<<grid_for(m * n), kThreads, 0, s>>>(in, out, m, n, transpose);
  CUDA_CHECK_LAUNCH();
}

void f64_to_f32(const double* in, float* out, int64_t m, int64_t n, bool transpose, cudaStream_t s) {
  f64_to_f32_kernel<<<grid_for(m * n), kThreads, 0, s>>>(in, out, m, n, transpose);
  CUDA_CHECK_LAUNCH();
}

void qdwh_stack(const double* X, double* Z, int64_t R, int64_t C, double sc, cudaStream_t s) {
  qdwh_stack_kernel<<<grid_for((R + C) * C), kThreads, 0, s>>>(X, Z, R, C, sc);
  CUDA_CHECK_LAUNCH();
}

void add_diag(double* A, int64_t n, double d, cudaStream_t s) {
  add_diag_kernel<<<grid_for(n), kThreads, 0, s>>>(A, n, d);
  CUDA_CHECK_LAUNCH();
}

void ridge_to_f64(const float* K, double* out, int64_t b, double damping, double* tr_scratch, cudaStream_t s) {
  trace_kernel<<<1, 1, 0, s>>>(K, b, tr_scratch);
  CUDA_CHECK_LAUNCH();
  ridge_kernel<<<grid_for(b * b), kThreads, 0, s>>>(K, out, b, damping, tr_scratch);
  CUDA_CHECK_LAUNCH();
}

void sym_lower_to_f32(const double* L, float* out, int64_t n, cudaStream_t s) {
  sym_lower_kernel<<<grid_for(n * n), kThreads, 0, s>>>(L, out, n);
  CUDA_CHECK_LAUNCH();
}

void set_identity(float* out, int64_t n, cudaStream_t s) {
  identity_kernel<<<grid_for(n * n), kThreads, 0, s>>>(out, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace llmtrain::cuda::optim
