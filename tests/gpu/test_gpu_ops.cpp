// Every CUDA op (kernels/cuda/ops.h) against its CPU reference (kernels/cpu/ops.h) on seeded random
// inputs. Inputs are rounded to bf16 first, so both sides start from identical values and what is
// measured is the device op's own error: bf16 outputs within 1e-2 norm-wise relative error (a
// single bf16 rounding is ~2e-3), fp32 results (statistics, parameter gradients, norms) within
// fp32 summation-order tolerances. Gradient buffers start from random values where the op
// accumulates, which also checks the += contract, and both accumulate modes of the activation
// gradients are exercised. Shapes include ragged tails (T not a multiple of the 64-row tiles, C not
// a multiple of 256, element counts not a multiple of 8) and the widest rows the kernels accept.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/ops.h"
#include "gpu_test_util.h"

namespace cpu = llmtrain::cpu;
namespace cu = llmtrain::cuda;
using namespace gputest;

namespace {
cudaStream_t const kStream = nullptr;
std::vector<int32_t> rand_ids(size_t n, uint64_t seed, int V) {
  llmtrain::Rng r(seed);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = static_cast<int32_t>(r.next_u64() % static_cast<uint64_t>(V));
  return v;
}
}  // namespace

TEST_CASE("gpu embedding forward/backward match the CPU", "[gpu][ops]") {
  GPU_TEST_REQUIRE_DEVICE();
  for (bool with_wpe : {true, false}) {
    const int B = 4, T = 96, C = 264, V = 300, Vp = 384;
    // Few distinct ids so that many positions share a vocabulary row (long sorted runs).
    std::vector<int32_t> ids = rand_ids((size_t)B * T, 7, 37);
    ids[5] = V - 1;
    auto wte = randn((size_t)Vp * C, 1), wpe = randn((size_t)T * C, 2);
    auto dwte0 = randn((size_t)Vp * C, 3, 1.0, 0.0, false), dwpe0 = randn((size_t)T * C, 4, 1.0, 0.0, false);
    auto dout = randn((size_t)B * T * C, 5);
    std::vector<float> out_ref((size_t)B * T * C), dwte_ref = dwte0, dwpe_ref = dwpe0;
    cpu::embedding_forward<float>(out_ref.data(), ids.data(), wte.data(), with_wpe ? wpe.data() : nullptr, B, T, C);
    cpu::embedding_backward<float>(dwte_ref.data(), with_wpe ? dwpe_ref.data() : nullptr, dout.data(), ids.data(), B,
                                   T, C);

    auto d_ids = to_dev_i32(ids);
    auto d_wte = to_dev_bf16(wte), d_wpe = to_dev_bf16(wpe), d_dout = to_dev_bf16(dout);
    DeviceBuffer<bf16> d_out((size_t)B * T * C);
    auto d_dwte = to_dev_f32(dwte0), d_dwpe = to_dev_f32(dwpe0);
    DeviceBuffer<unsigned char> scratch(cu::embedding_backward_scratch_bytes(B * T, Vp));
    cu::embedding_forward(d_out.data(), d_ids.data(), d_wte.data(), with_wpe ? d_wpe.data() : nullptr, B, T, C,
                          kStream);
    cu::embedding_backward(d_dwte.data(), with_wpe ? d_dwpe.data() : nullptr, d_dout.data(), d_ids.data(), B, T, C, Vp,
                           scratch.data(), scratch.bytes(), kStream);
    check_close("embedding out", from_dev_bf16(d_out.data(), d_out.size()), out_ref, kBf16Tol);
    check_close("embedding dwte", from_dev_f32(d_dwte.data(), d_dwte.size()), dwte_ref, kF32Tol);
    check_close("embedding dwpe", from_dev_f32(d_dwpe.data(), d_dwpe.size()), dwpe_ref, kF32Tol);
    // Deterministic: a second identical backward adds exactly the same amount again.
    auto first = from_dev_f32(d_dwte.data(), d_dwte.size());
    cu::embedding_backward(d_dwte.data(), nullptr, d_dout.data(), d_ids.data(), B, T, C, Vp, scratch.data(),
                           scratch.bytes(), kStream);
    auto second = from_dev_f32(d_dwte.data(), d_dwte.size());
    std::vector<float> twice = dwte_ref;
    for (size_t i = 0; i < twice.size(); ++i) twice[i] += dwte_ref[i] - dwte0[i];
    check_close("embedding dwte after a second backward", second, twice, kF32Tol);
  }
}

TEST_CASE("gpu layernorm forward/backward (plain and fused residual) match the CPU", "[gpu][ops]") {
  GPU_TEST_REQUIRE_DEVICE();
  for (int C : {64, 520, 768, 1536, 4096}) {
    for (bool bias : {true, false}) {
      const int N = 77;
      INFO("C=" << C << " bias=" << bias);
      auto a = randn((size_t)N * C, 11, 1.0, 0.3), b = randn((size_t)N * C, 12);
      auto w = randn(C, 13, 0.5, 1.0), bi = randn(C, 14, 0.2);
      auto dout = randn((size_t)N * C, 15);
      auto dinp0 = randn((size_t)N * C, 16);
      auto dw0 = randn(C, 17, 1.0, 0.0, false), db0 = randn(C, 18, 1.0, 0.0, false);
      // Reference on the bf16-rounded residual a + b (what the fused kernel normalises).
      std::vector<float> x((size_t)N * C);
      for (size_t i = 0; i < x.size(); ++i) x[i] = round_bf16(a[i] + b[i]);
      std::vector<float> out((size_t)N * C), mean(N), rstd(N), dinp = dinp0, dw = dw0, db = db0;
      cpu::layernorm_forward<float>(out.data(), mean.data(), rstd.data(), x.data(), w.data(),
                                    bias ? bi.data() : nullptr, N, C, 1e-5f);
      cpu::layernorm_backward<float>(dinp.data(), dw.data(), bias ? db.data() : nullptr, dout.data(), x.data(),
                                     w.data(), mean.data(), rstd.data(), N, C);

      auto d_a = to_dev_bf16(a), d_b = to_dev_bf16(b), d_x = to_dev_bf16(x), d_w = to_dev_bf16(w),
           d_bi = to_dev_bf16(bi), d_dout = to_dev_bf16(dout);
      DeviceBuffer<bf16> d_out((size_t)N * C), d_res((size_t)N * C), d_out2((size_t)N * C);
      DeviceBuffer<float> d_mean(N), d_rstd(N), d_mean2(N), d_rstd2(N);
      cu::layernorm_forward(d_out.data(), d_mean.data(), d_rstd.data(), d_x.data(), d_w.data(),
                            bias ? d_bi.data() : nullptr, N, C, 1e-5f, kStream);
      cu::fused_residual_layernorm_forward(d_res.data(), d_out2.data(), d_mean2.data(), d_rstd2.data(), d_a.data(),
                                           d_b.data(), d_w.data(), bias ? d_bi.data() : nullptr, N, C, 1e-5f,
                                           kStream);
      check_close("layernorm out", from_dev_bf16(d_out.data(), d_out.size()), out, kBf16Tol);
      check_close("layernorm mean", from_dev_f32(d_mean.data(), N), mean, kF32Tol);
      check_close("layernorm rstd", from_dev_f32(d_rstd.data(), N), rstd, kF32Tol);
      check_close("fused residual", from_dev_bf16(d_res.data(), d_res.size()), x, 0.0);
      check_close("fused layernorm out", from_dev_bf16(d_out2.data(), d_out2.size()), out, kBf16Tol);
      check_close("fused layernorm rstd", from_dev_f32(d_rstd2.data(), N), rstd, kF32Tol);

      for (bool acc : {true, false}) {
        INFO("accumulate=" << acc);
        auto d_dinp = to_dev_bf16(dinp0);
        auto d_dw = to_dev_f32(dw0), d_db = to_dev_f32(db0);
        DeviceBuffer<unsigned char> scratch(cu::colsum_scratch_bytes(C, 2));
        cu::layernorm_backward(d_dinp.data(), d_dw.data(), bias ? d_db.data() : nullptr, d_dout.data(), d_x.data(),
                               d_w.data(), d_mean.data(), d_rstd.data(), N, C, scratch.data(), kStream, acc);
        std::vector<float> want = dinp;
        if (!acc)
          for (size_t i = 0; i < want.size(); ++i) want[i] -= dinp0[i];
        check_close("layernorm dinp", from_dev_bf16(d_dinp.data(), d_dinp.size()), want, kBf16Tol);
        check_close("layernorm dweight", from_dev_f32(d_dw.data(), C), dw, 1e-4);
        if (bias) check_close("layernorm dbias", from_dev_f32(d_db.data(), C), db, 1e-4);
      }
    }
  }
}

TEST_CASE("gpu rmsnorm forward/backward (plain and fused residual) match the CPU", "[gpu][ops]") {
  GPU_TEST_REQUIRE_DEVICE();
  for (int C : {128, 776, 2048, 4096}) {
    const int N = 65;
    INFO("C=" << C);
    auto a = randn((size_t)N * C, 21, 1.0, 0.2), b = randn((size_t)N * C, 22);
    auto w = randn(C, 23, 0.5, 1.0), dout = randn((size_t)N * C, 24), dinp0 = randn((size_t)N * C, 25);
    auto dw0 = randn(C, 26, 1.0, 0.0, false);
    std::vector<float> x((size_t)N * C);
    for (size_t i = 0; i < x.size(); ++i) x[i] = round_bf16(a[i] + b[i]);
    std::vector<float> out((size_t)N * C), rstd(N), dinp = dinp0, dw = dw0;
    cpu::rmsnorm_forward<float>(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f);
    cpu::rmsnorm_backward<float>(dinp.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);

    auto d_a = to_dev_bf16(a), d_b = to_dev_bf16(b), d_x = to_dev_bf16(x), d_w = to_dev_bf16(w),
         d_dout = to_dev_bf16(dout);
    DeviceBuffer<bf16> d_out((size_t)N * C), d_res((size_t)N * C), d_out2((size_t)N * C);
    DeviceBuffer<float> d_rstd(N), d_rstd2(N);
    cu::rmsnorm_forward(d_out.data(), d_rstd.data(), d_x.data(), d_w.data(), N, C, 1e-6f, kStream);
    cu::fused_residual_rmsnorm_forward(d_res.data(), d_out2.data(), d_rstd2.data(), d_a.data(), d_b.data(),
                                       d_w.data(), N, C, 1e-6f, kStream);
    check_close("rmsnorm out", from_dev_bf16(d_out.data(), d_out.size()), out, kBf16Tol);
    check_close("rmsnorm rstd", from_dev_f32(d_rstd.data(), N), rstd, kF32Tol);
    check_close("fused residual", from_dev_bf16(d_res.data(), d_res.size()), x, 0.0);
    check_close("fused rmsnorm out", from_dev_bf16(d_out2.data(), d_out2.size()), out, kBf16Tol);
    for (bool acc : {true, false}) {
      INFO("accumulate=" << acc);
      auto d_dinp = to_dev_bf16(dinp0);
      auto d_dw = to_dev_f32(dw0);
      DeviceBuffer<unsigned char> scratch(cu::colsum_scratch_bytes(C, 1));
      cu::rmsnorm_backward(d_dinp.data(), d_dw.data(), d_dout.data(), d_x.data(), d_w.data(), d_rstd.data(), N, C,
                           scratch.data(), kStream, acc);
      std::vector<float> want = dinp;
      if (!acc)
        for (size_t i = 0; i < want.size(); ++i) want[i] -= dinp0[i];
      check_close("rmsnorm dinp", from_dev_bf16(d_dinp.data(), d_dinp.size()), want, kBf16Tol);
      check_close("rmsnorm dweight", from_dev_f32(d_dw.data(), C), dw, 1e-4);
    }
  }
}

TEST_CASE("gpu matmul forward/backward (cuBLASLt) match the CPU", "[gpu][ops]") {
  GPU_TEST_REQUIRE_DEVICE();
  struct Shape {
    int N, C, OC;
    bool bias;
  };
  for (Shape s : {Shape{256, 192, 320, true}, Shape{130, 768, 2304, true}, Shape{64, 256, 1000, false},
                  Shape{96, 100, 36, false}, Shape{50, 344, 130, false}}) {
    const int N = s.N, C = s.C, OC = s.OC;
    INFO("N=" << N << " C=" << C << " OC=" << OC << " bias=" << s.bias);
    auto x = randn((size_t)N * C, 31), w = randn((size_t)OC * C, 32, 0.05), bi = randn(OC, 33, 0.1);
    auto dout = randn((size_t)N * OC, 34), dinp0 = randn((size_t)N * C, 35);
    auto dw0 = randn((size_t)OC * C, 36, 0.1, 0.0, false), db0 = randn(OC, 37, 1.0, 0.0, false);
    std::vector<float> out((size_t)N * OC), dinp = dinp0, dw = dw0, db = db0;
    cpu::matmul_forward<float>(out.data(), x.data(), w.data(), s.bias ? bi.data() : nullptr, N, C, OC);
    cpu::matmul_backward<float>(dinp.data(), dw.data(), s.bias ? db.data() : nullptr, dout.data(), x.data(), w.data(),
                                N, C, OC);
    auto d_x = to_dev_bf16(x), d_w = to_dev_bf16(w), d_bi = to_dev_bf16(bi), d_dout = to_dev_bf16(dout);
    DeviceBuffer<bf16> d_out((size_t)N * OC);
    cu::matmul_forward(d_out.data(), d_x.data(), d_w.data(), s.bias ? d_bi.data() : nullptr, N, C, OC, kStream);
    check_close("matmul out", from_dev_bf16(d_out.data(), d_out.size()), out, kBf16Tol);
    for (bool acc : {true, false}) {
      INFO("accumulate=" << acc);
      auto d_dinp = to_dev_bf16(dinp0);
      auto d_dw = to_dev_f32(dw0), d_db = to_dev_f32(db0);
      DeviceBuffer<unsigned char> scratch(cu::colsum_scratch_bytes(OC, 1));
      cu::matmul_backward(d_dinp.data(), d_dw.data(), s.bias ? d_db.data() : nullptr, d_dout.data(), d_x.data(),
                          d_w.data(), N, C, OC, scratch.data(), kStream, acc);
      std::vector<float> want = dinp;
      if (!acc)
        for (size_t i = 0; i < want.size(); ++i) want[i] -= dinp0[i];
      check_close("matmul dinp", from_dev_bf16(d_dinp.data(), d_dinp.size()), want, kBf16Tol);
      // dweight accumulates the fp32 GEMM result onto the fp32 buffer: fp32-level agreement.
      check_close("matmul dweight", from_dev_f32(d_dw.data(), d_dw.size()), dw, 1e-4);
      if (s.bias) check_close("matmul dbias", from_dev_f32(d_db.data(), OC), db, 1e-4);
    }
  }
}

TEST_CASE("gpu matmul with the fused GELU epilogue matches CPU matmul + gelu", "[gpu][ops]") {
  GPU_TEST_REQUIRE_DEVICE();
  for (bool bias : {true, false}) {
    const int N = 200, C = 256, OC = 1024;
    auto x = randn((size_t)N * C, 41), w = randn((size_t)OC * C, 42, 0.08), bi = randn(OC, 43, 0.3);
    std::vector<float> pre((size_t)N * OC), act((size_t)N * OC);
    cpu::matmul_forward<float>(pre.data(), x.data(), w.data(), bias ? bi.data() : nullptr, N, C, OC);
    cpu::gelu_forward<float>(act.data(), pre.data(), (int64_t)N * OC);
    auto d_x = to_dev_bf16(x), d_w = to_dev_bf16(w), d_bi = to_dev_bf16(bi);
    DeviceBuffer<bf16> d_act((size_t)N * OC), d_pre((size_t)N * OC);
    cu::matmul_forward(d_act.data(), d_x.data(), d_w.data(), bias ? d_bi.data() : nullptr, N, C, OC, kStream,
                       d_pre.data());
    INFO("bias=" << bias);
    check_close("gelu epilogue pre-activation", from_dev_bf16(d_pre.data(), d_pre.size()), pre, kBf16Tol);
    check_close("gelu epilogue output", from_dev_bf16(d_act.data(), d_act.size()), act, kBf16Tol);
  }
}

namespace {
// One attention configuration: q, k, v live in one fused [B, T, (NH + 2 NKV) HS] buffer (the
// LLaMA layout; NKV == NH is GPT-2's c_attn layout) or in three dense buffers.
void attention_case(int B, int T, int NH, int NKV, int HS, bool fused, bool acc, uint64_t seed) {
  INFO("attention B=" << B << " T=" << T << " NH=" << NH << " NKV=" << NKV << " HS=" << HS << " fused=" << fused
                      << " accumulate=" << acc);
  const int QD = NH * HS, KD = NKV * HS;
  const int qs = fused ? QD + 2 * KD : QD, ks = fused ? QD + 2 * KD : KD;
  const size_t N = (size_t)B * T;
  const size_t qn = fused ? N * qs : N * QD, kn = fused ? 0 : N * KD;
  const float scale = 1.0f / std::sqrt((float)HS);
  // One buffer holds q|k|v (fused) or q then k then v (dense), so one prefill covers dq/dk/dv.
  auto qkv = randn(qn + 2 * kn, seed);
  auto dout = randn(N * QD, seed + 1);
  // A small prefill keeps the rounding of (prefill + increment) well below the increment's size.
  auto dqkv0 = acc ? randn(qn + 2 * kn, seed + 2, 0.05) : std::vector<float>(qn + 2 * kn, 0.0f);
  const size_t ko = fused ? (size_t)QD : qn, vo = fused ? (size_t)(QD + KD) : qn + kn;

  std::vector<float> out(N * QD), lse((size_t)B * NH * T), dqkv = dqkv0;
  cpu::attention_forward<float>(out.data(), lse.data(), qkv.data(), qkv.data() + ko, qkv.data() + vo, B, T, NH, NKV,
                                HS, qs, ks, scale);
  cpu::attention_backward<float>(dqkv.data(), dqkv.data() + ko, dqkv.data() + vo, dout.data(), qkv.data(),
                                 qkv.data() + ko, qkv.data() + vo, out.data(), lse.data(), B, T, NH, NKV, HS, qs, ks,
                                 scale);

  auto d_qkv = to_dev_bf16(qkv), d_dout = to_dev_bf16(dout), d_dqkv = to_dev_bf16(dqkv0);
  DeviceBuffer<bf16> d_out(N * QD);
  DeviceBuffer<float> d_lse((size_t)B * NH * T);
  DeviceBuffer<unsigned char> scratch(cu::attention_backward_scratch_bytes(B, NH, T));
  cu::attention_forward(d_out.data(), d_lse.data(), d_qkv.data(), d_qkv.data() + ko, d_qkv.data() + vo, B, T, NH, NKV,
                        HS, qs, ks, scale, kStream);
  cu::attention_backward(d_dqkv.data(), d_dqkv.data() + ko, d_dqkv.data() + vo, d_dout.data(), d_qkv.data(),
                         d_qkv.data() + ko, d_qkv.data() + vo, d_out.data(), d_lse.data(), B, T, NH, NKV, HS, qs, ks,
                         scale, scratch.data(), kStream, acc);
  check_close("attention out", from_dev_bf16(d_out.data(), d_out.size()), out, kBf16Tol);
  {
    auto g = from_dev_f32(d_lse.data(), d_lse.size());
    const ErrStat e = compare(g.data(), lse.data(), g.size());
    INFO("attention lse: max abs error " << e.max_abs << " at " << e.worst);
    CHECK(e.finite);
    CHECK(e.max_abs <= 2e-3);
  }
  auto got = from_dev_bf16(d_dqkv.data(), d_dqkv.size());
  // Compare dq, dk, dv separately (each has its own scale), skipping nothing: with the fused
  // layout the three interleave per token.
  auto part = [&](const std::vector<float>& v, size_t off, int width, int stride, size_t rows) {
    std::vector<float> r;
    r.reserve(rows * width);
    for (size_t t = 0; t < rows; ++t)
      for (int c = 0; c < width; ++c) r.push_back(v[off + t * stride + c]);
    return r;
  };
  auto sub0 = [&](std::vector<float> v, const std::vector<float>& p) {
    if (acc)
      for (size_t i = 0; i < v.size(); ++i) v[i] -= p[i];
    return v;
  };
  // Compare the increments (got - prefill vs want - prefill) so the prefill cannot hide errors.
  const auto g_q = part(got, 0, QD, qs, N), w_q = part(dqkv, 0, QD, qs, N), p_q = part(dqkv0, 0, QD, qs, N);
  const auto g_k = part(got, ko, KD, ks, N), w_k = part(dqkv, ko, KD, ks, N), p_k = part(dqkv0, ko, KD, ks, N);
  const auto g_v = part(got, vo, KD, ks, N), w_v = part(dqkv, vo, KD, ks, N), p_v = part(dqkv0, vo, KD, ks, N);
  // With accumulation the increment carries one extra bf16 rounding of the prefill's magnitude.
  const double tol = acc ? 2 * kBf16Tol : kBf16Tol;
  check_close("attention dq", sub0(g_q, p_q), sub0(w_q, p_q), tol);
  check_close("attention dk", sub0(g_k, p_k), sub0(w_k, p_k), tol);
  check_close("attention dv", sub0(g_v, p_v), sub0(w_v, p_v), tol);
  if (fused) {
    // Deterministic: the same backward again gives the same bits.
    DeviceBuffer<bf16> d2 = to_dev_bf16(dqkv0);
    cu::attention_backward(d2.data(), d2.data() + ko, d2.data() + vo, d_dout.data(), d_qkv.data(), d_qkv.data() + ko,
                           d_qkv.data() + vo, d_out.data(), d_lse.data(), B, T, NH, NKV, HS, qs, ks, scale,
                           scratch.data(), kStream, acc);
    auto again = from_dev_bf16(d2.data(), d2.size());
    CHECK(std::memcmp(again.data(), got.data(), got.size() * sizeof(float)) == 0);
  }
}
}  // namespace

TEST_CASE("gpu flash attention matches the CPU at T = 64, 1024, 2048 for head sizes 64 and 128", "[gpu][ops][attention]") {
  GPU_TEST_REQUIRE_DEVICE();
  for (int HS : {64, 128}) {
    attention_case(2, 64, 4, 4, HS, true, false, 100 + HS);
    attention_case(2, 1024, 4, 2, HS, true, false, 200 + HS);
    if (!reduced_shapes()) attention_case(1, 2048, 2, 1, HS, true, false, 300 + HS);
  }
}

TEST_CASE("gpu flash attention: ragged T, dense layout, GQA and accumulation", "[gpu][ops][attention]") {
  GPU_TEST_REQUIRE_DEVICE();
  attention_case(2, 200, 4, 1, 64, true, true, 401);
  attention_case(3, 77, 2, 2, 128, false, false, 402);
  attention_case(1, 1, 2, 1, 64, true, false, 403);
  attention_case(2, 129, 8, 2, 128, false, true, 404);
  attention_case(1, 1000, 4, 4, 64, false, false, 405);
}

TEST_CASE("gpu gelu and swiglu match the CPU", "[gpu][ops]") {
  GPU_TEST_REQUIRE_DEVICE();
  const int64_t n = 100003;  // tail not a multiple of 8
  auto x = randn(n, 51, 2.0), u = randn(n, 52), d = randn(n, 53), p0 = randn(n, 54), p1 = randn(n, 55);
  std::vector<float> g_out(n), g_din = p0, s_out(n), s_dg = p0, s_du = p1;
  cpu::gelu_forward<float>(g_out.data(), x.data(), n);
  cpu::gelu_backward<float>(g_din.data(), d.data(), x.data(), n);
  cpu::swiglu_forward<float>(s_out.data(), x.data(), u.data(), n);
  cpu::swiglu_backward<float>(s_dg.data(), s_du.data(), d.data(), x.data(), u.data(), n);
  auto d_x = to_dev_bf16(x), d_u = to_dev_bf16(u), d_d = to_dev_bf16(d);
  DeviceBuffer<bf16> d_out(n);
  cu::gelu_forward(d_out.data(), d_x.data(), n, kStream);
  check_close("gelu out", from_dev_bf16(d_out.data(), n), g_out, kBf16Tol);
  cu::swiglu_forward(d_out.data(), d_x.data(), d_u.data(), n, kStream);
  check_close("swiglu out", from_dev_bf16(d_out.data(), n), s_out, kBf16Tol);
  for (bool acc : {true, false}) {
    INFO("accumulate=" << acc);
    auto d_a = to_dev_bf16(p0), d_b = to_dev_bf16(p1);
    cu::gelu_backward(d_a.data(), d_d.data(), d_x.data(), n, kStream, acc);
    std::vector<float> want = g_din;
    if (!acc)
      for (int64_t i = 0; i < n; ++i) want[i] -= p0[i];
    check_close("gelu dinp", from_dev_bf16(d_a.data(), n), want, kBf16Tol);
    auto d_g = to_dev_bf16(p0);
    cu::swiglu_backward(d_g.data(), d_b.data(), d_d.data(), d_x.data(), d_u.data(), n, kStream, acc);
    std::vector<float> wg = s_dg, wu = s_du;
    if (!acc)
      for (int64_t i = 0; i < n; ++i) {
        wg[i] -= p0[i];
        wu[i] -= p1[i];
      }
    check_close("swiglu dgate", from_dev_bf16(d_g.data(), n), wg, kBf16Tol);
    check_close("swiglu dup", from_dev_bf16(d_b.data(), n), wu, kBf16Tol);
  }
}

TEST_CASE("gpu rope tables, forward and backward match the CPU", "[gpu][ops]") {
  GPU_TEST_REQUIRE_DEVICE();
  for (int HS : {64, 128}) {
    const int B = 2, T = 300, H = 3, stride = H * HS + 2 * HS;  // strided, as in a fused qkv buffer
    INFO("HS=" << HS);
    std::vector<float> cos_t((size_t)T * HS / 2), sin_t((size_t)T * HS / 2);
    cpu::rope_tables(cos_t.data(), sin_t.data(), T, HS, 10000.0f);
    DeviceBuffer<float> d_cos(cos_t.size()), d_sin(sin_t.size());
    cu::rope_tables(d_cos.data(), d_sin.data(), T, HS, 10000.0f, kStream);
    check_close("rope cos table", from_dev_f32(d_cos.data(), cos_t.size()), cos_t, 1e-6);
    check_close("rope sin table", from_dev_f32(d_sin.data(), sin_t.size()), sin_t, 1e-6);
    auto x = randn((size_t)B * T * stride, 61 + HS);
    std::vector<float> fx = x, bx = x;
    cpu::rope_forward<float>(fx.data(), cos_t.data(), sin_t.data(), B, T, H, HS, stride);
    cpu::rope_backward<float>(bx.data(), cos_t.data(), sin_t.data(), B, T, H, HS, stride);
    auto d_x = to_dev_bf16(x), d_y = to_dev_bf16(x);
    cu::rope_forward(d_x.data(), d_cos.data(), d_sin.data(), B, T, H, HS, stride, kStream);
    cu::rope_backward(d_y.data(), d_cos.data(), d_sin.data(), B, T, H, HS, stride, kStream);
    auto gx = from_dev_bf16(d_x.data(), x.size()), gy = from_dev_bf16(d_y.data(), x.size());
    check_close("rope forward", gx, fx, kBf16Tol);
    check_close("rope backward", gy, bx, kBf16Tol);
    // Columns past the H heads of each token are not touched.
    bool untouched = true;
    for (size_t t = 0; t < (size_t)B * T; ++t)
      for (int c = H * HS; c < stride; ++c) untouched &= gx[t * stride + c] == x[t * stride + c];
    CHECK(untouched);
  }
}

TEST_CASE("gpu residual, bias_grad, global norm, scale and casts", "[gpu][ops]") {
  GPU_TEST_REQUIRE_DEVICE();
  const int64_t n = 1000003;
  auto a = randn(n, 71), b = randn(n, 72);
  std::vector<float> r(n);
  cpu::residual_forward<float>(r.data(), a.data(), b.data(), n);
  auto d_a = to_dev_bf16(a), d_b = to_dev_bf16(b);
  DeviceBuffer<bf16> d_r(n);
  cu::residual_forward(d_r.data(), d_a.data(), d_b.data(), n, kStream);
  // One fp32 add then one rounding: exactly the rounded CPU sum.
  check_close("residual", from_dev_bf16(d_r.data(), n), round_all(r), 0.0);

  {
    const int N = 333, OC = 776;
    auto g = randn((size_t)N * OC, 73);
    auto db0 = randn(OC, 74, 1.0, 0.0, false);
    std::vector<float> want = db0;
    for (int i = 0; i < N; ++i)
      for (int c = 0; c < OC; ++c) want[c] += g[(size_t)i * OC + c];
    auto d_g = to_dev_bf16(g);
    auto d_db = to_dev_f32(db0);
    DeviceBuffer<unsigned char> scratch(cu::colsum_scratch_bytes(OC, 1));
    cu::bias_grad(d_db.data(), d_g.data(), N, OC, scratch.data(), kStream);
    check_close("bias_grad", from_dev_f32(d_db.data(), OC), want, 1e-5);
  }

  auto x = randn(n, 75, 1e-3, 0.0, false);
  double want = 0;
  for (float v : x) want += (double)v * v;
  auto d_x = to_dev_f32(x);
  DeviceBuffer<double> d_out(1);
  DeviceBuffer<unsigned char> scratch(cu::global_norm_scratch_bytes());
  cu::global_norm_squared(d_out.data(), d_x.data(), n, scratch.data(), kStream);
  double got = 0, got2 = 0;
  d_out.download(&got);
  cu::global_norm_squared(d_out.data(), d_x.data(), n, scratch.data(), kStream);
  d_out.download(&got2);
  CHECK(std::fabs(got - want) <= 1e-12 * want);
  CHECK(std::memcmp(&got, &got2, sizeof(double)) == 0);

  cu::scale_inplace(d_x.data(), 0.37f, n, kStream);
  auto sx = from_dev_f32(d_x.data(), n);
  bool exact = true;
  for (int64_t i = 0; i < n; ++i) exact &= sx[i] == x[i] * 0.37f;
  CHECK(exact);

  // fp32 -> bf16 round to nearest even, and back (exact).
  auto d_src = to_dev_f32(x);
  DeviceBuffer<bf16> d_h(n);
  cu::cast_f32_to_bf16(d_h.data(), d_src.data(), n, kStream);
  auto hb = from_dev_bf16(d_h.data(), n);
  bool rne = true;
  for (int64_t i = 0; i < n; ++i) rne &= hb[i] == round_bf16(x[i]);
  CHECK(rne);
  DeviceBuffer<float> d_back(n);
  cu::cast_bf16_to_f32(d_back.data(), d_h.data(), n, kStream);
  CHECK(from_dev_f32(d_back.data(), n) == hb);
  // Stochastic rounding: one of the two neighbours, unbiased on average, a pure function of
  // (seed, step, index).
  cu::cast_f32_to_bf16_stochastic(d_h.data(), d_src.data(), n, 42, 7, kStream);
  auto s1 = from_dev_bf16(d_h.data(), n);
  cu::cast_f32_to_bf16_stochastic(d_h.data(), d_src.data(), n, 42, 7, kStream);
  auto s2 = from_dev_bf16(d_h.data(), n);
  CHECK(s1 == s2);
  bool neighbours = true;
  double bias = 0, mag = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &x[i], 4);
    const float toward_zero = bf2f(static_cast<uint16_t>(u >> 16));
    const float away = bf2f(static_cast<uint16_t>((u >> 16) + 1));
    neighbours &= s1[i] == toward_zero || ((u & 0xFFFFu) != 0 && s1[i] == away);
    bias += (double)s1[i] - x[i];
    mag += std::fabs(x[i]);
  }
  CHECK(neighbours);
  CHECK(std::fabs(bias) <= 1e-3 * mag);
}

TEST_CASE("gpu softmax cross-entropy (separate and fused in place) matches the CPU", "[gpu][ops]") {
  GPU_TEST_REQUIRE_DEVICE();
  for (int V : {1000, 50257}) {
    const int Vp = (V + 127) / 128 * 128, N = 37;
    INFO("V=" << V);
    auto logits = randn((size_t)N * Vp, 81, 3.0);
    for (int i = 0; i < N; ++i)  // padding columns hold garbage that must be ignored
      for (int c = V; c < Vp; ++c) logits[(size_t)i * Vp + c] = 100.0f;
    std::vector<int32_t> targets = rand_ids(N, 82, V);
    targets[3] = -1;
    targets[10] = V - 1;
    targets[11] = 0;
    auto dl = randn(N, 83, 0.1, 1.0, false);
    std::vector<float> losses(N), dlog((size_t)N * Vp), dlog_u((size_t)N * Vp);
    std::vector<float> ones(N, 0.25f);
    cpu::softmax_xent_forward<float>(losses.data(), logits.data(), targets.data(), N, V, Vp);
    cpu::softmax_xent_backward<float>(dlog.data(), logits.data(), targets.data(), dl.data(), N, V, Vp);
    cpu::softmax_xent_backward<float>(dlog_u.data(), logits.data(), targets.data(), ones.data(), N, V, Vp);

    auto d_logits = to_dev_bf16(logits);
    auto d_t = to_dev_i32(targets);
    auto d_dl = to_dev_f32(dl);
    DeviceBuffer<float> d_losses(N);
    DeviceBuffer<bf16> d_dlog((size_t)N * Vp);
    cu::softmax_xent_forward(d_losses.data(), d_logits.data(), d_t.data(), N, V, Vp, kStream);
    check_close("xent losses", from_dev_f32(d_losses.data(), N), losses, 1e-5);
    cu::softmax_xent_backward(d_dlog.data(), d_logits.data(), d_t.data(), d_dl.data(), 0.0f, N, V, Vp, kStream);
    auto g = from_dev_bf16(d_dlog.data(), d_dlog.size());
    check_close("xent dlogits (per-row dloss)", g, dlog, kBf16Tol);
    bool zero_pad = true;
    for (int i = 0; i < N; ++i)
      for (int c = 0; c < Vp; ++c)
        if (c >= V || i == 3) zero_pad &= g[(size_t)i * Vp + c] == 0.0f;
    CHECK(zero_pad);
    // Fused, in place, uniform dloss.
    cu::softmax_xent_forward_backward(d_losses.data(), d_logits.data(), d_t.data(), nullptr, 0.25f, N, V, Vp, kStream);
    check_close("fused xent losses", from_dev_f32(d_losses.data(), N), losses, 1e-5);
    check_close("fused xent dlogits in place", from_dev_bf16(d_logits.data(), d_logits.size()), dlog_u, kBf16Tol);
  }
}

TEST_CASE("gpu stochastic bf16 rounding: unbiased per value, keyed by (seed, step) only", "[gpu][ops][cast]") {
  GPU_TEST_REQUIRE_DEVICE();
  // M values spread over magnitudes and signs, with discarded fractions from 0 to nearly 1; each
  // is replicated K times (different indices: independent roundings within one call) and rounded
  // again at S different steps (independent roundings over time).
  const int M = 64, K = 2048, S = 128;
  std::vector<float> vals(M);
  llmtrain::Rng r(91);
  for (int i = 0; i < M; ++i) {
    const float base = (float)((i % 2 ? -1.0 : 1.0) * std::ldexp(1.0 + r.uniform(), (i % 13) - 6));
    uint32_t u;
    std::memcpy(&u, &base, 4);
    u = (u & 0xFFFF0000u) | static_cast<uint32_t>((i * 1031) % 65536);  // fraction (i*1031 mod 2^16) / 2^16
    std::memcpy(&vals[i], &u, 4);
  }
  auto neighbours_of = [](float x, float* lo, float* hi) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    *lo = bf2f(static_cast<uint16_t>(u >> 16));  // toward zero
    *hi = (u & 0xFFFFu) ? bf2f(static_cast<uint16_t>((u >> 16) + 1)) : *lo;
  };
  // The tolerance: 6 standard deviations of a mean of n Bernoulli(f) roundings one ulp apart.
  auto check_mean = [&](int i, double mean, int n) {
    float lo, hi;
    neighbours_of(vals[i], &lo, &hi);
    const double ulp = std::fabs((double)hi - lo), f = std::fabs((double)vals[i] - lo) / (ulp > 0 ? ulp : 1.0);
    const double tol = 6.0 * ulp * std::sqrt(f * (1.0 - f) / n) + 1e-3 * ulp;
    INFO("value " << vals[i] << " fraction " << f << " mean " << mean << " n " << n);
    CHECK(std::fabs(mean - vals[i]) <= tol);
  };

  // Within one call: K copies of each value.
  const int64_t n = (int64_t)M * K;
  std::vector<float> rep(n);
  for (int64_t j = 0; j < n; ++j) rep[j] = vals[j % M];
  auto d_rep = to_dev_f32(rep);
  DeviceBuffer<bf16> d_out(n);
  cu::cast_f32_to_bf16_stochastic(d_out.data(), d_rep.data(), n, 1337, 1, kStream);
  const auto once = from_dev_bf16(d_out.data(), n);
  std::vector<double> sum(M, 0.0);
  bool neighbours = true;
  for (int64_t j = 0; j < n; ++j) {
    float lo, hi;
    neighbours_of(rep[j], &lo, &hi);
    neighbours &= once[j] == lo || once[j] == hi;
    sum[j % M] += once[j];
  }
  CHECK(neighbours);
  for (int i = 0; i < M; ++i) check_mean(i, sum[i] / K, K);

  // Over steps: the same M values at S steps.
  auto d_vals = to_dev_f32(vals);
  DeviceBuffer<bf16> d_v(M);
  std::fill(sum.begin(), sum.end(), 0.0);
  std::vector<float> step1;
  for (int s = 1; s <= S; ++s) {
    cu::cast_f32_to_bf16_stochastic(d_v.data(), d_vals.data(), M, 1337, (uint64_t)s, kStream);
    const auto h = from_dev_bf16(d_v.data(), M);
    if (s == 1) step1 = h;
    for (int i = 0; i < M; ++i) sum[i] += h[i];
  }
  for (int i = 0; i < M; ++i) check_mean(i, sum[i] / S, S);

  // Same (seed, step) -> same bits; another step or another seed -> other bits somewhere.
  cu::cast_f32_to_bf16_stochastic(d_out.data(), d_rep.data(), n, 1337, 1, kStream);
  CHECK(from_dev_bf16(d_out.data(), n) == once);
  cu::cast_f32_to_bf16_stochastic(d_out.data(), d_rep.data(), n, 1337, 2, kStream);
  CHECK(from_dev_bf16(d_out.data(), n) != once);
  cu::cast_f32_to_bf16_stochastic(d_out.data(), d_rep.data(), n, 1338, 1, kStream);
  CHECK(from_dev_bf16(d_out.data(), n) != once);
  // Values exactly representable in bf16 never move, and inf/nan pass through.
  std::vector<float> exact = {0.0f, -0.0f, 1.0f, -2.5f, bf2f(0x7F7F), INFINITY, -INFINITY};
  auto d_exact = to_dev_f32(exact);
  DeviceBuffer<bf16> d_e(exact.size());
  cu::cast_f32_to_bf16_stochastic(d_e.data(), d_exact.data(), (int64_t)exact.size(), 5, 9, kStream);
  CHECK(from_dev_bf16(d_e.data(), exact.size()) == exact);
}
