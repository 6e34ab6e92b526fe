// The parameter layout: every model tensor lives in one contiguous fp32 buffer, and ParamLayout
// names each slice (Hugging Face names), gives its shape ([out, in] for matrices: a "row" is one
// output neuron) and its role. Roles, not names, route tensors to optimizer groups and decide
// weight decay, so optimizers never parse names.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace llmtrain {

enum class ParamRole { hidden_matrix, embedding, lm_head, norm_gain, bias };

const char* role_name(ParamRole r);
// Throws InputError naming `context` for an unknown name.
ParamRole parse_role(const std::string& s, const std::string& context);

struct ParamInfo {
  std::string name;            // e.g. "transformer.h.0.attn.c_attn.weight"
  ParamRole role;
  std::vector<int64_t> shape;  // [out, in] for 2-D, [n] for 1-D
  size_t offset = 0;           // element offset into the contiguous buffer
  size_t numel = 0;
  int layer = -1;              // transformer block index, -1 for embeddings/final norm/head
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t cols() const { return shape.size() < 2 ? 1 : shape[1]; }
};

class ParamLayout {
 public:
  // Appends a tensor; offsets are assigned in insertion order.
  size_t add(const std::string& name, ParamRole role, std::vector<int64_t> shape, int layer = -1);
  const std::vector<ParamInfo>& params() const { return params_; }
  size_t total() const { return total_; }
  size_t size() const { return params_.size(); }
  const ParamInfo& operator[](size_t i) const { return params_[i]; }
  // Throws RuntimeError when absent.
  const ParamInfo& find(const std::string& name) const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  size_t index_of(const std::string& name) const;

 private:
  std::vector<ParamInfo> params_;
  std::unordered_map<std::string, size_t> index_;
  size_t total_ = 0;
};

}  // namespace llmtrain
