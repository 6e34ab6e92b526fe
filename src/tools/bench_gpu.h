// CUDA microbenchmarks behind `llmtrain bench gpu` and scripts/gpu_check.sh: the two ceilings
// (cuBLASLt bf16 GEMM TFLOP/s, device-to-device copy GB/s) and per-kernel timings at GPT-2 124M
// shapes, each the median of event-timed runs on random data after a warm-up.
#pragma once
#include <cstddef>
#include <ostream>

namespace llmtrain::cuda {

// C[M,N] = A[M,K] @ B[N,K]^T through our cuBLASLt Linear wrapper, bf16 in/out, fp32 accumulation.
// Several input sets are rotated when one set fits in L2. Returns TFLOP/s (2*M*N*K / median time).
double bench_gemm_bf16_tflops(int M, int N, int K, int iters);
// cudaMemcpyAsync device-to-device of `bytes`; returns GB/s counting bytes read + bytes written.
double bench_copy_gbps(size_t bytes, int iters);
// Prints the device, the ceilings and a per-op table (markdown) to `report`; returns 0, or throws
// RuntimeError on a CUDA error.
int run_gpu_microbench(std::ostream& report);

}  // namespace llmtrain::cuda
