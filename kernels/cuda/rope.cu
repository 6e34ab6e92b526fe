// Rotary position embedding (Hugging Face rotate_half pairing: dims i and i + HS/2), in place on
// bf16 q or k with a token stride, so it runs directly on the q/k parts of a fused projection
// buffer. One thread rotates 8 pairs (two 128-bit loads, two stores). Backward applies the inverse
// rotation (its exact adjoint) to the gradient, also in place. The cos/sin tables [T, HS/2] are
// fp32, computed once in double.
#include "common.cuh"
#include "cuda/ops.h"

namespace llmtrain::cuda {
namespace {

// ================================ kernels ================================

__global__ void rope_tables_kernel(float* cos_t, float* sin_t, int T, int HS, double theta) {
  const int half = HS / 2;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= T * half) return;
  const int t = idx / half, i = idx % half;
  const double freq = pow(theta, -2.0 * i / HS);
  const double ang = static_cast<double>(t) * freq;
  cos_t[idx] = static_cast<float>(cos(ang));
  sin_t[idx] = static_cast<float>(sin(ang));
}

// DIR = +1: (x1, x2) -> (x1 c - x2 s, x2 c + x1 s); DIR = -1 rotates by -angle.
template <int DIR>
__global__ void rope_kernel(bf16* x, const float* cos_t, const float* sin_t, int B, int T, int H, int HS,
                            int stride) {
  const int half = HS / 2, chunks = half / 8;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = static_cast<int64_t>(B) * T * H * chunks;
  if (idx >= total) return;
  const int ci = static_cast<int>(idx % chunks);
  const int64_t bth = idx / chunks;
  const int h = static_cast<int>(bth % H);
  const int64_t bt = bth / H;
  const int t = static_cast<int>(bt % T);
  const int i0 = ci * 8;
  bf16* p = x + bt * stride + static_cast<int64_t>(h) * HS + i0;
  float a[8], b[8];
  unpack8(load16(p), a);
  unpack8(load16(p + half), b);
  const float* cp = cos_t + static_cast<int64_t>(t) * half + i0;
  const float* sp = sin_t + static_cast<int64_t>(t) * half + i0;
  F32x4 c0 = load16(cp), c1 = load16(cp + 4), s0 = load16(sp), s1 = load16(sp + 4);
  float ra[8], rb[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const float c = j < 4 ? c0.v[j] : c1.v[j - 4];
    const float s = DIR * (j < 4 ? s0.v[j] : s1.v[j - 4]);
    ra[j] = a[j] * c - b[j] * s;
    rb[j] = b[j] * c + a[j] * s;
  }
  store16(p, pack8(ra));
  store16(p + half, pack8(rb));
}

template <int DIR>
void launch_rope(bf16* x, const float* cos_t, const float* sin_t, int B, int T, int H, int HS, int stride,
                 cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(HS % 16 == 0, "rope: HS must be a multiple of 16");
  LLMTRAIN_CUDA_REQUIRE(stride % 8 == 0 && stride >= H * HS, "rope: stride must be a multiple of 8 and >= H*HS");
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(x) && is_aligned16(cos_t) && is_aligned16(sin_t),
                        "rope: pointers must be 16-byte aligned");
  const int64_t total = static_cast<int64_t>(B) * T * H * (HS / 16);
  if (total <= 0) return;
  rope_kernel<DIR><<<static_cast<unsigned>(ceil_div<int64_t>(total, 256)), 256, 0, stream>>>(x, cos_t, sin_t, B, T,
                                                                                             H, HS, stride);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

// ================================ launchers ================================

void rope_tables(float* cos_t, float* sin_t, int T, int HS, float theta, cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(HS % 2 == 0, "rope_tables: HS must be even");
  const int total = T * (HS / 2);
  if (total <= 0) return;
  rope_tables_kernel<<<ceil_div(total, 256), 256, 0, stream>>>(cos_t, sin_t, T, HS, static_cast<double>(theta));
  CUDA_CHECK_LAUNCH();
}

void rope_forward(bf16* x, const float* cos_t, const float* sin_t, int B, int T, int H, int HS, int stride,
                  cudaStream_t stream) {
  launch_rope<1>(x, cos_t, sin_t, B, T, H, HS, stride, stream);
}

void rope_backward(bf16* dx, const float* cos_t, const float* sin_t, int B, int T, int H, int HS, int stride,
                   cudaStream_t stream) {
  launch_rope<-1>(dx, cos_t, sin_t, B, T, H, HS, stride, stream);
}

}  // namespace llmtrain::cuda
