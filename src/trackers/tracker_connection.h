#pragma once
// One tracker on one TCP connection, pinned to one event loop: frame, decode, store, answer.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "codec/trackers/protocol.h"

namespace tern::trackers {

class TrackerServer;

class TrackerConnection : public std::enable_shared_from_this<TrackerConnection> {
 public:
  // `peer`: the device's address for logs ("ip:port"; empty → the socket's peer).
  // `initialBytes`: protocol bytes already read (after a PROXY header), processed first.
  TrackerConnection(TrackerServer& server, const codec::trackers::ProtocolInfo& protocol,
                    boost::asio::ip::tcp::socket socket, std::string peer = {},
                    std::string initialBytes = {});
  void start();
  boost::asio::any_io_executor executor() { return socket_.get_executor(); }
  std::string_view protocolName() const { return protocol_.name; }

  // Posted by the server: encode and send a downlink command (reports back via commandSent).
  void sendCommand(std::uint64_t id, const codec::trackers::Command& command);
  void closeFromServer(std::string_view reason);

 private:
  // A response owed to the device. Responses confirming positions wait for the commit; they go
  // out in the order the frames came in.
  struct PendingResponse {
    std::uint64_t sequence = 0;
    std::string bytes;
    bool ready = false;
    bool closeAfter = false;
  };

  void readMore();
  void onRead(const boost::system::error_code& ec, std::size_t bytes);
  void processInput();
  void handleFrame(std::string_view frame);
  void onResponseReady(std::uint64_t sequence);
  void flushResponses();
  void write(std::string bytes);
  void flush();
  void armIdleTimer();
  void close(std::string_view reason, bool warn);

  TrackerServer& server_;
  const codec::trackers::ProtocolInfo& protocol_;
  std::unique_ptr<codec::trackers::ProtocolCodec> codec_;
  codec::trackers::SessionState session_;
  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer idleTimer_;
  std::string peer_;
  std::string input_;
  std::size_t inputUsed_ = 0;
  std::size_t skipped_ = 0;
  bool reading_ = false;
  bool paused_ = false;
  bool closed_ = false;
  bool closeAfterWrite_ = false;
  std::int64_t lastActivityUs_ = 0;
  std::deque<PendingResponse> responses_;
  std::uint64_t nextSequence_ = 0;
  std::string outbox_;
  std::string writing_;
  bool writeInProgress_ = false;
};

}  // namespace tern::trackers
