#include "support/test_server.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdio>
#include <random>
#include <stdexcept>

#include "auth/auth_service.h"

namespace tern::test {

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  std::random_device random;
  path_ = std::filesystem::temp_directory_path() /
          ("tern-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
           std::to_string(random()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

core::Config testConfig(const std::filesystem::path& dataDir) {
  core::Config config;
  config.server.dataDir = dataDir.string();
  config.server.nodeId = "test-node";
  config.server.threads = 2;
  config.mqtt.listen = {"127.0.0.1", 0};
  config.http.listen = {"127.0.0.1", 0};
  // Tracker listeners are opt-in per test: their usual ports would collide between tests.
  config.trackers.enabled.clear();
  config.trackers.host = "127.0.0.1";
  // Tests that enable one get an ephemeral port (trackerPorts() tells which), never the fixed one.
  for (const auto& name : core::trackerProtocolNames()) config.trackers.ports[name] = 0;
  return config;
}

TestServer::TestServer(std::function<void(core::Config&)> adjust) {
  core::Config config = testConfig(dir_.path());
  if (adjust) adjust(config);
  server_ = std::make_unique<app::Server>(config);
  server_->start();
}

TestServer::~TestServer() {
  server_->stop();
}

std::string TestServer::authHeader(const std::string& role) {
  const auto parsed = auth::parseRole(role);
  if (!parsed) throw std::invalid_argument("TestServer::authHeader: unknown role " + role);
  auto key = server_->auth().createApiKey("test-" + role, *parsed, "test");
  if (!key) throw std::runtime_error("TestServer::authHeader: " + key.error().message);
  return "Bearer " + key->key;
}

std::uint16_t freePort() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

int runCommand(const std::string& command, std::string* output) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char chunk[4096];
  std::size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof chunk, pipe)) > 0) {
    if (output != nullptr) output->append(chunk, n);
  }
  int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace tern::test
