// ParamLayout bookkeeping and role names.
#include "llmtrain/params.h"

#include "llmtrain/error.h"

namespace llmtrain {

const char* role_name(ParamRole r) {
  switch (r) {
    case ParamRole::hidden_matrix: return "hidden_matrix";
    case ParamRole::embedding: return "embedding";
    case ParamRole::lm_head: return "lm_head";
    case ParamRole::norm_gain: return "norm_gain";
    case ParamRole::bias: return "bias";
  }
  return "?";
}

ParamRole parse_role(const std::string& s, const std::string& context) {
  if (s == "hidden_matrix") return ParamRole::hidden_matrix;
  if (s == "embedding") return ParamRole::embedding;
  if (s == "lm_head") return ParamRole::lm_head;
  if (s == "norm_gain") return ParamRole::norm_gain;
  if (s == "bias") return ParamRole::bias;
  throw InputError(context + ": unknown parameter role '" + s +
                   "' (expected hidden_matrix, embedding, lm_head, norm_gain or bias)");
}

size_t ParamLayout::add(const std::string& name, ParamRole role, std::vector<int64_t> shape, int layer) {
  if (index_.count(name)) throw RuntimeError("duplicate parameter name " + name);
  ParamInfo p;
  p.name = name;
  p.role = role;
  p.shape = std::move(shape);
  p.offset = total_;
  p.numel = 1;
  for (int64_t d : p.shape) p.numel *= static_cast<size_t>(d);
  p.layer = layer;
  total_ += p.numel;
  index_[name] = params_.size();
  params_.push_back(std::move(p));
  return params_.size() - 1;
}

const ParamInfo& ParamLayout::find(const std::string& name) const { return params_[index_of(name)]; }

size_t ParamLayout::index_of(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw RuntimeError("no parameter named " + name);
  return it->second;
}

}  // namespace llmtrain
