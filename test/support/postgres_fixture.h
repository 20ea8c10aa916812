#pragma once
// A real, private PostgreSQL server for tests: Debian's binaries, initialised in a temp dir,
// listening on a free loopback port, one per test binary (process), stopped and removed at the
// end. No mocks.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace tern::test {

class PostgresServer {
 public:
  // The process's one server, started on first use. Throws std::runtime_error when it cannot
  // start (binaries missing, initdb or start failing; the message carries the server log).
  static PostgresServer& shared();
  // Stops and removes the shared server if it was started. Idempotent.
  static void shutdownShared();

  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  std::uint16_t port() const { return port_; }
  // A libpq keyword connection string for `database` as superuser "tern".
  std::string url(const std::string& database) const;
  // Creates a fresh, empty database and returns its connection string.
  std::string createDatabase();

  // For connection-loss tests: stop the server (pg_ctl stop -m fast) and start it again on the
  // same port and data dir. Throw on failure.
  void stop();
  void start();
  bool running() const { return running_; }

  // Runs SQL on `url` and returns the first column of every row as text. Throws on error.
  static std::vector<std::string> query(const std::string& url, const std::string& sql);

 private:
  PostgresServer();
  void shutdown();
  void initDataDir();
  std::string asServerUser(const std::string& command) const;
  std::string logTail() const;

  std::filesystem::path dir_;  // data/, sock/, server.log (the initdb template is cached)
  std::filesystem::path bin_;  // /usr/lib/postgresql/<version>/bin
  std::string runAs_;          // a system user when the tests run as root (postgres refuses root)
  std::uint16_t port_ = 0;
  bool running_ = false;
  int databases_ = 0;
};

// Register once per test binary that uses PostgresServer::shared(), so the server is stopped
// and its directory removed when the tests end:
//   [[maybe_unused]] static auto* env =
//       ::testing::AddGlobalTestEnvironment(new tern::test::PostgresEnvironment);
class PostgresEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { PostgresServer::shutdownShared(); }
};

}  // namespace tern::test
