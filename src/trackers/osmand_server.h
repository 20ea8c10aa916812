#pragma once
// OsmAnd / Traccar Client over HTTP (port 5055): GET or POST /?id=…&lat=…&lon=…. The 200 answer
// goes out only after the position is committed, like every tracker ACK.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "core/config.h"
#include "net/event_loop_pool.h"
#include "net/tcp_listener.h"

namespace tern::ingest {
class Pipeline;
}

namespace tern::trackers {

class OsmandServer {
 public:
  // proxyProtocol: the listener expects a PROXY protocol header first (trackers.proxy_protocol).
  OsmandServer(net::EventLoopPool& pool, ingest::Pipeline& pipeline, std::string nodeId,
               bool proxyProtocol = false);
  ~OsmandServer();
  void start(const core::HostPort& address);
  void stopAccepting();
  std::uint16_t port() const;
  std::uint64_t positions() const { return positions_.load(); }
  std::uint64_t rejected() const { return rejected_.load(); }

  // For sessions.
  ingest::Pipeline& pipeline() { return pipeline_; }
  const std::string& nodeId() const { return nodeId_; }
  void countPosition() { positions_.fetch_add(1, std::memory_order_relaxed); }
  void countRejected() { rejected_.fetch_add(1, std::memory_order_relaxed); }

 private:
  net::EventLoopPool& pool_;
  ingest::Pipeline& pipeline_;
  std::string nodeId_;
  bool proxyProtocol_ = false;
  std::unique_ptr<net::TcpListener> listener_;
  std::atomic<std::uint64_t> positions_{0};
  std::atomic<std::uint64_t> rejected_{0};
};

}  // namespace tern::trackers
