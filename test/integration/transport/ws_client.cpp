#include "integration/transport/ws_client.h"

#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>

namespace tern::test {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace mqtt = codec::mqtt;
using tcp = asio::ip::tcp;

WsClient::WsClient(ssl::context* tlsContext) : tlsContext_(tlsContext) {}

WsClient::~WsClient() {
  boost::system::error_code ignored;
  if (ws_) beast::get_lowest_layer(*ws_).close(ignored);
  if (wss_) beast::get_lowest_layer(*wss_).close(ignored);
}

template <class Fn>
bool WsClient::withStream(Fn&& fn) {
  if (ws_) return fn(*ws_);
  if (wss_) return fn(*wss_);
  return false;
}

template <class Start>
boost::system::error_code WsClient::run(Start&& start, std::chrono::milliseconds timeout) {
  bool done = false;
  boost::system::error_code result;
  start([&](const boost::system::error_code& ec, auto&&...) {
    done = true;
    result = ec;
  });
  io_.restart();
  io_.run_for(timeout);
  if (!done) {
    boost::system::error_code ignored;
    if (ws_) beast::get_lowest_layer(*ws_).close(ignored);
    if (wss_) beast::get_lowest_layer(*wss_).close(ignored);
    io_.restart();
    io_.run_for(std::chrono::seconds(5));  // the aborted operation completes
    closed_ = true;
    return asio::error::timed_out;
  }
  return result;
}

unsigned WsClient::open(std::uint16_t port, const std::string& target, const std::string& protocols,
                        const std::string& prefix) {
  tcp::socket socket(io_);
  boost::system::error_code ec;
  socket.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) return 0;
  socket.set_option(tcp::no_delay(true), ec);
  if (!prefix.empty()) asio::write(socket, asio::buffer(prefix), ec);
  if (ec) return 0;
  websocket::response_type response;
  auto handshake = [&](auto& ws) {
    ws.set_option(websocket::stream_base::decorator([protocols](websocket::request_type& request) {
      if (!protocols.empty()) request.set(http::field::sec_websocket_protocol, protocols);
    }));
    ws.binary(true);
    return run(
        [&](auto handler) {
          ws.async_handshake(response, "localhost", target,
                             [handler](const boost::system::error_code& e) mutable { handler(e); });
        },
        std::chrono::seconds(10));
  };
  if (tlsContext_ == nullptr) {
    ws_.emplace(std::move(socket));
    ec = handshake(*ws_);
  } else {
    wss_.emplace(std::move(socket), *tlsContext_);
    ec = run(
        [&](auto handler) {
          wss_->next_layer().async_handshake(
              ssl::stream_base::client,
              [handler](const boost::system::error_code& e) mutable { handler(e); });
        },
        std::chrono::seconds(10));
    if (ec) return 0;
    ec = handshake(*wss_);
  }
  protocol_ = std::string(response[http::field::sec_websocket_protocol]);
  if (ec && ec != websocket::error::upgrade_declined) return 0;  // no HTTP answer at all
  return response.result_int();
}

bool WsClient::writeBinary(const std::string& bytes) {
  return withStream([&](auto& ws) {
    ws.binary(true);
    return !run([&](auto handler) { ws.async_write(asio::buffer(bytes), handler); },
                std::chrono::seconds(5));
  });
}

bool WsClient::writeFragments(const std::vector<std::string>& parts) {
  return withStream([&](auto& ws) {
    ws.binary(true);
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const bool last = i + 1 == parts.size();
      if (run([&](auto handler) { ws.async_write_some(last, asio::buffer(parts[i]), handler); },
              std::chrono::seconds(5))) {
        return false;
      }
    }
    return true;
  });
}

bool WsClient::writeText(const std::string& text) {
  return withStream([&](auto& ws) {
    ws.text(true);
    const bool ok = !run([&](auto handler) { ws.async_write(asio::buffer(text), handler); },
                         std::chrono::seconds(5));
    ws.binary(true);
    return ok;
  });
}

bool WsClient::writePacket(const mqtt::Packet& packet) {
  std::string bytes;
  mqtt::encode(packet, bytes);
  return writeBinary(bytes);
}

std::optional<mqtt::Packet> WsClient::receive(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (!received_.empty()) {
      mqtt::Packet packet = std::move(received_.front());
      received_.pop_front();
      return packet;
    }
    // Parse what we have: one message may hold several packets, and a packet may span messages.
    for (;;) {
      mqtt::Frame frame = mqtt::splitFrame(input_, 268435455);
      if (frame.status != mqtt::DecodeStatus::kOk) break;
      mqtt::Packet packet;
      if (mqtt::parsePacket(frame.header, frame.body, packet).status != mqtt::DecodeStatus::kOk) {
        return std::nullopt;
      }
      received_.push_back(std::move(packet));
      input_.erase(0, frame.size);
    }
    if (!received_.empty()) continue;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (closed_ || left.count() <= 0) return std::nullopt;
    beast::flat_buffer buffer;
    const bool ok = withStream([&](auto& ws) {
      return !run([&](auto handler) { ws.async_read(buffer, handler); }, left);
    });
    if (!ok) {
      closed_ = true;
      return std::nullopt;
    }
    input_.append(static_cast<const char*>(buffer.data().data()), buffer.size());
  }
}

bool WsClient::connectMqtt(const std::string& clientId) {
  mqtt::Connect connect;
  connect.protocolName = "MQTT";
  connect.protocolLevel = 4;
  connect.clientId = clientId;
  connect.cleanSession = true;
  connect.keepAlive = 60;
  if (!writePacket(connect)) return false;
  auto packet = receive();
  return packet && std::holds_alternative<mqtt::Connack>(*packet) &&
         std::get<mqtt::Connack>(*packet).returnCode == mqtt::ConnackCode::kAccepted;
}

std::optional<std::uint16_t> WsClient::waitClose(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    beast::flat_buffer buffer;
    boost::system::error_code ec;
    std::optional<std::uint16_t> code;
    withStream([&](auto& ws) {
      ec = run([&](auto handler) { ws.async_read(buffer, handler); },
               std::chrono::duration_cast<std::chrono::milliseconds>(
                   deadline - std::chrono::steady_clock::now()));
      if (ec == websocket::error::closed) code = ws.reason().code;
      return true;
    });
    if (!ec) continue;  // a message; keep reading
    closed_ = true;
    return code;
  }
  return std::nullopt;
}

}  // namespace tern::test
