// Small SIMD helpers shared by the CPU ops (internal to kernels/cpu). GCC vector extensions one
// hardware register wide: SSE2 in the default build, AVX when the build targets it (-march flags),
// so the same source vectorises without intrinsics or reliance on the auto-vectoriser (which will
// not reorder a reduction or if-convert a select at -O2 without being told). The fp32 exp here
// exists because libm's expf/tanhf are scalar and dominate the softmax, attention and GELU loops;
// fp64 (used by the finite-difference tests) always goes through plain std::exp.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace llmtrain::cpu::simd {

#if defined(__AVX__)
constexpr int kBytes = 32;
#else
constexpr int kBytes = 16;
#endif

template <typename F>
struct Vec {
  typedef F type __attribute__((vector_size(kBytes)));
  static constexpr int L = kBytes / (int)sizeof(F);  // lanes
};

using vf = Vec<float>::type;
typedef int32_t vi __attribute__((vector_size(kBytes)));
constexpr int kLanes = Vec<float>::L;

template <typename F>
inline typename Vec<F>::type load(const F* p) {
  typename Vec<F>::type v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The first n (<= L) lanes from p, the rest 0.
template <typename F>
inline typename Vec<F>::type load_partial(const F* p, int n) {
  if (n == Vec<F>::L) return load(p);  // the common case, without a variable-length copy
  typename Vec<F>::type v = {};
  std::memcpy(&v, p, sizeof(F) * n);
  return v;
}

template <typename F>
inline void store(F* p, typename Vec<F>::type v) {
  std::memcpy(p, &v, sizeof v);
}

template <typename F>
inline void store_partial(F* p, typename Vec<F>::type v, int n) {
  if (n == Vec<F>::L)
    store(p, v);
  else
    std::memcpy(p, &v, sizeof(F) * n);
}

template <typename F>
inline F hsum(typename Vec<F>::type v) {
  F s = 0;
  for (int l = 0; l < Vec<F>::L; ++l) s += v[l];
  return s;
}

// e^x for x <= 0 (small positive rounding noise is fine), within 2e-7 relative (under 2 ulp of
// fp32); exactly 0 below -87, where e^x would be denormal; NaN stays NaN.
// x = k ln2 + r with |r| <= ln2/2; e^r by its Taylor series to r^7 (truncation < 1e-8), evaluated
// in Estrin's form for a short dependency chain; 2^k is written straight into the exponent bits.
inline vf exp_nonpos(vf x) {
  const vf lo = vf{} - 87.0f;
  const vf xc = x < lo ? lo : x;
  // k = round(x / ln2): x / ln2 - 0.5 <= 0 here, and float -> int conversion truncates toward 0.
  const vi ki = __builtin_convertvector(xc * 1.44269504088896341f - 0.5f, vi);
  const vf k = __builtin_convertvector(ki, vf);
  vf r = xc - k * 0.693359375f;  // ln2 split in two: the high part times k is exact
  r = r + k * 2.12194440e-4f;
  const vf r2 = r * r, r4 = r2 * r2;
  const vf p01 = r + 1.0f, p23 = r * (1.0f / 6) + 0.5f;
  const vf p45 = r * (1.0f / 120) + 1.0f / 24, p67 = r * (1.0f / 5040) + 1.0f / 720;
  const vf p = (p01 + r2 * p23) + r4 * (p45 + r2 * p67);
  const vi bits = (ki + 127) << 23;
  const vf y = p * (vf)bits;
  return x < lo ? vf{} : y;
}

// The logistic sigmoid s = 1 / (1 + e^-z) and its slope s (1 - s), both from e = e^-|z| so that
// neither overflows nor cancels: s = 1/(1+e) for z >= 0, e/(1+e) below; s (1 - s) = e/(1+e)^2.
inline void sigmoid(vf z, vf* s, vf* slope) {
  const vf az = z < 0.0f ? -z : z;
  const vf e = exp_nonpos(-az);
  const vf inv = 1.0f / (1.0f + e);
  *s = z < 0.0f ? e * inv : inv;
  *slope = e * inv * inv;
}
inline void sigmoid(double z, double* s, double* slope) {
  const double e = std::exp(-std::fabs(z)), inv = 1.0 / (1.0 + e);
  *s = z < 0 ? e * inv : inv;
  *slope = e * inv * inv;
}

// Largest of x[0..n), n >= 1.
inline float row_max(const float* x, int n) {
  vf m = vf{} + x[0];
  int j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const vf v = load(x + j);
    m = v > m ? v : m;
  }
  float mx = m[0];
  for (int l = 1; l < kLanes; ++l) mx = std::max(mx, m[l]);
  for (; j < n; ++j) mx = std::max(mx, x[j]);
  return mx;
}
inline double row_max(const double* x, int n) {
  double m = x[0];
  for (int j = 1; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

// e^(x[j] - shift) for j < n, written to out (when given; out may equal x), shift >= max(x) so every
// argument is <= 0. Returns the sum of the exponentials, accumulated in double.
inline double exp_sum(const float* x, float shift, float* out, int n) {
  // Two double accumulators of half a float vector each keep the sum one register wide.
  typedef float vfh __attribute__((vector_size(kBytes / 2)));
  typedef double vdh __attribute__((vector_size(kBytes)));
  vdh acc_lo = vdh{}, acc_hi = vdh{};
  int j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const vf e = exp_nonpos(load(x + j) - shift);
    if (out) store(out + j, e);
    vfh lo, hi;
    std::memcpy(&lo, &e, sizeof lo);
    std::memcpy(&hi, reinterpret_cast<const char*>(&e) + sizeof lo, sizeof hi);
    acc_lo += __builtin_convertvector(lo, vdh);
    acc_hi += __builtin_convertvector(hi, vdh);
  }
  double s = 0;
  for (int l = 0; l < kLanes / 2; ++l) s += acc_lo[l] + acc_hi[l];
  if (j < n) {
    const vf e = exp_nonpos(load_partial(x + j, n - j) - shift);
    for (int l = 0; l < n - j; ++l) s += (double)e[l];
    if (out) store_partial(out + j, e, n - j);
  }
  return s;
}
inline double exp_sum(const double* x, double shift, double* out, int n) {
  double s = 0;
  for (int j = 0; j < n; ++j) {
    const double e = std::exp(x[j] - shift);
    if (out) out[j] = e;
    s += e;
  }
  return s;
}

}  // namespace llmtrain::cpu::simd
