// ZeRO-1 (run.zero = 1): the optimizer state is split across the data-parallel ranks. Every rank
// still holds all weights and, after the gradient all-reduce, all gradients; it runs its groups'
// optimizers on the part of each group it owns only (so it keeps only that part's state), and an
// all-gather of the updated weights then gives every rank the whole model again. How a group is
// split depends on its optimizer, so that the per-element math is exactly the unsharded one and the
// weights are bitwise those of a run without ZeRO-1:
//   elements (adamw, elementwise):   the group's tensors concatenated, cut into `world` equal flat
//                                    ranges (a tensor may be split anywhere);
//   rows     (rmnp, row-separable):  the same, but cut only between rows of a matrix;
//   matrices (muon, polargrad):      whole matrices, largest first, each to the least-loaded rank.
// lowrank_muon (one sketch RNG shared by all matrices in order) and newton_muon are rejected.
#pragma once
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmtrain/comm.h"
#include "llmtrain/optim.h"

namespace llmtrain::dist {

enum class ShardKind { elements, rows, matrices };

// The split used for an optimizer type; InputError naming optimizer.<group>.type when the type
// cannot be sharded without changing its results.
ShardKind zero_shard_kind(const std::string& type, const std::string& group);

// Where the weights live: the all-gather packs slices into a buffer of the same kind of memory
// (host memory for the cpu backend, device memory for cuda; see Backend::alloc_floats).
struct BufferOps {
  std::function<std::shared_ptr<float>(size_t n)> alloc;
  std::function<void(float* dst, const float* src, size_t n)> copy;
};
BufferOps host_buffer_ops();

class Zero1 {
 public:
  Zero1(int rank, int world, BufferOps ops = host_buffer_ops());
  int rank() const { return rank_; }
  int world() const { return world_; }

  // Splits one group's tensors among the ranks (every rank calls this for the same groups in the
  // same order) and returns the slices this rank updates: ParamRefs into the same weight and
  // gradient buffers, whose `info` describes the slice (same name and role; shape [len] for a flat
  // range, [rows, cols] for a block of rows) and whose `whole` is the original tensor. A tensor
  // this rank owns entirely keeps its original ParamRef. The result may be empty.
  std::vector<ParamRef> shard_group(const std::string& group, const std::string& type,
                                    const std::vector<ParamRef>& params);

  // Elements of the groups sharded so far that rank r updates.
  size_t owned(int r) const { return owned_[(size_t)r]; }
  size_t max_owned() const;

  // After every group's optimizer stepped on its slices: writes every other rank's updated
  // weights into this rank's buffers (one all-gather of max_owned() floats per rank).
  void all_gather_weights(Communicator& comm);

 private:
  struct Region {
    float* w;
    size_t len;
  };
  void own(int r, float* w, size_t len);

  int rank_, world_;
  std::vector<std::vector<Region>> regions_;  // per rank, in the order that rank packs them
  std::vector<size_t> owned_;
  std::deque<ParamInfo> slices_;  // stable addresses for the slices' ParamInfo
  BufferOps ops_;
  std::shared_ptr<float> recv_;  // world x max_owned() floats, allocated on the first gather
  size_t recv_n_ = 0;
};

}  // namespace llmtrain::dist
