#include "unit/api/http_test_client.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <cctype>
#include <stdexcept>

namespace tern::api::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string HttpTestResponse::header(const std::string& lowerName) const {
  const auto it = headers.find(lowerName);
  return it == headers.end() ? std::string() : it->second;
}

boost::json::value HttpTestResponse::json() const {
  boost::system::error_code ec;
  auto value = boost::json::parse(body, ec);
  EXPECT_FALSE(ec) << "not JSON: " << body;
  return ec ? boost::json::value() : value;
}

HttpTestClient::HttpTestClient(std::uint16_t port, std::string authorization)
    : socket_(ioc_), authorization_(std::move(authorization)) {
  socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
}

HttpTestClient::~HttpTestClient() {
  boost::system::error_code ignored;
  socket_.close(ignored);
}

HttpTestResponse HttpTestClient::request(std::string_view method, std::string_view target,
                                         std::string_view body,
                                         const std::map<std::string, std::string>& headers) {
  http::request<http::string_body> request;
  request.method_string(method);
  request.target(target);
  request.version(11);
  request.set(http::field::host, "127.0.0.1");
  request.keep_alive(true);
  if (!authorization_.empty()) request.set(http::field::authorization, authorization_);
  for (const auto& [name, value] : headers) request.set(name, value);
  if (!body.empty()) request.body() = std::string(body);
  request.prepare_payload();
  http::write(socket_, request);
  return readResponse(method == "HEAD");
}

HttpTestResponse HttpTestClient::sendRaw(std::string_view bytes) {
  asio::write(socket_, asio::buffer(bytes.data(), bytes.size()));
  return readResponse();
}

HttpTestResponse HttpTestClient::readResponse(bool head) {
  http::response_parser<http::string_body> parser;
  parser.skip(head);  // a response to HEAD has no body, whatever Content-Length says
  parser.body_limit(std::uint64_t{256} * 1024 * 1024);
  http::read(socket_, buffer_, parser);
  const auto& message = parser.get();
  HttpTestResponse out;
  out.status = message.result_int();
  out.body = message.body();
  out.keepAlive = message.keep_alive();
  for (const auto& field : message) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    out.headers[name] = std::string(field.value());
  }
  return out;
}

bool HttpTestClient::waitForClose(std::chrono::milliseconds wait) {
  if (buffer_.size() > 0) return false;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{socket_.native_handle(), POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (::poll(&pfd, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 1))) <= 0) {
      continue;
    }
    char byte = 0;
    boost::system::error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(&byte, 1), ec);
    if (ec) return true;      // EOF or reset: closed
    if (n > 0) return false;  // the server sent something else
  }
  return false;
}

}  // namespace tern::api::testing
