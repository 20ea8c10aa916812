#include "support/postgres_fixture.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace tern::test {
namespace {

namespace fs = std::filesystem;

std::mutex gMutex;
std::unique_ptr<PostgresServer> gShared;

// Self-contained (no dependency on the app, unlike support/test_server.h) so that store tests
// need only the storage libraries.
int runCommand(const std::string& command, std::string* output = nullptr) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    return -1;
  }
  char chunk[4096];
  std::size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof chunk, pipe)) > 0) {
    if (output != nullptr) {
      output->append(chunk, n);
    }
  }
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A loopback port that was free a moment ago (bind to 0, read, close).
std::uint16_t freeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    throw std::runtime_error("postgres fixture: socket failed");
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ::close(fd);
    throw std::runtime_error("postgres fixture: cannot find a free port");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string shellQuote(const std::string& text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

// The newest /usr/lib/postgresql/<version>/bin that has everything we need.
fs::path findBinDir() {
  const fs::path root = "/usr/lib/postgresql";
  std::vector<std::pair<int, fs::path>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const fs::path bin = entry.path() / "bin";
    if (fs::exists(bin / "initdb") && fs::exists(bin / "pg_ctl") && fs::exists(bin / "postgres")) {
      int version = 0;
      try {
        version = std::stoi(entry.path().filename().string());
      } catch (const std::exception&) {
        continue;
      }
      found.emplace_back(version, bin);
    }
  }
  if (found.empty()) {
    throw std::runtime_error(
        "postgres fixture: no /usr/lib/postgresql/*/bin/{initdb,pg_ctl,postgres}; run "
        "scripts/install-deps.sh (Debian package postgresql)");
  }
  std::sort(found.begin(), found.end());
  return found.back().second;
}

struct ConnCloser {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct ResultCloser {
  void operator()(PGresult* result) const { PQclear(result); }
};

}  // namespace

PostgresServer& PostgresServer::shared() {
  std::lock_guard lock(gMutex);
  if (!gShared) {
    gShared.reset(new PostgresServer());
  }
  return *gShared;
}

void PostgresServer::shutdownShared() {
  std::lock_guard lock(gMutex);
  gShared.reset();
}

PostgresServer::PostgresServer() {
  bin_ = findBinDir();
  std::random_device random;
  dir_ = fs::temp_directory_path() /
         ("tern-pg-" + std::to_string(::getpid()) + "-" + std::to_string(random() % 1000000));
  fs::create_directories(dir_ / "sock");
  // PostgreSQL refuses to run as root. Tests may run as root (containers, CI): then the server
  // runs as the system user the Debian package creates, else as nobody.
  if (::geteuid() == 0) {
    const passwd* user = ::getpwnam("postgres");
    if (user == nullptr) {
      user = ::getpwnam("nobody");
    }
    if (user == nullptr) {
      throw std::runtime_error("postgres fixture: running as root and no postgres/nobody user");
    }
    runAs_ = user->pw_name;
    std::string output;
    if (runCommand("chown -R " + runAs_ + " " + shellQuote(dir_.string()), &output) != 0) {
      throw std::runtime_error("postgres fixture: chown: " + output);
    }
  }
  initDataDir();
  // If this process dies without running its destructors (a crash, a timeout kill), a
  // watcher stops the server and removes the directory, so nothing is left running.
  const std::string pgCtl = shellQuote((bin_ / "pg_ctl").string());
  std::string watcher =
      "while kill -0 " + std::to_string(::getpid()) + " 2>/dev/null; do sleep 1; done; ";
  watcher +=
      asServerUser(pgCtl + " -D " + shellQuote((dir_ / "data").string()) + " -m immediate stop");
  watcher += " >/dev/null 2>&1; rm -rf " + shellQuote(dir_.string());
  runCommand("nohup sh -c " + shellQuote(watcher) + " >/dev/null 2>&1 &");

  // The port is picked free but may be taken by another test process before the server binds
  // it; try a few.
  std::string lastError;
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = freeLoopbackPort();
    try {
      start();
      return;
    } catch (const std::exception& e) {
      lastError = e.what();
    }
  }
  shutdown();
  throw std::runtime_error(lastError);
}

PostgresServer::~PostgresServer() {
  shutdown();
}

// initdb takes seconds, and under ctest every test case is its own process with its own
// server. So one initdb'd template per PostgreSQL version and user is kept in the temp dir
// (made under a unique name and renamed into place, so a half-made one is never used) and
// each server starts from a copy of it.
void PostgresServer::initDataDir() {
  const std::string version = bin_.parent_path().filename().string();
  const fs::path tmp = fs::temp_directory_path();
  const fs::path templateDir = tmp / ("tern-pg-template-" + version + "-" +
                                      (runAs_.empty() ? std::to_string(::getuid()) : runAs_));
  std::string output;
  if (!fs::exists(templateDir / "data" / "PG_VERSION")) {
    const fs::path staging = dir_ / "template";
    // --no-sync and C locale: fast, and byte-order collation like the SQLite backend.
    const std::string initdb = shellQuote((bin_ / "initdb").string()) + " -D " +
                               shellQuote((staging / "data").string()) +
                               " -A trust -U tern -E UTF8 --locale=C --no-sync";
    if (runCommand(asServerUser(initdb), &output) != 0) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
      throw std::runtime_error("postgres fixture: initdb failed: " + output);
    }
    std::error_code ec;
    fs::rename(staging, templateDir, ec);  // loses harmlessly to a concurrent test process
    if (ec) {
      fs::remove_all(staging, ec);
    }
  }
  if (runCommand("cp -a " + shellQuote((templateDir / "data").string()) + " " +
                     shellQuote((dir_ / "data").string()),
                 &output) != 0) {
    throw std::runtime_error("postgres fixture: copying the initdb template failed: " + output);
  }
}

std::string PostgresServer::asServerUser(const std::string& command) const {
  if (runAs_.empty()) {
    return command;
  }
  return "runuser -u " + runAs_ + " -- " + command;
}

std::string PostgresServer::logTail() const {
  std::ifstream in(dir_ / "server.log");
  std::stringstream text;
  text << in.rdbuf();
  std::string log = text.str();
  if (log.size() > 2000) {
    log = log.substr(log.size() - 2000);
  }
  return log;
}

void PostgresServer::start() {
  // fsync and synchronous commit off: the data is thrown away after the test, and durability
  // across power loss is not what these tests check. It makes every commit much faster.
  std::string options = "-c listen_addresses=127.0.0.1 -p " + std::to_string(port_) + " -k " +
                        (dir_ / "sock").string() +
                        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off";
  const std::string command = shellQuote((bin_ / "pg_ctl").string()) + " -D " +
                              shellQuote((dir_ / "data").string()) + " -l " +
                              shellQuote((dir_ / "server.log").string()) + " -w -t 60 -o " +
                              shellQuote(options) + " start";
  std::string output;
  if (runCommand(asServerUser(command), &output) != 0) {
    throw std::runtime_error("postgres fixture: start failed: " + output + "\nlog: " + logTail());
  }
  running_ = true;
  // pg_ctl -w waits for the server to accept connections; check over TCP anyway, which is the
  // path the store uses.
  for (int i = 0; i < 100; ++i) {
    std::unique_ptr<PGconn, ConnCloser> conn(PQconnectdb(url("postgres").c_str()));
    if (PQstatus(conn.get()) == CONNECTION_OK) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("postgres fixture: server not accepting connections\nlog: " + logTail());
}

void PostgresServer::stop() {
  const std::string command = shellQuote((bin_ / "pg_ctl").string()) + " -D " +
                              shellQuote((dir_ / "data").string()) + " -m fast -w -t 60 stop";
  std::string output;
  if (runCommand(asServerUser(command), &output) != 0) {
    throw std::runtime_error("postgres fixture: stop failed: " + output);
  }
  running_ = false;
}

void PostgresServer::shutdown() {
  if (dir_.empty()) {
    return;
  }
  if (running_) {
    // Immediate: the data is thrown away anyway.
    const std::string command = shellQuote((bin_ / "pg_ctl").string()) + " -D " +
                                shellQuote((dir_ / "data").string()) + " -m immediate -w stop";
    runCommand(asServerUser(command));
    running_ = false;
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
  dir_.clear();
}

std::string PostgresServer::url(const std::string& database) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=tern dbname=" + database +
         " connect_timeout=5";
}

std::string PostgresServer::createDatabase() {
  std::string name = "tern_test_";
  name += std::to_string(++databases_);
  query(url("postgres"), "CREATE DATABASE " + name);
  return url(name);
}

std::vector<std::string> PostgresServer::query(const std::string& url, const std::string& sql) {
  std::unique_ptr<PGconn, ConnCloser> conn(PQconnectdb(url.c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    throw std::runtime_error(std::string("postgres fixture: connect: ") +
                             PQerrorMessage(conn.get()));
  }
  std::unique_ptr<PGresult, ResultCloser> result(PQexec(conn.get(), sql.c_str()));
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    throw std::runtime_error("postgres fixture: " + sql + ": " +
                             PQresultErrorMessage(result.get()));
  }
  std::vector<std::string> rows;
  for (int row = 0; row < PQntuples(result.get()); ++row) {
    rows.emplace_back(PQgetvalue(result.get(), row, 0));
  }
  return rows;
}

}  // namespace tern::test
