// Reference cuBLAS (v2 API) and cuSOLVER dense routines for the CPU emulator: exactly the calls the
// device optimizers (src/optim/*_cuda.cpp) make, implemented from the documented column-major
// BLAS / LAPACK semantics with plain loops (double accumulation). Host pointer mode only (the
// default). Larger than a stub because the optimizer tests compare against the CPU optimizers.
#include <cublas_v2.h>
#include <cusolverDn.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "cuda_emu.h"

namespace {

template <class T>
T elem(const T* A, int lda, bool trans, int i, int j) {  // op(A)(i, j), column-major
  return trans ? A[j + static_cast<size_t>(i) * lda] : A[i + static_cast<size_t>(j) * lda];
}

float ld_any(const void* p, cudaDataType t, size_t i) {
  switch (t) {
    case CUDA_R_32F: return static_cast<const float*>(p)[i];
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: return NAN;
  }
}
void st_any(void* p, cudaDataType t, size_t i, float v) {
  if (t == CUDA_R_32F)
    static_cast<float*>(p)[i] = v;
  else
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
}

bool bad_op(cublasOperation_t op) { return op != CUBLAS_OP_N && op != CUBLAS_OP_T; }

template <class T>
cublasStatus_t gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, T alpha, const T* A, int lda,
                    long long sa, const T* B, int ldb, long long sb, T beta, T* C, int ldc, long long sc, int batch) {
  if (bad_op(ta) || bad_op(tb) || m < 0 || n < 0 || k < 0 || ldc < std::max(1, m) ||
      lda < std::max(1, ta == CUBLAS_OP_N ? m : k) || ldb < std::max(1, tb == CUBLAS_OP_N ? k : n))
    return CUBLAS_STATUS_INVALID_VALUE;
  for (int b = 0; b < batch; ++b) {
    const T* Ab = A + b * sa;
    const T* Bb = B + b * sb;
    T* Cb = C + b * sc;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double acc = 0;
        for (int p = 0; p < k; ++p)
          acc += static_cast<double>(elem(Ab, lda, ta == CUBLAS_OP_T, i, p)) * elem(Bb, ldb, tb == CUBLAS_OP_T, p, j);
        T& c = Cb[i + static_cast<size_t>(j) * ldc];
        c = static_cast<T>(alpha * acc + (beta != T(0) ? beta * static_cast<double>(c) : 0.0));  // beta 0: C unread
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
  *h = reinterpret_cast<cublasHandle_t>(new char(0));
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
  delete reinterpret_cast<char*>(h);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasSgemm_v2(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                              float* C, int ldc) {
  return gemm<float>(ta, tb, m, n, k, *alpha, A, lda, 0, B, ldb, 0, *beta, C, ldc, 0, 1);
}
cublasStatus_t cublasDgemm_v2(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const double* alpha, const double* A, int lda, const double* B, int ldb,
                              const double* beta, double* C, int ldc) {
  return gemm<double>(ta, tb, m, n, k, *alpha, A, lda, 0, B, ldb, 0, *beta, C, ldc, 0, 1);
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* alpha, const float* A, int lda, long long sa,
                                         const float* B, int ldb, long long sb, const float* beta, float* C, int ldc,
                                         long long sc, int batch) {
  return gemm<float>(ta, tb, m, n, k, *alpha, A, lda, sa, B, ldb, sb, *beta, C, ldc, sc, batch);
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType at, int lda,
                                          long long sa, const void* B, cudaDataType bt, int ldb, long long sb,
                                          const void* beta, void* C, cudaDataType ct, int ldc, long long sc,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (at != bt || (at != CUDA_R_16BF && at != CUDA_R_32F) || (ct != CUDA_R_16BF && ct != CUDA_R_32F))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if (bad_op(ta) || bad_op(tb) || ldc < std::max(1, m) || lda < std::max(1, ta == CUBLAS_OP_N ? m : k) ||
      ldb < std::max(1, tb == CUBLAS_OP_N ? k : n))
    return CUBLAS_STATUS_INVALID_VALUE;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  for (int b = 0; b < batch; ++b)
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float acc = 0;
        for (int p = 0; p < k; ++p) {
          const size_t ia = ta == CUBLAS_OP_T ? p + static_cast<size_t>(i) * lda : i + static_cast<size_t>(p) * lda;
          const size_t ib = tb == CUBLAS_OP_T ? j + static_cast<size_t>(p) * ldb : p + static_cast<size_t>(j) * ldb;
          acc += ld_any(A, at, b * sa + ia) * ld_any(B, bt, b * sb + ib);
        }
        const size_t ic = b * sc + i + static_cast<size_t>(j) * ldc;
        float v = al * acc;
        if (be != 0.0f) v += be * ld_any(C, ct, ic);
        st_any(C, ct, ic, v);
      }
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDnrm2_v2(cublasHandle_t, int n, const double* x, int incx, double* result) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += x[static_cast<size_t>(i) * incx] * x[static_cast<size_t>(i) * incx];
  *result = std::sqrt(s);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDscal_v2(cublasHandle_t, int n, const double* alpha, double* x, int incx) {
  for (int i = 0; i < n; ++i) x[static_cast<size_t>(i) * incx] *= *alpha;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDaxpy_v2(cublasHandle_t, int n, const double* alpha, const double* x, int incx, double* y,
                              int incy) {
  for (int i = 0; i < n; ++i) y[static_cast<size_t>(i) * incy] += *alpha * x[static_cast<size_t>(i) * incx];
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDgeam(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                           const double* alpha, const double* A, int lda, const double* beta, const double* B, int ldb,
                           double* C, int ldc) {
  if (bad_op(ta) || bad_op(tb)) return CUBLAS_STATUS_INVALID_VALUE;
  std::vector<double> out(static_cast<size_t>(m) * n);  // C may alias A or B
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double v = 0;
      if (*alpha != 0) v += *alpha * elem(A, lda, ta == CUBLAS_OP_T, i, j);
      if (*beta != 0) v += *beta * elem(B, ldb, tb == CUBLAS_OP_T, i, j);
      out[i + static_cast<size_t>(j) * m] = v;
    }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) C[i + static_cast<size_t>(j) * ldc] = out[i + static_cast<size_t>(j) * m];
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDsymm_v2(cublasHandle_t, cublasSideMode_t side, cublasFillMode_t uplo, int m, int n,
                              const double* alpha, const double* A, int lda, const double* B, int ldb,
                              const double* beta, double* C, int ldc) {
  // A symmetric, only the `uplo` triangle is read.
  auto a = [&](int i, int j) {
    const bool lower = uplo == CUBLAS_FILL_MODE_LOWER;
    if ((lower && i < j) || (!lower && i > j)) std::swap(i, j);
    return A[i + static_cast<size_t>(j) * lda];
  };
  std::vector<double> out(static_cast<size_t>(m) * n);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double acc = 0;
      if (side == CUBLAS_SIDE_LEFT)
        for (int p = 0; p < m; ++p) acc += a(i, p) * B[p + static_cast<size_t>(j) * ldb];
      else
        for (int p = 0; p < n; ++p) acc += B[i + static_cast<size_t>(p) * ldb] * a(p, j);
      double& c = C[i + static_cast<size_t>(j) * ldc];
      out[i + static_cast<size_t>(j) * m] = *alpha * acc + (*beta != 0 ? *beta * c : 0.0);
    }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) C[i + static_cast<size_t>(j) * ldc] = out[i + static_cast<size_t>(j) * m];
  return CUBLAS_STATUS_SUCCESS;
}

// ---------------------------------------------------------------- cuSOLVER

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t* h) {
  *h = reinterpret_cast<cusolverDnHandle_t>(new char(0));
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t h) {
  delete reinterpret_cast<char*>(h);
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t, cudaStream_t) { return CUSOLVER_STATUS_SUCCESS; }

}  // extern "C"

namespace {

// Cholesky A = L L^T in the lower triangle (the upper one is not touched). info = column + 1 of
// the first non-positive pivot, as LAPACK.
template <class T>
int potrf_lower(int n, T* A, int lda) {
  auto a = [&](int i, int j) -> T& { return A[i + static_cast<size_t>(j) * lda]; };
  for (int j = 0; j < n; ++j) {
    double d = a(j, j);
    for (int p = 0; p < j; ++p) d -= static_cast<double>(a(j, p)) * a(j, p);
    if (!(d > 0)) return j + 1;
    const double l = std::sqrt(d);
    a(j, j) = static_cast<T>(l);
    for (int i = j + 1; i < n; ++i) {
      double s = a(i, j);
      for (int p = 0; p < j; ++p) s -= static_cast<double>(a(i, p)) * a(j, p);
      a(i, j) = static_cast<T>(s / l);
    }
  }
  return 0;
}

// inv(A) from its Cholesky factor L (lower): inv(A) = L^-T L^-1, written to the lower triangle.
template <class T>
int potri_lower(int n, T* A, int lda) {
  auto a = [&](int i, int j) -> T& { return A[i + static_cast<size_t>(j) * lda]; };
  std::vector<double> li(static_cast<size_t>(n) * n, 0.0);  // L^-1, lower, column-major n x n
  for (int j = 0; j < n; ++j) {
    if (a(j, j) == T(0)) return j + 1;
    li[j + static_cast<size_t>(j) * n] = 1.0 / a(j, j);
    for (int i = j + 1; i < n; ++i) {
      double s = 0;
      for (int p = j; p < i; ++p) s -= static_cast<double>(a(i, p)) * li[p + static_cast<size_t>(j) * n];
      li[i + static_cast<size_t>(j) * n] = s / a(i, i);
    }
  }
  for (int j = 0; j < n; ++j)
    for (int i = j; i < n; ++i) {
      double s = 0;  // (L^-T L^-1)(i, j) = sum_p Li(p, i) Li(p, j), p >= i
      for (int p = i; p < n; ++p) s += li[p + static_cast<size_t>(i) * n] * li[p + static_cast<size_t>(j) * n];
      a(i, j) = static_cast<T>(s);
    }
  return 0;
}

// Householder QR, LAPACK geqrf convention: R in the upper triangle, reflector j's vector below the
// diagonal of column j with an implicit leading 1, H_j = I - tau_j v v^T.
template <class T>
void geqrf(int m, int n, T* A, int lda, T* tau) {
  auto a = [&](int i, int j) -> T& { return A[i + static_cast<size_t>(j) * lda]; };
  for (int j = 0; j < std::min(m, n); ++j) {
    double xn = 0;
    for (int i = j + 1; i < m; ++i) xn += static_cast<double>(a(i, j)) * a(i, j);
    const double alpha = a(j, j);
    if (xn == 0) {
      tau[j] = 0;
      continue;
    }
    const double beta = -std::copysign(std::sqrt(alpha * alpha + xn), alpha);
    tau[j] = static_cast<T>((beta - alpha) / beta);
    const double scale = 1.0 / (alpha - beta);
    for (int i = j + 1; i < m; ++i) a(i, j) = static_cast<T>(a(i, j) * scale);
    a(j, j) = static_cast<T>(beta);
    for (int c = j + 1; c < n; ++c) {
      double s = a(j, c);
      for (int i = j + 1; i < m; ++i) s += static_cast<double>(a(i, j)) * a(i, c);
      s *= tau[j];
      a(j, c) = static_cast<T>(a(j, c) - s);
      for (int i = j + 1; i < m; ++i) a(i, c) = static_cast<T>(a(i, c) - s * a(i, j));
    }
  }
}

// The first n columns of Q = H_0 ... H_{k-1}, overwriting the reflectors.
template <class T>
void orgqr(int m, int n, int k, T* A, int lda, const T* tau) {
  auto a = [&](int i, int j) -> T& { return A[i + static_cast<size_t>(j) * lda]; };
  std::vector<double> q(static_cast<size_t>(m) * n, 0.0);
  for (int j = 0; j < n; ++j) q[j + static_cast<size_t>(j) * m] = 1.0;
  for (int r = k - 1; r >= 0; --r) {
    std::vector<double> v(m, 0.0);
    v[r] = 1.0;
    for (int i = r + 1; i < m; ++i) v[i] = a(i, r);
    for (int c = 0; c < n; ++c) {
      double s = 0;
      for (int i = r; i < m; ++i) s += v[i] * q[i + static_cast<size_t>(c) * m];
      s *= tau[r];
      for (int i = r; i < m; ++i) q[i + static_cast<size_t>(c) * m] -= s * v[i];
    }
  }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) a(i, j) = static_cast<T>(q[i + static_cast<size_t>(j) * m]);
}

}  // namespace

extern "C" {

cusolverStatus_t cusolverDnDpotrf_bufferSize(cusolverDnHandle_t, cublasFillMode_t, int n, double*, int, int* lwork) {
  *lwork = n;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDpotrf(cusolverDnHandle_t, cublasFillMode_t uplo, int n, double* A, int lda, double*,
                                  int lwork, int* info) {
  if (uplo != CUBLAS_FILL_MODE_LOWER || lwork < n) return CUSOLVER_STATUS_INVALID_VALUE;
  *info = potrf_lower(n, A, lda);
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDpotri_bufferSize(cusolverDnHandle_t, cublasFillMode_t, int n, double*, int, int* lwork) {
  *lwork = n;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDpotri(cusolverDnHandle_t, cublasFillMode_t uplo, int n, double* A, int lda, double*,
                                  int lwork, int* info) {
  if (uplo != CUBLAS_FILL_MODE_LOWER || lwork < n) return CUSOLVER_STATUS_INVALID_VALUE;
  *info = potri_lower(n, A, lda);
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnSgeqrf_bufferSize(cusolverDnHandle_t, int, int n, float*, int, int* lwork) {
  *lwork = n;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnSgeqrf(cusolverDnHandle_t, int m, int n, float* A, int lda, float* tau, float*, int lwork,
                                  int* info) {
  if (lwork < n || lda < m) return CUSOLVER_STATUS_INVALID_VALUE;
  geqrf(m, n, A, lda, tau);
  *info = 0;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnSorgqr_bufferSize(cusolverDnHandle_t, int, int n, int, const float*, int, const float*,
                                             int* lwork) {
  *lwork = n;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnSorgqr(cusolverDnHandle_t, int m, int n, int k, float* A, int lda, const float* tau,
                                  float*, int lwork, int* info) {
  if (lwork < n || lda < m || n > m || k > n) return CUSOLVER_STATUS_INVALID_VALUE;
  orgqr(m, n, k, A, lda, tau);
  *info = 0;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDgeqrf_bufferSize(cusolverDnHandle_t, int, int n, double*, int, int* lwork) {
  *lwork = n;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDgeqrf(cusolverDnHandle_t, int m, int n, double* A, int lda, double* tau, double*,
                                  int lwork, int* info) {
  if (lwork < n || lda < m) return CUSOLVER_STATUS_INVALID_VALUE;
  geqrf(m, n, A, lda, tau);
  *info = 0;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDorgqr_bufferSize(cusolverDnHandle_t, int, int n, int, const double*, int, const double*,
                                             int* lwork) {
  *lwork = n;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDorgqr(cusolverDnHandle_t, int m, int n, int k, double* A, int lda, const double* tau,
                                  double*, int lwork, int* info) {
  if (lwork < n || lda < m || n > m || k > n) return CUSOLVER_STATUS_INVALID_VALUE;
  orgqr(m, n, k, A, lda, tau);
  *info = 0;
  return CUSOLVER_STATUS_SUCCESS;
}

}  // extern "C"
