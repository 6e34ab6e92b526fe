// The rendezvous key-value store: server (one thread per connection, blocking reads; GET and WAIT
// park on a condition variable until the keys appear or their deadline passes) and client (one
// blocking socket, one request at a time). The wire format is described in tcp_store.h.
#include "dist/tcp_store.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "dist/env_util.h"
#include "llmtrain/error.h"

namespace llmtrain::dist {
namespace {

constexpr char kMagic[4] = {'L', 'T', 'S', '1'};
constexpr uint32_t kMaxBody = 256u << 20;  // rendezvous payloads are bytes to kilobytes
enum Op : uint8_t { kSet = 1, kGet = 2, kWait = 3, kAdd = 4, kCheck = 5, kDelete = 6 };
enum Status : uint8_t { kOk = 0, kTimeout = 1, kError = 2 };

using Clock = std::chrono::steady_clock;

// ---- encoding ----
void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
}
void put_str(std::string& s, const std::string& v) {
  put_u32(s, (uint32_t)v.size());
  s += v;
}

// Bounds-checked reader over a request or reply body; ok() turns false on any overrun.
struct Reader {
  const std::string& s;
  size_t pos = 0;
  bool good = true;
  explicit Reader(const std::string& b) : s(b) {}
  uint64_t uint(int bytes) {
    if (!good || s.size() - pos < (size_t)bytes) {
      good = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t((unsigned char)s[pos + i]) << (8 * i);
    pos += bytes;
    return v;
  }
  std::string str() {
    const uint32_t n = (uint32_t)uint(4);
    if (!good || s.size() - pos < n) {
      good = false;
      return {};
    }
    std::string v = s.substr(pos, n);
    pos += n;
    return v;
  }
  bool ok() const { return good && pos == s.size(); }
};

std::string errno_text(int e) { return std::strerror(e); }

std::string seconds_text(Millis ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g s", ms.count() / 1000.0);
  return buf;
}

// Blocking full write; false on error (the peer went away).
bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

// Blocking full read; false on EOF or error.
bool read_all(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= (size_t)r;
  }
  return true;
}

// Full read that gives up at `deadline`. Returns 1 done, 0 timed out, -1 EOF/error (errno kept).
int read_until(int fd, char* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    if (left <= 0) return 0;
    pollfd pfd{fd, POLLIN, 0};
    const int pr = ::poll(&pfd, 1, (int)std::min<long long>(left, 1 << 30));
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) return -1;
    if (pr == 0) continue;
    ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r == 0) errno = ECONNRESET;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 1;
}

// Opens a listening socket; -1 with errno set on failure.
int open_listener(int port, const std::string& bind_addr, int& actual_port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  const int gai = ::getaddrinfo(bind_addr.empty() ? nullptr : bind_addr.c_str(), service.c_str(), &hints, &res);
  if (gai != 0) {
    errno = EADDRNOTAVAIL;
    return -1;
  }
  int fd = -1, err = EADDRNOTAVAIL;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int one = 1;
    // SO_REUSEADDR lets a restarted job bind the port while old connections sit in TIME_WAIT.
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 1024) == 0) break;
    err = errno;
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd < 0) {
    errno = err;
    return -1;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, (sockaddr*)&ss, &len);
  actual_port = ss.ss_family == AF_INET6 ? ntohs(((sockaddr_in6*)&ss)->sin6_port) : ntohs(((sockaddr_in*)&ss)->sin_port);
  return fd;
}

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

// ================================ server ================================

TcpStoreServer::TcpStoreServer(Tag, int listen_fd, int port) : listen_fd_(listen_fd), port_(port) {
  accept_thread_ = std::thread([this] { accept_loop(); });
}

TcpStoreServer::TcpStoreServer(int port, const std::string& bind_addr) {
  int actual = 0;
  const int fd = open_listener(port, bind_addr, actual);
  if (fd < 0)
    throw RuntimeError("cannot host the rendezvous store on " + bind_addr + ":" + std::to_string(port) + ": " +
                       errno_text(errno) + (errno == EADDRINUSE ? " (another job on this port? pick another one)" : ""));
  listen_fd_ = fd;
  port_ = actual;
  accept_thread_ = std::thread([this] { accept_loop(); });
}

std::unique_ptr<TcpStoreServer> TcpStoreServer::try_start(int port, const std::string& bind_addr) {
  int actual = 0;
  const int fd = open_listener(port, bind_addr, actual);
  if (fd < 0) {
    if (errno == EADDRINUSE) return nullptr;
    throw RuntimeError("cannot host the rendezvous store on " + bind_addr + ":" + std::to_string(port) + ": " +
                       errno_text(errno));
  }
  return std::unique_ptr<TcpStoreServer>(new TcpStoreServer(Tag{}, fd, actual));
}

TcpStoreServer::~TcpStoreServer() { stop(); }

void TcpStoreServer::stop() {
  if (stopping_.exchange(true)) return;
  // shutdown() wakes the thread blocked in accept() (it returns EINVAL on Linux).
  ::shutdown(listen_fd_, SHUT_RDWR);
  if (accept_thread_.joinable()) accept_thread_.join();
  ::close(listen_fd_);
  {
    std::lock_guard<std::mutex> lk(mu_);
    cv_.notify_all();
  }
  std::lock_guard<std::mutex> lk(conns_mu_);
  for (auto& c : conns_) ::shutdown(c.fd, SHUT_RDWR);
  for (auto& c : conns_) {
    if (c.thread.joinable()) c.thread.join();
    ::close(c.fd);
  }
  conns_.clear();
}

void TcpStoreServer::accept_loop() {
  while (!stopping_) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (stopping_) break;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        std::this_thread::sleep_for(Millis(50));
        continue;
      }
      break;
    }
    set_nodelay(fd);
    std::lock_guard<std::mutex> lk(conns_mu_);
    // Reap connections whose clients went away.
    for (auto it = conns_.begin(); it != conns_.end();) {
      if (it->done) {
        it->thread.join();
        ::close(it->fd);
        it = conns_.erase(it);
      } else {
        ++it;
      }
    }
    if (stopping_) {
      ::close(fd);
      break;
    }
    conns_.emplace_back();
    Conn* c = &conns_.back();
    c->fd = fd;
    c->thread = std::thread([this, c] { serve(c); });
  }
}

void TcpStoreServer::serve(Conn* c) {
  const int fd = c->fd;
  char magic[4];
  if (read_all(fd, magic, 4) && std::memcmp(magic, kMagic, 4) == 0 && write_all(fd, kMagic, 4)) {
    while (!stopping_) {
      char hdr[5];
      if (!read_all(fd, hdr, 5)) break;
      std::string h(hdr, 5);
      Reader r(h);
      const uint8_t op = (uint8_t)r.uint(1);
      const uint32_t len = (uint32_t)r.uint(4);
      if (len > kMaxBody) break;
      std::string body(len, '\0');
      if (len > 0 && !read_all(fd, &body[0], len)) break;
      if (!handle(fd, op, body)) break;
    }
  }
  c->done = true;
}

bool TcpStoreServer::handle(int fd, uint8_t op, const std::string& body) {
  Reader r(body);
  uint8_t status = kOk;
  std::string out;
  auto all_present = [this](const std::vector<std::string>& keys, std::string* missing) {
    for (const auto& k : keys)
      if (data_.find(k) == data_.end()) {
        if (missing) *missing = k;
        return false;
      }
    return true;
  };
  auto read_keys = [&r]() {
    std::vector<std::string> keys(r.uint(4));
    if (keys.size() > kMaxBody / 4) return std::vector<std::string>{};
    for (auto& k : keys) k = r.str();
    return keys;
  };
  switch (op) {
    case kSet: {
      std::string key = r.str(), value = r.str();
      if (!r.ok()) return false;
      std::lock_guard<std::mutex> lk(mu_);
      data_[key] = std::move(value);
      cv_.notify_all();
      break;
    }
    case kGet:
    case kWait: {
      const Millis timeout(r.uint(8));
      std::vector<std::string> keys;
      if (op == kGet)
        keys.push_back(r.str());
      else
        keys = read_keys();
      if (!r.ok()) return false;
      const auto deadline = Clock::now() + timeout;
      std::unique_lock<std::mutex> lk(mu_);
      std::string missing;
      cv_.wait_until(lk, deadline, [&] { return stopping_ || all_present(keys, nullptr); });
      if (stopping_) return false;
      if (!all_present(keys, &missing)) {
        status = kTimeout;
        out = missing;
      } else if (op == kGet) {
        out = data_[keys[0]];
      }
      break;
    }
    case kAdd: {
      std::string key = r.str();
      const int64_t delta = (int64_t)r.uint(8);
      if (!r.ok()) return false;
      std::lock_guard<std::mutex> lk(mu_);
      int64_t v = 0;
      auto it = data_.find(key);
      if (it != data_.end()) {
        char* end = nullptr;
        errno = 0;
        v = std::strtoll(it->second.c_str(), &end, 10);
        if (it->second.empty() || *end != '\0' || errno == ERANGE) {
          status = kError;
          out = "key '" + key + "' holds a non-integer value; add() needs a counter";
          break;
        }
      }
      v += delta;
      data_[key] = std::to_string(v);
      put_u64(out, (uint64_t)v);
      cv_.notify_all();
      break;
    }
    case kCheck: {
      auto keys = read_keys();
      if (!r.ok()) return false;
      std::lock_guard<std::mutex> lk(mu_);
      out.push_back(all_present(keys, nullptr) ? 1 : 0);
      break;
    }
    case kDelete: {
      std::string key = r.str();
      if (!r.ok()) return false;
      std::lock_guard<std::mutex> lk(mu_);
      out.push_back(data_.erase(key) > 0 ? 1 : 0);
      break;
    }
    default:
      status = kError;
      out = "unknown store operation " + std::to_string(op);
  }
  std::string reply;
  reply.push_back((char)status);
  put_u32(reply, (uint32_t)out.size());
  reply += out;
  return write_all(fd, reply.data(), reply.size());
}

// ================================ client ================================

TcpStoreClient::TcpStoreClient(const std::string& host, int port, Millis connect_timeout) : host_(host), port_(port) {
  const auto deadline = Clock::now() + connect_timeout;
  std::string last_error = "no attempt made";
  Millis backoff(20);
  for (;;) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string service = std::to_string(port);
    const int gai = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
    if (gai != 0) {
      last_error = std::string("cannot resolve host: ") + gai_strerror(gai);
    } else {
      for (addrinfo* a = res; a != nullptr && fd_ < 0; a = a->ai_next) {
        int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
          last_error = errno_text(errno);
          continue;
        }
        // Non-blocking connect so an unreachable host costs at most our deadline, not the
        // kernel's two-minute SYN timeout.
        int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
          const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
          pollfd pfd{fd, POLLOUT, 0};
          int pr;
          do pr = ::poll(&pfd, 1, (int)std::max<long long>(1, std::min<long long>(left, 5000)));
          while (pr < 0 && errno == EINTR);
          int soerr = ETIMEDOUT;
          socklen_t sl = sizeof soerr;
          if (pr > 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
          rc = soerr == 0 ? 0 : -1;
          errno = soerr;
        }
        if (rc == 0) {
          ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
          fd_ = fd;
        } else {
          last_error = errno_text(errno);
          ::close(fd);
        }
      }
      ::freeaddrinfo(res);
    }
    if (fd_ >= 0) break;
    if (Clock::now() + backoff >= deadline)
      throw RuntimeError("cannot reach the rendezvous store at " + address() + " within " +
                         seconds_text(connect_timeout) + ": " + last_error +
                         " (is rank 0 / the launcher running, and MASTER_ADDR/MASTER_PORT right?)");
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, Millis(500));
  }
  set_nodelay(fd_);
  // Handshake: a store of ours echoes the magic at once; anything else is the wrong service.
  char magic[4];
  const auto hs_deadline = Clock::now() + std::min(connect_timeout, Millis(30000)) + Millis(1000);
  const int got = write_all(fd_, kMagic, 4) ? read_until(fd_, magic, 4, hs_deadline) : -1;
  if (got != 1 || std::memcmp(magic, kMagic, 4) != 0) {
    ::close(fd_);
    fd_ = -1;
    throw RuntimeError("the service at " + address() +
                       " is not an llmtrain rendezvous store (no handshake" +
                       (got == 0 ? std::string(": no answer") : got < 0 ? ": connection closed" : ": wrong answer") +
                       "); is another program (e.g. torchrun's store) on that port? Set LLMTRAIN_STORE_PORT "
                       "or pick another MASTER_PORT");
  }
}

TcpStoreClient::~TcpStoreClient() {
  if (fd_ >= 0) ::close(fd_);
}

void TcpStoreClient::fail(const std::string& msg) {
  throw RuntimeError("rendezvous store at " + address() + ": " + msg);
}

uint8_t TcpStoreClient::request(uint8_t op, const std::string& body, std::string& reply, Millis io_timeout,
                                const char* what) {
  if (fd_ < 0) fail(std::string(what) + ": the connection was lost earlier");
  std::string msg;
  msg.push_back((char)op);
  put_u32(msg, (uint32_t)body.size());
  msg += body;
  const auto deadline = Clock::now() + io_timeout;
  char hdr[5];
  int got = -1;
  if (write_all(fd_, msg.data(), msg.size())) got = read_until(fd_, hdr, 5, deadline);
  if (got == 1) {
    std::string h(hdr, 5);
    Reader r(h);
    const uint8_t status = (uint8_t)r.uint(1);
    const uint32_t len = (uint32_t)r.uint(4);
    reply.assign(len, '\0');
    if (len <= kMaxBody && (len == 0 || read_until(fd_, &reply[0], len, deadline + Millis(30000)) == 1)) {
      if (status == kError) fail(std::string(what) + ": " + reply);
      return status;
    }
  }
  const int e = errno;
  ::close(fd_);
  fd_ = -1;
  if (got == 0) fail(std::string(what) + ": no reply within " + seconds_text(io_timeout));
  fail(std::string(what) + ": connection lost (" + errno_text(e) + "); did the process hosting the store exit?");
}

void TcpStoreClient::set(const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lk(mu_);
  std::string body, reply;
  put_str(body, key);
  put_str(body, value);
  request(kSet, body, reply, Millis(60000), ("set('" + key + "')").c_str());
}

std::string TcpStoreClient::get(const std::string& key, Millis timeout) {
  std::lock_guard<std::mutex> lk(mu_);
  std::string body, reply;
  put_u64(body, (uint64_t)timeout.count());
  put_str(body, key);
  const std::string what = "get('" + key + "')";
  if (request(kGet, body, reply, timeout + Millis(60000), what.c_str()) == kTimeout)
    fail(what + ": key not set within " + seconds_text(timeout) + " (did every rank start?)");
  return reply;
}

void TcpStoreClient::wait(const std::vector<std::string>& keys, Millis timeout) {
  std::lock_guard<std::mutex> lk(mu_);
  std::string body, reply;
  put_u64(body, (uint64_t)timeout.count());
  put_u32(body, (uint32_t)keys.size());
  for (const auto& k : keys) put_str(body, k);
  if (request(kWait, body, reply, timeout + Millis(60000), "wait") == kTimeout)
    fail("wait: key '" + reply + "' not set within " + seconds_text(timeout) + " (did every rank start?)");
}

int64_t TcpStoreClient::add(const std::string& key, int64_t delta) {
  std::lock_guard<std::mutex> lk(mu_);
  std::string body, reply;
  put_str(body, key);
  put_u64(body, (uint64_t)delta);
  const std::string what = "add('" + key + "')";
  request(kAdd, body, reply, Millis(60000), what.c_str());
  Reader r(reply);
  const int64_t v = (int64_t)r.uint(8);
  if (!r.ok()) fail(what + ": malformed reply");
  return v;
}

bool TcpStoreClient::check(const std::vector<std::string>& keys) {
  std::lock_guard<std::mutex> lk(mu_);
  std::string body, reply;
  put_u32(body, (uint32_t)keys.size());
  for (const auto& k : keys) put_str(body, k);
  request(kCheck, body, reply, Millis(60000), "check");
  return reply.size() == 1 && reply[0] == 1;
}

bool TcpStoreClient::erase(const std::string& key) {
  std::lock_guard<std::mutex> lk(mu_);
  std::string body, reply;
  put_str(body, key);
  request(kDelete, body, reply, Millis(60000), ("delete('" + key + "')").c_str());
  return reply.size() == 1 && reply[0] == 1;
}

void TcpStoreClient::barrier(const std::string& name, int world, Millis timeout) {
  // The last one in publishes "<name>/done"; everyone waits for it.
  if (add(name + "/count", 1) >= world) set(name + "/done", "1");
  try {
    wait({name + "/done"}, timeout);
  } catch (const RuntimeError&) {
    throw RuntimeError("rendezvous store at " + address() + ": barrier '" + name + "': not all " +
                       std::to_string(world) + " participants arrived within " + seconds_text(timeout));
  }
}

// ================================ environment ================================

void parse_host_port(const std::string& s, const std::string& what, std::string& host, int& port) {
  std::string h, p;
  if (!s.empty() && s[0] == '[') {  // [v6::addr]:port
    const size_t close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':')
      throw InputError(what + "=" + s + ": expected host:port");
    h = s.substr(1, close - 1);
    p = s.substr(close + 2);
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0) throw InputError(what + "=" + s + ": expected host:port");
    h = s.substr(0, colon);
    p = s.substr(colon + 1);
  }
  if (h.empty()) throw InputError(what + "=" + s + ": expected host:port");
  host = h;
  port = (int)parse_int_strict(p, what + " port", 1, 65535);
}

StoreEndpoint store_endpoint_from_environment(int rank, const std::string& master_addr, int master_port) {
  StoreEndpoint ep;
  if (auto s = env_get("LLMTRAIN_STORE")) {
    parse_host_port(*s, "LLMTRAIN_STORE", ep.host, ep.port);
    return ep;
  }
  ep.host = master_addr;
  if (auto p = env_int("LLMTRAIN_STORE_PORT", 1, 65535)) {
    ep.port = (int)*p;
  } else if (env_get("TORCHELASTIC_RUN_ID")) {
    // torchrun's agent already serves its own (c10d) store on MASTER_PORT.
    if (master_port >= 65535) throw InputError("MASTER_PORT=65535 leaves no port for the llmtrain store under torchrun; set LLMTRAIN_STORE_PORT");
    ep.port = master_port + 1;
  } else {
    ep.port = master_port;
  }
  ep.host_here = rank == 0;
  return ep;
}

Millis dist_timeout_from_environment() {
  auto s = env_int("LLMTRAIN_DIST_TIMEOUT", 1, 7 * 24 * 3600);
  return Millis(1000LL * (s ? *s : 1800));
}

int restart_count_from_environment() {
  if (auto v = env_int("LLMTRAIN_RESTART_COUNT", 0, 1 << 30)) return (int)*v;
  if (auto v = env_int("TORCHELASTIC_RESTART_COUNT", 0, 1 << 30)) return (int)*v;
  return 0;
}

}  // namespace llmtrain::dist
