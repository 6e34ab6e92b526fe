// Bias gradients: dbias[OC] += sum over the N = B*T rows of dout[N, OC], deterministic through the
// two-pass column reduction of colsum.cuh (fp32 sums of bf16 gradients).
#include "colsum.cuh"
#include "common.cuh"
#include "cuda/ops.h"

namespace llmtrain::cuda {
namespace {

// ================================ kernels ================================

struct BiasLoader {
  const bf16* dout;
  int C;
  __device__ __forceinline__ void operator()(int n, int c0, float (&v)[1][8]) const {
    unpack8(load16(dout + static_cast<size_t>(n) * C + c0), v[0]);
  }
};

}  // namespace

// ================================ launchers ================================

size_t colsum_scratch_bytes(int C, int nsums) { return colsum::scratch_bytes(C, nsums); }

void bias_grad(float* dbias, const bf16* dout, int N, int OC, void* scratch, cudaStream_t stream) {
  LLMTRAIN_CUDA_REQUIRE(is_aligned16(dout), "bias_grad: dout must be 16-byte aligned");
  colsum::run<1>(dbias, nullptr, N, OC, BiasLoader{dout, OC}, scratch, stream);
}

}  // namespace llmtrain::cuda
