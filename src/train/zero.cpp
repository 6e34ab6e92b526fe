// ZeRO-1 sharding plan and the weight all-gather; see zero.h.
#include "train/zero.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "llmtrain/error.h"

namespace llmtrain::dist {

ShardKind zero_shard_kind(const std::string& type, const std::string& group) {
  if (type == "adamw") return ShardKind::elements;
  if (type == "rmnp") return ShardKind::rows;
  if (type == "muon" || type == "polargrad") return ShardKind::matrices;
  throw InputError("optimizer." + group + ".type: " + type +
                   " cannot shard its state with run.zero=1 (" +
                   (type == "lowrank_muon" ? std::string("one sketch RNG runs through all of its matrices in order")
                                           : std::string("its input statistics are per rank")) +
                   "); use run.zero=0 for this group's optimizer, or adamw, muon, polargrad or rmnp");
}

BufferOps host_buffer_ops() {
  BufferOps o;
  o.alloc = [](size_t n) { return std::shared_ptr<float>(new float[n](), std::default_delete<float[]>()); };
  o.copy = [](float* dst, const float* src, size_t n) {
    if (n > 0 && dst != src) std::memmove(dst, src, n * sizeof(float));
  };
  return o;
}

Zero1::Zero1(int rank, int world, BufferOps ops)
    : rank_(rank), world_(world), regions_((size_t)world), owned_((size_t)world, 0), ops_(std::move(ops)) {
  if (world < 1 || rank < 0 || rank >= world)
    throw RuntimeError("Zero1: rank " + std::to_string(rank) + " of a world of " + std::to_string(world));
}

size_t Zero1::max_owned() const { return *std::max_element(owned_.begin(), owned_.end()); }

void Zero1::own(int r, float* w, size_t len) {
  if (len == 0) return;
  auto& rs = regions_[(size_t)r];
  if (!rs.empty() && rs.back().w + rs.back().len == w)
    rs.back().len += len;  // adjacent in the weight buffer: one copy instead of two
  else
    rs.push_back({w, len});
  owned_[(size_t)r] += len;
}

std::vector<ParamRef> Zero1::shard_group(const std::string& group, const std::string& type,
                                         const std::vector<ParamRef>& params) {
  const ShardKind kind = zero_shard_kind(type, group);
  std::vector<ParamRef> mine;
  // A slice [begin, begin + len) of tensor p with the given shape (p itself when it is all of it).
  auto slice = [&](const ParamRef& p, size_t begin, size_t len, std::vector<int64_t> shape) {
    if (begin == 0 && len == p.info->numel) {
      mine.push_back(p);
      return;
    }
    ParamInfo s = *p.info;
    s.shape = std::move(shape);
    s.numel = len;
    s.offset = p.info->offset + begin;
    slices_.push_back(std::move(s));
    mine.push_back(ParamRef{&slices_.back(), p.w + begin, p.g + begin, p.whole ? p.whole : p.info});
  };

  size_t total = 0;
  for (const auto& p : params) total += p.info->numel;
  const unsigned long long W = (unsigned long long)world_, N = total;

  if (kind == ShardKind::matrices) {
    // Largest first, each to the least-loaded rank (ties: the lower rank): deterministic on every rank.
    std::vector<size_t> order(params.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return params[a].info->numel > params[b].info->numel; });
    std::vector<size_t> load((size_t)world_, 0), owner(params.size(), 0);
    for (size_t i : order) {
      const size_t r = (size_t)(std::min_element(load.begin(), load.end()) - load.begin());
      owner[i] = r;
      load[r] += params[i].info->numel;
    }
    for (size_t i = 0; i < params.size(); ++i) {
      own((int)owner[i], params[i].w, params[i].info->numel);
      if ((int)owner[i] == rank_) mine.push_back(params[i]);
    }
    return mine;
  }

  if (kind == ShardKind::elements) {
    // Rank r owns the flat range [N r / W, N (r + 1) / W) of the concatenated group.
    size_t start = 0;
    for (const auto& p : params) {
      const size_t n = p.info->numel;
      for (int r = 0; r < world_; ++r) {
        const size_t lo = (size_t)(N * (unsigned long long)r / W), hi = (size_t)(N * (unsigned long long)(r + 1) / W);
        const size_t a = std::max(lo, start), b = std::min(hi, start + n);
        if (a >= b) continue;
        own(r, p.w + (a - start), b - a);
        if (r == rank_) slice(p, a - start, b - a, {(int64_t)(b - a)});
      }
      start += n;
    }
    return mine;
  }

  // Rows: a row belongs to the rank whose flat range holds its middle element, so every rank gets
  // a contiguous run of whole rows, within one row of an equal share.
  size_t start = 0;
  for (const auto& p : params) {
    const int64_t rows = p.info->rows(), cols = p.info->cols();
    int64_t j = 0;
    while (j < rows) {
      auto owner_of = [&](int64_t row) {
        const unsigned long long mid2 = 2ull * (start + (size_t)(row * cols)) + (unsigned long long)cols;
        return (int)std::min<unsigned long long>(W - 1, mid2 * W / (2 * N));
      };
      const int r = owner_of(j);
      int64_t k = j + 1;
      while (k < rows && owner_of(k) == r) ++k;
      own(r, p.w + j * cols, (size_t)((k - j) * cols));
      if (r == rank_) slice(p, (size_t)(j * cols), (size_t)((k - j) * cols), {k - j, cols});
      j = k;
    }
    start += p.info->numel;
  }
  return mine;
}

void Zero1::all_gather_weights(Communicator& comm) {
  if (world_ == 1) return;
  if (comm.world() != world_ || comm.rank() != rank_)
    throw RuntimeError("Zero1: the communicator is rank " + std::to_string(comm.rank()) + "/" +
                       std::to_string(comm.world()) + ", the plan was made for " + std::to_string(rank_) + "/" +
                       std::to_string(world_));
  const size_t chunk = max_owned();
  if (chunk == 0) return;
  if (recv_n_ != chunk * (size_t)world_) {
    recv_n_ = chunk * (size_t)world_;
    recv_ = ops_.alloc(recv_n_);  // zero-filled, so the padding past each rank's share is defined
  }
  // Pack this rank's updated weights straight into its slot of the receive buffer (in-place gather).
  float* mine = recv_.get() + (size_t)rank_ * chunk;
  size_t at = 0;
  for (const Region& g : regions_[(size_t)rank_]) {
    ops_.copy(mine + at, g.w, g.len);
    at += g.len;
  }
  comm.all_gather(mine, recv_.get(), chunk);
  for (int r = 0; r < world_; ++r) {
    if (r == rank_) continue;
    const float* src = recv_.get() + (size_t)r * chunk;
    for (const Region& g : regions_[(size_t)r]) {
      ops_.copy(g.w, src, g.len);
      src += g.len;
    }
  }
}

}  // namespace llmtrain::dist
