// make_communicator: picks the implementation for this process. A world of one is always the
// single-process communicator; otherwise the store is located from the environment (the
// launcher's, or hosted here by rank 0), and the asked-for backend connects through it.
#include <spdlog/spdlog.h>

#include "dist/env_util.h"
#include "dist/tcp_store.h"
#include "llmtrain/comm.h"
#include "llmtrain/error.h"
#if LLMTRAIN_HAVE_GLOO
#include "dist/gloo_comm.h"
#endif
#include "dist/nccl_comm.h"
#include "util/cuda_plugin.h"

namespace llmtrain {

namespace {

// The rendezvous of one communicator: the store (hosted here when this is rank 0 and no launcher
// hosts it) and the key prefix of this attempt and communicator.
struct Rendezvous {
  std::unique_ptr<dist::TcpStoreServer> server;
  std::shared_ptr<dist::TcpStoreClient> store;
  std::string prefix;
  std::string host;  // the store's host
  std::string where;
  dist::Millis timeout;
};

Rendezvous rendezvous(const std::string& kind, const DistEnv& env) {
  using namespace dist;
  Rendezvous rv;
  const StoreEndpoint ep = store_endpoint_from_environment(env.rank, env.master_addr, env.master_port);
  rv.timeout = dist_timeout_from_environment();
  // Rank 0 hosts the store unless the launcher does; when the port is taken already, someone
  // else (a store started by hand, say) serves it, and the handshake will tell if it is ours.
  if (ep.host_here) rv.server = TcpStoreServer::try_start(ep.port);
  rv.store = rv.server ? std::make_shared<TcpStoreClient>("127.0.0.1", rv.server->port(), rv.timeout)
                       : std::make_shared<TcpStoreClient>(ep.host, ep.port, rv.timeout);
  // Keys of this attempt and of this process's n-th communicator (all ranks create theirs in the
  // same order), so neither a restarted job nor a second communicator reads stale addresses.
  const std::string attempt = "llmtrain/r" + std::to_string(restart_count_from_environment()) + "/";
  const int64_t seq = rv.store->add(attempt + "seq/rank" + std::to_string(env.rank), 1);
  rv.prefix = attempt + kind + std::to_string(seq) + "/";
  rv.host = ep.host;
  rv.where = ep.host + ":" + std::to_string(ep.port);
  spdlog::debug("{}: rank {}/{} rendezvous through store {} (prefix {})", kind, env.rank, env.world, rv.where,
                rv.prefix);
  return rv;
}

}  // namespace

std::unique_ptr<Communicator> make_communicator(const std::string& kind, const DistEnv& env) {
  if (kind != "single" && kind != "gloo" && kind != "nccl")
    throw InputError("unknown communicator '" + kind + "' (expected gloo or nccl)");
  if (env.world <= 1 && (!env.force_comm || kind == "single")) return make_single_communicator();
  if (env.rank < 0 || env.rank >= env.world)
    throw InputError("rank " + std::to_string(env.rank) + " is not below the world size " + std::to_string(env.world));
  if (kind == "single")
    throw InputError("communicator 'single' cannot serve a world of " + std::to_string(env.world) + " ranks");
  if (kind == "nccl") {
    const CudaPlugin& cuda = cuda_plugin("communicator 'nccl' (" + std::to_string(env.world) + " GPU ranks)");
    if (!cuda.make_nccl)
      throw InputError("communicator 'nccl': this llmtrain was built without NCCL, so it cannot run " +
                       std::to_string(env.world) + " GPU ranks (use run.backend=cpu for Gloo data parallelism)");
    Rendezvous rv = rendezvous("nccl", env);
    dist::NcclOptions o;
    o.rank = env.rank;
    o.world = env.world;
    o.local_rank = env.local_rank;
    o.store = std::move(rv.store);
    o.server = std::move(rv.server);
    o.prefix = rv.prefix;
    o.timeout = rv.timeout;
    return cuda.make_nccl(&o);
  }
#if LLMTRAIN_HAVE_GLOO
  Rendezvous rv = rendezvous("gloo", env);
  dist::GlooOptions o;
  o.rank = env.rank;
  o.world = env.world;
  o.store = std::move(rv.store);
  o.server = std::move(rv.server);
  o.prefix = rv.prefix;
  o.timeout = rv.timeout;
  if (auto iface = dist::env_get("GLOO_SOCKET_IFNAME")) o.iface = *iface;
  // On one node, loopback; across nodes, the address that routes to the store's host.
  o.peer_host = env.world == env.local_world ? "127.0.0.1" : rv.host;
  return make_gloo_communicator(std::move(o));
#else
  throw InputError("communicator 'gloo' is not built in: this llmtrain was built without Gloo "
                   "(install libgloo-dev and rebuild) so it cannot run " + std::to_string(env.world) + " ranks");
#endif
}

}  // namespace llmtrain
