// Device Muon (see muon_cuda.h; the CPU twin is src/optim/muon.cpp): same options, state names and
// update as the CPU optimizer, the orthogonalization in bf16 on tensor cores.
#include "optim/muon_cuda.h"

namespace llmtrain::cuda::optim {

std::unique_ptr<Optimizer> make_muon_device(const GroupConfig& cfg, const nlohmann::json& o,
                                            const std::vector<ParamRef>& p) {
  return std::make_unique<DeviceMuon>(cfg, o, p);
}

}  // namespace llmtrain::cuda::optim
