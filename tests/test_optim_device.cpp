// The on_device entry points of the optimizer layer as seen without a GPU: make_optimizer(...,
// on_device = true) refuses with an InputError that says why (no CUDA plugin, or no visible GPU),
// and copy_state_to_host / _from_host copy host state tensors as plain memory.
#include <catch2/catch.hpp>
#include <vector>

#include "llmtrain/error.h"
#include "llmtrain/optim.h"
#include "util/cuda_plugin.h"

using namespace llmtrain;

TEST_CASE("optim device: on_device without CUDA or a GPU is an input error", "[optim]") {
  const bool plugin = try_cuda_plugin() != nullptr;
  if (cuda_device_count() > 0) {
    WARN("a GPU is visible: tests/gpu/test_gpu_optim.cpp covers the device optimizers");
    return;
  }
  ParamInfo info;
  info.name = "w";
  info.role = ParamRole::hidden_matrix;
  info.shape = {4, 4};
  info.numel = 16;
  std::vector<float> w(16, 0.0f), g(16, 1.0f);
  std::vector<ParamRef> refs{ParamRef{&info, w.data(), g.data()}};
  for (const char* type : {"adamw", "rmnp", "muon", "lowrank_muon", "polargrad", "newton_muon"}) {
    GroupConfig cfg;
    cfg.name = "matrix";
    cfg.type = type;
    cfg.lr = 0.01f;
    cfg.roles = {ParamRole::hidden_matrix};
    try {
      make_optimizer(cfg, refs, 1, true);
      FAIL("expected an InputError for " << type);
    } catch (const InputError& e) {
      const std::string msg = e.what();
      if (plugin)
        CHECK(msg.find("none is visible") != std::string::npos);
      else
        CHECK(msg.find("this build has no CUDA") != std::string::npos);
    }
    // The host path is unchanged.
    CHECK(make_optimizer(cfg, refs, 1, false)->type() == type);
  }
  // Options are still validated before anything else.
  GroupConfig bad;
  bad.name = "matrix";
  bad.type = "muon";
  bad.lr = 0.01f;
  bad.options = {{"coefficients", "jordan7"}};
  CHECK_THROWS_WITH(make_optimizer(bad, refs, 1, true), Catch::Contains("coefficients"));
}

TEST_CASE("optim device: state copies of host tensors are plain copies", "[optim]") {
  std::vector<float> data{1, 2, 3, 4, 5};
  StateTensor s{"m/x", {5}, data.data(), data.size()};
  std::vector<float> out(5, 0.0f);
  copy_state_to_host(s, out.data());
  CHECK(out == data);
  const std::vector<float> in{9, 8, 7, 6, 5};
  copy_state_from_host(s, in.data());
  CHECK(data == in);
}
