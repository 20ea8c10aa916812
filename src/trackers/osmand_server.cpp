#include "trackers/osmand_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstring>
#include <map>

#include "codec/trackers/osmand/osmand.h"
#include "core/time.h"
#include "ingest/pipeline.h"
#include "trackers/position_record.h"

namespace tern::trackers {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%' && i + 2 < text.size() && hexValue(text[i + 1]) >= 0 &&
               hexValue(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexValue(text[i + 1]) * 16 + hexValue(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

void parseForm(std::string_view text, std::map<std::string, std::string>& out) {
  while (!text.empty()) {
    std::size_t amp = text.find('&');
    std::string_view pair = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view{} : text.substr(amp + 1);
    if (pair.empty()) continue;
    std::size_t eq = pair.find('=');
    std::string key = percentDecode(pair.substr(0, eq));
    std::string value = eq == std::string_view::npos ? "" : percentDecode(pair.substr(eq + 1));
    out[key] = value;
  }
}

class OsmandSession : public std::enable_shared_from_this<OsmandSession> {
 public:
  // `initialBytes`: request bytes already read with a PROXY header; parsed before the socket.
  OsmandSession(OsmandServer& server, asio::ip::tcp::socket socket, const std::string& initialBytes)
      : server_(server), stream_(std::move(socket)) {
    if (!initialBytes.empty()) {
      auto space = buffer_.prepare(initialBytes.size());
      std::memcpy(space.data(), initialBytes.data(), initialBytes.size());
      buffer_.commit(initialBytes.size());
    }
  }

  void start() { read(); }

 private:
  void read() {
    request_ = {};
    parser_.emplace();
    parser_->body_limit(16 * 1024);
    stream_.expires_after(std::chrono::seconds(60));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->onRead(ec); });
  }

  void onRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec) {
      if (ec && ec != http::error::end_of_stream && ec != beast::error::timeout &&
          ec != asio::error::eof && ec != asio::error::connection_reset) {
        reply(http::status::bad_request, "bad request: " + ec.message(), false);
        return;
      }
      beast::error_code ignored;
      stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
      return;
    }
    request_ = parser_->release();
    std::map<std::string, std::string> params;
    std::string_view target(request_.target().data(), request_.target().size());
    if (auto q = target.find('?'); q != std::string_view::npos)
      parseForm(target.substr(q + 1), params);
    if (request_.method() == http::verb::post) parseForm(request_.body(), params);
    if (request_.method() != http::verb::get && request_.method() != http::verb::post) {
      reply(http::status::method_not_allowed, "use GET or POST", request_.keep_alive());
      return;
    }
    const std::int64_t now = core::nowMicros();
    codec::trackers::OsmandResult decoded = codec::trackers::decodeOsmand(params, now);
    if (!decoded.position) {
      server_.countRejected();
      reply(http::status::bad_request, decoded.error, request_.keep_alive());
      return;
    }
    decoded.position->protocol = "osmand";
    std::string raw(request_.target().data(), request_.target().size());
    if (!request_.body().empty()) raw += "\n" + request_.body();
    server_.countPosition();
    bool keepAlive = request_.keep_alive();
    // The 200 is the device's ACK: only after the commit.
    server_.pipeline().submit(toRecord(*decoded.position, raw, server_.nodeId(), now),
                              [self = shared_from_this(), keepAlive] {
                                asio::post(self->stream_.get_executor(), [self, keepAlive] {
                                  self->reply(http::status::ok, "", keepAlive);
                                });
                              });
  }

  void reply(http::status status, std::string body, bool keepAlive) {
    auto response = std::make_shared<http::response<http::string_body>>(status, 11);
    response->set(http::field::server, "tern");
    response->set(http::field::content_type, "text/plain");
    response->keep_alive(keepAlive);
    response->body() = std::move(body);
    response->prepare_payload();
    http::async_write(
        stream_, *response,
        [self = shared_from_this(), response, keepAlive](beast::error_code ec, std::size_t) {
          if (ec || !keepAlive) {
            beast::error_code ignored;
            self->stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
            return;
          }
          self->read();
        });
  }

  OsmandServer& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
};

}  // namespace

OsmandServer::OsmandServer(net::EventLoopPool& pool, ingest::Pipeline& pipeline, std::string nodeId,
                           bool proxyProtocol)
    : pool_(pool), pipeline_(pipeline), nodeId_(std::move(nodeId)), proxyProtocol_(proxyProtocol) {}

OsmandServer::~OsmandServer() = default;

void OsmandServer::start(const core::HostPort& address) {
  listener_ = std::make_unique<net::TcpListener>(
      pool_, "trackers/osmand", [this](net::AcceptedConnection accepted) {
        auto executor = accepted.socket.get_executor();
        asio::post(executor, [this, a = std::move(accepted)]() mutable {
          std::make_shared<OsmandSession>(*this, std::move(a.socket), a.initialBytes)->start();
        });
      });
  listener_->setProxyProtocol(proxyProtocol_);
  listener_->start(address);
}

void OsmandServer::stopAccepting() {
  if (listener_) listener_->stop();
}

std::uint16_t OsmandServer::port() const {
  return listener_ ? listener_->port() : 0;
}

}  // namespace tern::trackers
