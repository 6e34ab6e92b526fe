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

namespace llmtrain {

std::unique_ptr<Communicator> make_communicator(const std::string& kind, const DistEnv& env) {
  if (kind != "single" && kind != "gloo" && kind != "nccl")
    throw InputError("unknown communicator '" + kind + "' (expected gloo or nccl)");
  if (env.world <= 1) return make_single_communicator();
  if (env.rank < 0 || env.rank >= env.world)
    throw InputError("rank " + std::to_string(env.rank) + " is not below the world size " + std::to_string(env.world));
  if (kind == "single")
    throw InputError("communicator 'single' cannot serve a world of " + std::to_string(env.world) + " ranks");
  if (kind == "nccl")
    throw InputError("communicator 'nccl' is not built in: this llmtrain has no NCCL data-parallel backend yet, "
                     "so the CUDA backend runs one process only (use run.backend=cpu for Gloo data parallelism)");
#if LLMTRAIN_HAVE_GLOO
  using namespace dist;
  const StoreEndpoint ep = store_endpoint_from_environment(env.rank, env.master_addr, env.master_port);
  const Millis timeout = dist_timeout_from_environment();
  std::unique_ptr<TcpStoreServer> server;
  // Rank 0 hosts the store unless the launcher does; when the port is taken already, someone
  // else (a store started by hand, say) serves it, and the handshake will tell if it is ours.
  if (ep.host_here) server = TcpStoreServer::try_start(ep.port);
  auto store = server ? std::make_shared<TcpStoreClient>("127.0.0.1", server->port(), timeout)
                      : std::make_shared<TcpStoreClient>(ep.host, ep.port, timeout);
  // Keys of this attempt and of this process's n-th communicator (all ranks create theirs in the
  // same order), so neither a restarted job nor a second communicator reads stale addresses.
  const std::string attempt = "llmtrain/r" + std::to_string(restart_count_from_environment()) + "/";
  const int64_t seq = store->add(attempt + "seq/rank" + std::to_string(env.rank), 1);
  GlooOptions o;
  o.rank = env.rank;
  o.world = env.world;
  o.store = store;
  o.server = std::move(server);
  o.prefix = attempt + "gloo" + std::to_string(seq) + "/";
  o.timeout = timeout;
  if (auto iface = env_get("GLOO_SOCKET_IFNAME")) o.iface = *iface;
  // On one node, loopback; across nodes, the address that routes to the store's host.
  o.peer_host = env.world == env.local_world ? "127.0.0.1" : ep.host;
  spdlog::debug("gloo: rank {}/{} rendezvous through store {}:{} (prefix {})", env.rank, env.world, ep.host, ep.port,
                o.prefix);
  return make_gloo_communicator(std::move(o));
#else
  throw InputError("communicator 'gloo' is not built in: this llmtrain was built without Gloo "
                   "(install libgloo-dev and rebuild) so it cannot run " + std::to_string(env.world) + " ranks");
#endif
}

}  // namespace llmtrain
