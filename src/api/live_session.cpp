#include "api/live_session.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <deque>

namespace tern::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;

// Client messages are small subscription changes; a megabyte of them is a mistake or an attack.
constexpr std::size_t kMaxClientMessage = 64 * 1024;
// RFC 6455: a close frame's reason fits in 123 bytes.
constexpr std::size_t kMaxCloseReason = 123;

class LiveSession : public LiveSink, public std::enable_shared_from_this<LiveSession> {
 public:
  LiveSession(beast::tcp_stream&& stream, LiveFeed& feed, LiveSessionHooks hooks, std::string peer,
              std::atomic<std::size_t>& counter)
      : ws_(std::move(stream)),
        recheckTimer_(ws_.get_executor()),
        feed_(feed),
        hooks_(std::move(hooks)),
        peer_(std::move(peer)),
        counter_(counter) {
    counter_.fetch_add(1, std::memory_order_relaxed);
  }
  ~LiveSession() override {
    if (attached_) feed_.detach();
    counter_.fetch_sub(1, std::memory_order_relaxed);
  }
  LiveSession(const LiveSession&) = delete;
  LiveSession& operator=(const LiveSession&) = delete;

  void start(http::request<http::string_body> request) {
    request_ = std::move(request);
    // The WebSocket layer has its own timeouts (handshake, idle with pings); the TCP stream's
    // request timeout must not cut a quiet subscriber off.
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& response) {
      response.set(http::field::server, "tern/" TERN_VERSION);
    }));
    ws_.read_message_max(kMaxClientMessage);
    ws_.async_accept(request_,
                     [self = shared_from_this()](beast::error_code ec) { self->onAccept(ec); });
  }

  void deliver(const LiveBatch& batch) override {
    asio::post(ws_.get_executor(), [self = shared_from_this(), batch] { self->take(*batch); });
  }

 private:
  void onAccept(beast::error_code ec) {
    request_ = {};
    if (ec) {
      spdlog::debug("live: handshake with {} failed: {}", peer_, ec.message());
      return;
    }
    if (!feed_.attach(weak_from_this())) {
      close(websocket::close_code::try_again_later, "too many live connections; retry later");
      readLoop();  // to see the client's close reply
      return;
    }
    attached_ = true;
    spdlog::debug("live: {} connected", peer_);
    scheduleRecheck();
    readLoop();
  }

  void readLoop() {
    ws_.async_read(readBuffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->onRead(ec);
    });
  }

  void onRead(beast::error_code ec) {
    if (ec) {
      // Closed by the client, by us (close handshake done), or broken; a message over the limit
      // has already been answered with close code 1009 by Beast.
      if (ec != websocket::error::closed) spdlog::debug("live: {}: {}", peer_, ec.message());
      closing_ = true;
      recheckTimer_.cancel();
      return;
    }
    if (closing_) {
      readBuffer_.clear();
      readLoop();
      return;
    }
    if (!ws_.got_text()) {
      readBuffer_.clear();
      spdlog::info("live: {} sent a binary message; closing", peer_);
      close(websocket::close_code::unknown_data, "text messages only (JSON)");
      readLoop();
      return;
    }
    const std::string text = beast::buffers_to_string(readBuffer_.data());
    readBuffer_.clear();
    replies_.push_back(filter_.apply(text));
    if (filter_.hasGroups()) resolveGroups();
    maybeWrite();
    readLoop();
  }

  void take(const std::vector<LiveEventPtr>& batch) {
    if (closing_) return;
    for (const auto& event : batch) {
      if (filter_.matches(*event)) pending_.push_back(event);
    }
    if (pending_.size() > feed_.options().sessionEvents) {
      // This client is slower than the data: it gets the latest record of each device.
      coalesceLatest(pending_);
      coalesced_ = true;
    }
    maybeWrite();
  }

  void maybeWrite() {
    while (!writing_) {
      if (closeAfterWrite_) {
        closeAfterWrite_ = false;
        sendClose();
        return;
      }
      if (closing_) return;
      if (!replies_.empty()) {
        out_ = std::move(replies_.front());
        replies_.pop_front();
      } else if (!pending_.empty()) {
        out_ = filter_.recordsMessage(pending_, coalesced_);
        pending_.clear();
        coalesced_ = false;
        if (out_.empty()) continue;  // none had a subscribed key
      } else {
        return;
      }
      writing_ = true;
      ws_.text(true);
      ws_.async_write(asio::buffer(out_),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        self->writing_ = false;
                        if (ec) {
                          self->closing_ = true;
                          self->recheckTimer_.cancel();
                          return;
                        }
                        self->maybeWrite();
                      });
    }
  }

  void close(websocket::close_code code, std::string reason) {
    if (closing_ || closeAfterWrite_) return;
    if (reason.size() > kMaxCloseReason) reason.resize(kMaxCloseReason);
    closeReason_ = websocket::close_reason(code, reason);
    recheckTimer_.cancel();
    if (writing_) {
      closeAfterWrite_ = true;  // one write at a time: the close frame follows the message
      return;
    }
    sendClose();
  }

  void sendClose() {
    closing_ = true;
    pending_.clear();
    replies_.clear();
    ws_.async_close(closeReason_, [self = shared_from_this()](beast::error_code ec) {
      if (ec) spdlog::debug("live: closing {}: {}", self->peer_, ec.message());
    });
  }

  void scheduleRecheck() {
    recheckTimer_.expires_after(std::chrono::milliseconds(feed_.options().recheckMs));
    recheckTimer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->closing_) return;
      self->recheck();
    });
  }

  void recheck() {
    if (hooks_.recheck) {
      if (auto why = hooks_.recheck()) {
        spdlog::info("live: closing {}: {}", peer_, *why);
        close(websocket::close_code::policy_error, *why);
        return;
      }
    }
    if (filter_.hasGroups()) resolveGroups();
    scheduleRecheck();
  }

  void resolveGroups() {
    if (!hooks_.listDevices) return;
    auto devices = hooks_.listDevices();
    if (!devices) {
      spdlog::warn("live: cannot read the device list for group membership: {}",
                   devices.error().message);
      return;  // keep the previous membership
    }
    filter_.resolveGroups(*devices);
  }

  websocket::stream<beast::tcp_stream> ws_;
  http::request<http::string_body> request_;
  beast::flat_buffer readBuffer_;
  asio::steady_timer recheckTimer_;
  LiveFeed& feed_;
  LiveSessionHooks hooks_;
  std::string peer_;
  std::atomic<std::size_t>& counter_;
  LiveFilter filter_;
  std::deque<std::string> replies_;  // answers to client messages, sent before records
  std::vector<LiveEventPtr> pending_;
  bool coalesced_ = false;
  std::string out_;  // the message being written
  bool writing_ = false;
  bool closing_ = false;
  bool closeAfterWrite_ = false;
  websocket::close_reason closeReason_;
  bool attached_ = false;
};

}  // namespace

void startLiveSession(beast::tcp_stream&& stream, http::request<http::string_body> request,
                      LiveFeed& feed, LiveSessionHooks hooks, std::string peer,
                      std::atomic<std::size_t>& counter) {
  auto session = std::make_shared<LiveSession>(std::move(stream), feed, std::move(hooks),
                                               std::move(peer), counter);
  session->start(std::move(request));
}

}  // namespace tern::api
