#pragma once
// Runs a whole Tern server in-process on loopback port 0 with a temp data dir, the way
// `tern serve` would, for integration tests.
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "app/server.h"
#include "core/config.h"

namespace tern::test {

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A config for tests: loopback listeners on port 0, data in `dataDir`, node id "test-node".
core::Config testConfig(const std::filesystem::path& dataDir);

class TestServer {
 public:
  explicit TestServer(std::function<void(core::Config&)> adjust = {});
  ~TestServer();

  std::uint16_t mqttPort() const { return server_->mqttPort(); }
  std::uint16_t httpPort() const { return server_->httpPort(); }
  app::Server& server() { return *server_; }
  const std::filesystem::path& dataDir() const { return dir_.path(); }
  void stop() { server_->stop(); }
  // A header value for API requests: "Bearer <API key>" for a fresh key with `role` (admin,
  // operator, viewer or service). Every API endpoint but health and login needs one.
  std::string authHeader(const std::string& role = "admin");
  // The same as a curl argument: -H 'Authorization: Bearer ...'.
  std::string curlAuth(const std::string& role = "admin") {
    return "-H 'Authorization: " + authHeader(role) + "'";
  }

 private:
  TempDir dir_;
  std::unique_ptr<app::Server> server_;
};

// Finds a free loopback TCP port (bind to 0, read, close). Racy by nature; good enough for
// starting external processes that need a port number up front.
std::uint16_t freePort();

// Runs a shell command, returns its exit status; output captured into `output` when given.
int runCommand(const std::string& command, std::string* output = nullptr);

}  // namespace tern::test
