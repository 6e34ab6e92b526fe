// Microbenchmarks for the CUDA backend (see bench.h). Method (as in the device notes): random
// inputs (never zeros), a warm-up, then the median of event-timed runs; GEMM inputs rotate over
// enough buffer sets to defeat L2 when one set would fit; memory-bound kernels report GB/s over the
// fewest bytes they must move, matrix-bound ones TFLOP/s over the nominal operation count, each
// beside the measured or nominal ceiling so the gap is visible.
#include <algorithm>
#include <cstdio>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/common.cuh"
#include "tools/bench_gpu.h"
#include "model/cuda_device.h"
#include "cuda/ops.h"

namespace llmtrain::cuda {
namespace {

// ================================ kernels ================================

__device__ __forceinline__ float hash_uniform(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;  // [-1, 1)
}

__global__ void fill_bf16_kernel(bf16* p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p[i] = __float2bfloat16_rn(scale * hash_uniform(seed, i));
}
__global__ void fill_f32_kernel(float* p, int64_t n, uint64_t seed, float scale, float offset) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p[i] = offset + scale * hash_uniform(seed, i);
}
__global__ void fill_targets_kernel(int32_t* p, int64_t n, uint64_t seed, int V) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float u = 0.5f * (hash_uniform(seed, i) + 1.0f);
    p[i] = min(V - 1, static_cast<int>(u * V));
  }
}

void fill(bf16* p, int64_t n, uint64_t seed, float scale) {
  fill_bf16_kernel<<<1024, 256>>>(p, n, seed, scale);
  CUDA_CHECK_LAUNCH();
}
void fill(float* p, int64_t n, uint64_t seed, float scale, float offset) {
  fill_f32_kernel<<<1024, 256>>>(p, n, seed, scale, offset);
  CUDA_CHECK_LAUNCH();
}

struct Row {
  std::string op, shape;
  double ms, value, ceiling;
  std::string unit;
};

void print_rows(std::ostream& os, const std::vector<Row>& rows) {
  os << "| op | shape | median ms | achieved | ceiling | % of ceiling |\n";
  os << "| --- | --- | ---: | ---: | ---: | ---: |\n";
  for (const Row& r : rows) {
    std::ostringstream a, c, p;
    a << std::fixed << std::setprecision(1) << r.value << " " << r.unit;
    c << std::fixed << std::setprecision(0) << r.ceiling << " " << r.unit;
    if (r.ceiling > 0)
      p << std::fixed << std::setprecision(1) << 100.0 * r.value / r.ceiling << "%";
    else
      p << "-";
    os << "| " << r.op << " | " << r.shape << " | " << std::fixed << std::setprecision(3) << r.ms << " | " << a.str()
       << " | " << (r.ceiling > 0 ? c.str() : std::string("-")) << " | " << p.str() << " |\n";
  }
}

double gemm_ms(int M, int N, int K, int iters, const DeviceInfo& dev) {
  const size_t set_bytes = 2ull * (static_cast<size_t>(M) * K + static_cast<size_t>(N) * K + static_cast<size_t>(M) * N);
  int sets = 1;
  if (set_bytes < 2 * dev.l2_bytes) sets = static_cast<int>(std::min<size_t>(16, ceil_div<size_t>(4 * dev.l2_bytes, set_bytes)));
  std::vector<DeviceBuffer<bf16>> A, B, D;
  for (int s = 0; s < sets; ++s) {
    A.emplace_back(static_cast<size_t>(M) * K);
    B.emplace_back(static_cast<size_t>(N) * K);
    D.emplace_back(static_cast<size_t>(M) * N);
    fill(A.back().data(), static_cast<int64_t>(A.back().size()), 11 + s, 1.0f);
    fill(B.back().data(), static_cast<int64_t>(B.back().size()), 101 + s, 1.0f);
  }
  cudaStream_t stream = nullptr;
  int k = 0;
  auto ms = time_on_stream(
      [&] {
        const int s = k++ % sets;
        matmul_forward(D[s].data(), A[s].data(), B[s].data(), nullptr, M, K, N, stream);
      },
      stream, 5, iters);
  return median(ms);
}

}  // namespace

// ================================ launchers ================================

double bench_gemm_bf16_tflops(int M, int N, int K, int iters) {
  const DeviceInfo dev = device_info();
  const double ms = gemm_ms(M, N, K, iters, dev);
  return 2.0 * M * N * static_cast<double>(K) / (ms * 1e-3) / 1e12;
}

double bench_copy_gbps(size_t bytes, int iters) {
  DeviceBuffer<unsigned char> src(bytes), dst(bytes);
  CUDA_CHECK(cudaMemset(src.data(), 0x5a, bytes));
  cudaStream_t stream = nullptr;
  auto ms = time_on_stream(
      [&] { CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, stream)); }, stream, 3,
      iters);
  return 2.0 * static_cast<double>(bytes) / (median(ms) * 1e-3) / 1e9;
}

int run_gpu_microbench(std::ostream& report) {
  const DeviceInfo dev = device_info();
  int driver = 0, runtime = 0;
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  report << "## GPU microbenchmarks\n\n";
  report << "device " << dev.index << ": " << dev.name << " (sm_" << dev.cc_major << dev.cc_minor << ", "
         << dev.sm_count << " SMs, " << (dev.total_mem >> 20) << " MiB, L2 " << (dev.l2_bytes >> 20)
         << " MiB), CUDA driver " << driver << ", runtime " << runtime << "\n";
  report << "nominal dense bf16 peak: " << dev.peak_bf16_tflops << " TFLOP/s (" << dev.peak_source << ")\n\n";
  report.flush();

  std::vector<Row> rows;
  const double copy = bench_copy_gbps(1ull << 31, 30);
  rows.push_back({"copy d2d (read+write)", "2 GiB", 2.0 * (1ull << 31) / (copy * 1e9) * 1e3, copy, 0.0, "GB/s"});
  const double peak = dev.peak_bf16_tflops;
  struct Shape {
    const char* name;
    int M, N, K;
  };
  const Shape gemms[] = {
      {"gemm 8192^3", 8192, 8192, 8192},          {"gemm qkv (B*T=64K)", 65536, 2304, 768},
      {"gemm attn proj", 65536, 768, 768},       {"gemm mlp up", 65536, 3072, 768},
      {"gemm mlp down", 65536, 768, 3072},       {"gemm lm head", 65536, 50304, 768},
  };
  for (const Shape& s : gemms) {
    const double ms = gemm_ms(s.M, s.N, s.K, 20, dev);
    std::ostringstream shape;
    shape << s.M << "x" << s.N << "x" << s.K;
    rows.push_back({s.name, shape.str(), ms, 2.0 * s.M * s.N * static_cast<double>(s.K) / (ms * 1e-3) / 1e12, peak,
                    "TFLOP/s"});
  }

  // GPT-2 124M per-op timings.
  const int T = 1024, C = 768, NH = 12, HS = 64, V = 50257, Vp = 50304;
  cudaStream_t st = nullptr;
  for (int B : {16, 64}) {
    const int N = B * T;
    std::ostringstream shp;
    shp << "B=" << B << " T=" << T << " C=" << C;
    DeviceBuffer<bf16> x(static_cast<size_t>(N) * C), y(static_cast<size_t>(N) * C), dy(static_cast<size_t>(N) * C),
        dx(static_cast<size_t>(N) * C), w(C), bias(C);
    DeviceBuffer<float> mean(N), rstd(N), dw(C), db(C);
    DeviceBuffer<unsigned char> scratch(colsum_scratch_bytes(C, 2));
    fill(x.data(), N * static_cast<int64_t>(C), 1, 1.0f);
    fill(dy.data(), N * static_cast<int64_t>(C), 2, 1.0f);
    fill(dx.data(), N * static_cast<int64_t>(C), 3, 1.0f);
    fill(w.data(), C, 4, 1.0f);
    fill(bias.data(), C, 5, 1.0f);
    fill(dw.data(), C, 6, 1.0f, 0.0f);
    fill(db.data(), C, 7, 1.0f, 0.0f);
    const double act = static_cast<double>(N) * C * 2;  // one bf16 activation tensor
    double ms = median(time_on_stream(
        [&] { layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), bias.data(), N, C, 1e-5f, st); },
        st, 3, 50));
    rows.push_back({"layernorm fwd", shp.str(), ms, (2 * act + 8.0 * N) / (ms * 1e-3) / 1e9, copy, "GB/s"});
    ms = median(time_on_stream(
        [&] {
          layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), mean.data(), rstd.data(),
                             N, C, scratch.data(), st, false);
        },
        st, 3, 50));
    rows.push_back({"layernorm bwd (dinp overwrite)", shp.str(), ms, (3 * act + 8.0 * N) / (ms * 1e-3) / 1e9, copy,
                    "GB/s"});
    ms = median(time_on_stream(
        [&] {
          fused_residual_layernorm_forward(dx.data(), y.data(), mean.data(), rstd.data(), x.data(), dy.data(),
                                           w.data(), bias.data(), N, C, 1e-5f, st);
        },
        st, 3, 50));
    rows.push_back({"residual+layernorm fwd", shp.str(), ms, (4 * act + 8.0 * N) / (ms * 1e-3) / 1e9, copy, "GB/s"});
    ms = median(time_on_stream([&] { gelu_forward(y.data(), x.data(), static_cast<int64_t>(N) * C, st); }, st, 3, 50));
    rows.push_back({"gelu fwd", shp.str(), ms, 2 * act / (ms * 1e-3) / 1e9, copy, "GB/s"});

    // Attention on a fused qkv buffer [B, T, 3C].
    {
      DeviceBuffer<bf16> qkv(static_cast<size_t>(N) * 3 * C), dqkv(static_cast<size_t>(N) * 3 * C),
          out(static_cast<size_t>(N) * C), dout(static_cast<size_t>(N) * C);
      DeviceBuffer<float> lse(static_cast<size_t>(B) * NH * T);
      DeviceBuffer<unsigned char> ascratch(attention_backward_scratch_bytes(B, NH, T));
      fill(qkv.data(), N * 3 * static_cast<int64_t>(C), 8, 1.0f);
      fill(dout.data(), N * static_cast<int64_t>(C), 9, 1.0f);
      const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
      const double fwd_flops = 2.0 * B * NH * static_cast<double>(T) * T * HS;  // causal: half of 4*T*T*HS
      ms = median(time_on_stream(
          [&] {
            attention_forward(out.data(), lse.data(), qkv.data(), qkv.data() + C, qkv.data() + 2 * C, B, T, NH, NH, HS,
                              3 * C, 3 * C, scale, st);
          },
          st, 3, 30));
      std::ostringstream as;
      as << "B=" << B << " T=" << T << " NH=" << NH << " HS=" << HS;
      rows.push_back({"attention fwd", as.str(), ms, fwd_flops / (ms * 1e-3) / 1e12, peak, "TFLOP/s"});
      ms = median(time_on_stream(
          [&] {
            attention_backward(dqkv.data(), dqkv.data() + C, dqkv.data() + 2 * C, dout.data(), qkv.data(),
                               qkv.data() + C, qkv.data() + 2 * C, out.data(), lse.data(), B, T, NH, NH, HS, 3 * C,
                               3 * C, scale, ascratch.data(), st, false);
          },
          st, 3, 30));
      rows.push_back({"attention bwd (2.5x fwd flops)", as.str(), ms, 2.5 * fwd_flops / (ms * 1e-3) / 1e12, peak,
                      "TFLOP/s"});
    }
    // Fused softmax + cross-entropy, forward and backward in one pass, dlogits in place.
    {
      DeviceBuffer<bf16> logits(static_cast<size_t>(N) * Vp), work(static_cast<size_t>(N) * Vp);
      DeviceBuffer<float> losses(N);
      DeviceBuffer<int32_t> targets(N);
      fill(logits.data(), static_cast<int64_t>(N) * Vp, 10, 4.0f);
      fill_targets_kernel<<<256, 256>>>(targets.data(), N, 12, V);
      CUDA_CHECK_LAUNCH();
      // Each run starts from fresh logits: the copy is timed separately and subtracted.
      const double copy_ms = median(time_on_stream(
          [&] { CUDA_CHECK(cudaMemcpyAsync(work.data(), logits.data(), logits.bytes(), cudaMemcpyDeviceToDevice, st)); },
          st, 2, 10));
      const double both_ms = median(time_on_stream(
          [&] {
            CUDA_CHECK(cudaMemcpyAsync(work.data(), logits.data(), logits.bytes(), cudaMemcpyDeviceToDevice, st));
            softmax_xent_forward_backward(losses.data(), work.data(), targets.data(), nullptr, 1.0f / N, N, V, Vp, st);
          },
          st, 2, 10));
      ms = std::max(1e-6, both_ms - copy_ms);
      std::ostringstream ss;
      ss << "N=" << N << " Vp=" << Vp;
      rows.push_back({"softmax_xent fwd+bwd (in place)", ss.str(), ms,
                      2.0 * N * static_cast<double>(Vp) * 2 / (ms * 1e-3) / 1e9, copy, "GB/s"});
    }
  }
  print_rows(report, rows);
  report << "\nGB/s rows count the fewest bytes the op must move (each input read once, each output written "
            "once); their ceiling is the measured copy rate. TFLOP/s rows use the nominal dense bf16 peak.\n";
  report.flush();
  CUDA_CHECK(cudaDeviceSynchronize());
  return 0;
}

}  // namespace llmtrain::cuda
