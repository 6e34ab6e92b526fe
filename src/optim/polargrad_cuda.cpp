// Device PolarGrad (the CPU twin is src/optim/polargrad.cpp): the polar factor by batched
// Newton-Schulz, or by QDWH in fp64 (cuSOLVER QR / Cholesky) matrix by matrix, and the step scale
// nu = <M, U> from kernels/cuda/polargrad.cu.
#include <algorithm>
#include <cmath>

#include "optim/matrix_common_cuda.h"

namespace llmtrain::cuda::optim {
namespace {

// QDWH in double on the device, the same iteration and stopping rule as polar_qdwh (CPU).
class Qdwh {
 public:
  Qdwh(DeviceCtx& ctx, const std::vector<const ParamInfo*>& infos) : ctx_(ctx) {
    size_t x = 1, z = 1, c = 1;
    int64_t cmax = 1;
    for (const ParamInfo* p : infos) {
      const int64_t R = std::max(p->rows(), p->cols()), C = std::min(p->rows(), p->cols());
      x = std::max(x, (size_t)(R * C));
      z = std::max(z, (size_t)((R + C) * C));
      c = std::max(c, (size_t)(C * C));
      cmax = std::max(cmax, C);
    }
    X_.reset(x);
    Xn_.reset(x);
    D_.reset(x);
    Z_.reset(z);
    C_.reset(c);
    tau_.reset((size_t)cmax);
    info_.reset(1);
    int lw = 1;
    for (const ParamInfo* p : infos) {
      const int R = (int)std::max(p->rows(), p->cols()), C = (int)std::min(p->rows(), p->cols()), zr = R + C;
      int a = 0, b = 0, d = 0, e = 0;
      OPT_CUSOLVER(cusolverDnDgeqrf_bufferSize(ctx_.solver(), zr, C, Z_.data(), zr, &a));
      OPT_CUSOLVER(cusolverDnDorgqr_bufferSize(ctx_.solver(), zr, C, C, Z_.data(), zr, tau_.data(), &b));
      OPT_CUSOLVER(cusolverDnDpotrf_bufferSize(ctx_.solver(), CUBLAS_FILL_MODE_LOWER, C, C_.data(), C, &d));
      OPT_CUSOLVER(cusolverDnDpotri_bufferSize(ctx_.solver(), CUBLAS_FILL_MODE_LOWER, C, C_.data(), C, &e));
      lw = std::max({lw, a, b, d, e});
    }
    work_.reset((size_t)lw);
  }

  // out [m, n] (fp32 row-major) = polar factor of G [m, n].
  void run(const float* G, int64_t m, int64_t n, float* out) {
    cudaStream_t s = ctx_.stream();
    cublasHandle_t h = ctx_.blas();
    // Column-major tall X [R, C]: a wide G's buffer already is G^T; a tall G is transposed.
    const bool wide = m < n;
    const int64_t R = wide ? n : m, C = wide ? m : n, zr = R + C;
    const int nel = (int)(R * C);
    f32_to_f64(G, X_.data(), m, n, !wide, s);
    double alpha = 0;
    OPT_CUBLAS(cublasDnrm2(h, nel, X_.data(), 1, &alpha));  // >= ||G||_2; synchronises
    if (!(alpha > 0)) {
      OPT_CUDA(cudaMemsetAsync(out, 0, sizeof(float) * (size_t)(m * n), s));
      return;
    }
    const double inv = 1.0 / alpha;
    OPT_CUBLAS(cublasDscal(h, nel, &inv, X_.data(), 1));
    double l = 1e-12;
    const double eps = 2.220446049250313e-16;
    double* X = X_.data();
    double* Xn = Xn_.data();
    for (int it = 0; it < 40; ++it) {
      const double l2 = l * l;
      const double gam = std::cbrt(4.0 * (1.0 - l2) / (l2 * l2));
      const double sq = std::sqrt(1.0 + gam);
      const double a = sq + 0.5 * std::sqrt(8.0 - 4.0 * gam + 8.0 * (2.0 - l2) / (l2 * sq));
      const double b = (a - 1.0) * (a - 1.0) / 4.0;
      const double c = a + b - 1.0;
      const double zero = 0.0, bc = b / c;
      if (c > 100) {
        const double sc = std::sqrt(c), w = (a - b / c) / sc;
        qdwh_stack(X, Z_.data(), R, C, sc, s);
        OPT_CUSOLVER(cusolverDnDgeqrf(ctx_.solver(), (int)zr, (int)C, Z_.data(), (int)zr, tau_.data(), work_.data(),
                                      (int)work_.size(), info_.data()));
        OPT_CUSOLVER(cusolverDnDorgqr(ctx_.solver(), (int)zr, (int)C, (int)C, Z_.data(), (int)zr, tau_.data(),
                                      work_.data(), (int)work_.size(), info_.data()));
        // Xn = w Q1 Q2^T + (b/c) X.
        OPT_CUBLAS(cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, (int)R, (int)C, (int)C, &w, Z_.data(), (int)zr,
                               Z_.data() + R, (int)zr, &zero, Xn, (int)R));
      } else {
        const double w = a - b / c;
        OPT_CUBLAS(cublasDgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)C, (int)C, (int)R, &c, X, (int)R, X, (int)R, &zero,
                               C_.data(), (int)C));
        add_diag(C_.data(), C, 1.0, s);
        OPT_CUSOLVER(cusolverDnDpotrf(ctx_.solver(), CUBLAS_FILL_MODE_LOWER, (int)C, C_.data(), (int)C, work_.data(),
                                      (int)work_.size(), info_.data()));
        int info = 0;
        OPT_CUDA(cudaMemcpyAsync(&info, info_.data(), sizeof(int), cudaMemcpyDeviceToHost, s));
        OPT_CUDA(cudaStreamSynchronize(s));
        if (info != 0) throw RuntimeError("QDWH (device): Cholesky of I + cX^TX failed");
        OPT_CUSOLVER(cusolverDnDpotri(ctx_.solver(), CUBLAS_FILL_MODE_LOWER, (int)C, C_.data(), (int)C, work_.data(),
                                      (int)work_.size(), info_.data()));
        // Xn = w X (I + c X^T X)^{-1} + (b/c) X, the inverse read from its lower triangle.
        OPT_CUBLAS(cublasDsymm(h, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, (int)R, (int)C, &w, C_.data(), (int)C, X,
                               (int)R, &zero, Xn, (int)R));
      }
      OPT_CUBLAS(cublasDaxpy(h, nel, &bc, X, 1, Xn, 1));
      l = std::min(1.0, l * (a + b * l2) / (1.0 + c * l2));
      bool stop = false;
      if (1.0 - l <= 5 * eps) {  // l is data-independent: only then is the change worth measuring
        const double one = 1.0, minus = -1.0;
        OPT_CUBLAS(cublasDgeam(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)R, (int)C, &one, Xn, (int)R, &minus, X, (int)R,
                               D_.data(), (int)R));
        double diff = 0;
        OPT_CUBLAS(cublasDnrm2(h, nel, D_.data(), 1, &diff));
        stop = diff <= std::cbrt(5 * eps);
      }
      std::swap(X, Xn);
      if (stop) break;
    }
    f64_to_f32(X, out, m, n, !wide, s);
  }

 private:
  DeviceCtx& ctx_;
  DeviceBuffer<double> X_, Xn_, D_, Z_, C_, tau_, work_;
  DeviceBuffer<int> info_;
};

class DevicePolarGrad : public DeviceMatrixOptimizer {
 public:
  DevicePolarGrad(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params)
      : DeviceMatrixOptimizer(cfg, o, params), ns_(ctx_) {
    qdwh_ = o.at("polar").get<std::string>() == "qdwh";
    nsc_ = &ns_coefficients(o.at("coefficients").get<std::string>());
    ns_steps_ = o.at("ns_steps").get<int>();
    ns_.set_symmetric(o.at("ns_symmetric").get<bool>());
    layout_ = make_layout(infos_, std::vector<int>(infos_.size(), 1), std::vector<bool>(infos_.size(), true));
    if (qdwh_) {
      qdwh_impl_ = std::make_unique<Qdwh>(ctx_, infos_);
      p_.reset(std::max<size_t>(layout_.total, 1));
    } else {
      for (auto& g : layout_.groups) g.plan = ns_.add_plan(g.rows, g.cols, (int)g.units.size());
      ns_.finalize();
    }
    u_.reset(std::max<size_t>(layout_.total, 1));
    scales_.reset(std::max<size_t>(infos_.size(), 1));
    partials_.reset(kNormParts);
  }
  std::string type() const override { return "polargrad"; }

  void step(const std::vector<ParamRef>& params, float lr, int64_t step) override {
    check_params(params);
    last_ = params;
    if (rebind(params)) build(params);
    run_momentum();
    const float keep = 1.0f - lr * wd_;
    for (auto& g : layout_.groups) {
      const int64_t n = g.rows * g.cols;
      const float* U = u_.data() + g.u_off;
      if (qdwh_) {
        float* P = p_.data() + g.u_off;
        for (size_t k = 0; k < g.units.size(); ++k) qdwh_impl_->run(U + k * n, g.rows, g.cols, P + k * n);
        for (size_t k = 0; k < g.units.size(); ++k)
          dot_to_scale(U + k * n, P + k * n, false, n, partials_.data(), scales_.data() + g.unit_ids[k], ctx_.stream());
      } else {
        const uint16_t* P = static_cast<const uint16_t*>(ns_.run(g.plan, U, *nsc_, ns_steps_));
        for (size_t k = 0; k < g.units.size(); ++k)
          dot_to_scale(U + k * n, P + k * n, true, n, partials_.data(), scales_.data() + g.unit_ids[k], ctx_.stream());
      }
      // nu = <U, P> is the scale: W = W (1 - lr wd) - lr nu P.
      update_multi(g.upd.data(), g.chunks.data(), g.chunks.size(), !qdwh_, scales_.data(), keep, lr, ctx_.stream());
    }
  }

 private:
  void build(const std::vector<ParamRef>& params) {
    for (auto& g : layout_.groups) {
      const void* d = qdwh_ ? static_cast<const void*>(p_.data() + g.u_off) : ns_.result_buffer(ns_steps_);
      build_update(g, params, d, !qdwh_, ctx_.stream());
    }
    std::vector<const float*> src;
    std::vector<float*> dst;
    for (size_t i = 0; i < params.size(); ++i) {
      src.push_back(params[i].g);
      dst.push_back(u_.data() + layout_.u_off[i]);
    }
    set_momentum(src, dst);
  }

  NsEngine ns_;
  bool qdwh_ = true;
  const NsCoefficients* nsc_ = nullptr;
  int ns_steps_ = 8;
  Layout layout_;
  std::unique_ptr<Qdwh> qdwh_impl_;
  DeviceBuffer<float> u_, p_, scales_;
  DeviceBuffer<double> partials_;
};

}  // namespace

std::unique_ptr<Optimizer> make_polargrad_device(const GroupConfig& cfg, const nlohmann::json& o,
                                                 const std::vector<ParamRef>& p) {
  return std::make_unique<DevicePolarGrad>(cfg, o, p);
}

}  // namespace llmtrain::cuda::optim
