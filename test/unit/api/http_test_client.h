#pragma once
// A small blocking HTTP/1.1 client for the API tests: one keep-alive connection to 127.0.0.1.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace tern::api::testing {

struct HttpTestResponse {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  bool keepAlive = false;

  std::string header(const std::string& lowerName) const;
  // Parses the body; fails the current test (and returns null) if it is not JSON.
  boost::json::value json() const;
};

class HttpTestClient {
 public:
  // `authorization`, when given, goes out as the Authorization header of every request() (not
  // of sendRaw, whose bytes are sent as they are).
  explicit HttpTestClient(std::uint16_t port, std::string authorization = {});
  ~HttpTestClient();
  HttpTestClient(const HttpTestClient&) = delete;
  HttpTestClient& operator=(const HttpTestClient&) = delete;

  HttpTestResponse get(std::string_view target) { return request("GET", target); }
  HttpTestResponse request(std::string_view method, std::string_view target,
                           std::string_view body = {},
                           const std::map<std::string, std::string>& headers = {});
  // Sends bytes as they are and reads one response.
  HttpTestResponse sendRaw(std::string_view bytes);
  // True when the server closes the connection within `wait` (reads nothing else).
  bool waitForClose(std::chrono::milliseconds wait = std::chrono::milliseconds(3000));

 private:
  HttpTestResponse readResponse(bool head = false);

  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
  std::string authorization_;
};

}  // namespace tern::api::testing
