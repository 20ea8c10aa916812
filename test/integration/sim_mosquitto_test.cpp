// `tern sim mqtt` against a real third-party broker (Debian's mosquitto), started per test on a
// free loopback port.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "tools/sim_mqtt.h"

extern char** environ;

namespace tern::tools {
namespace {

constexpr const char* kMosquitto = "/usr/sbin/mosquitto";

// Asks the kernel for a free port by binding to port 0.
std::uint16_t freeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool canConnect(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}

class MosquittoProcess {
 public:
  ~MosquittoProcess() { stop(SIGTERM); }

  // Starts mosquitto listening on 127.0.0.1:port and waits until it accepts connections.
  bool start(std::uint16_t port) {
    port_ = port;
    const std::string base = ::testing::TempDir() + "tern_sim_mosquitto_" + std::to_string(port);
    configPath_ = base + ".conf";
    logPath_ = base + ".log";
    {
      std::ofstream conf(configPath_, std::ios::trunc);
      conf << "listener " << port << " 127.0.0.1\nallow_anonymous true\npersistence false\n";
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, logPath_.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::string program = kMosquitto;
    std::string flag = "-c";
    char* argv[] = {program.data(), flag.data(), configPath_.data(), nullptr};
    const int rc = posix_spawn(&pid_, kMosquitto, &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      return false;
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      if (canConnect(port)) {
        return true;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  void stop(int signal) {
    if (pid_ > 0) {
      ::kill(pid_, signal);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

  std::string log() const {
    std::ifstream in(logPath_);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  std::string configPath_;
  std::string logPath_;
};

class SimMosquittoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kMosquitto, X_OK) != 0) {
      GTEST_SKIP() << kMosquitto << " is not installed";
    }
    port_ = freeLoopbackPort();
    ASSERT_NE(port_, 0);
    ASSERT_TRUE(broker_.start(port_)) << broker_.log();
  }

  SimMqttOptions options(std::uint8_t qos) const {
    SimMqttOptions o;
    o.host = "127.0.0.1";
    o.port = port_;
    o.devices = 5;
    o.rateSeconds = 0.05;
    o.count = 20;
    o.qos = qos;
    o.threads = 2;
    return o;
  }

  std::uint16_t port_ = 0;
  MosquittoProcess broker_;
};

TEST_F(SimMosquittoTest, Qos1EveryMessageAcked) {
  const SimMqttResult r = runSimMqtt(options(1));
  EXPECT_EQ(r.sent, 100u);
  EXPECT_EQ(r.acked, 100u);
  EXPECT_EQ(r.errors, 0u) << broker_.log();
  EXPECT_EQ(r.reconnects, 0u);
}

TEST_F(SimMosquittoTest, Qos2EveryMessageCompleted) {
  const SimMqttResult r = runSimMqtt(options(2));
  EXPECT_EQ(r.sent, 100u);
  EXPECT_EQ(r.acked, 100u);
  EXPECT_EQ(r.errors, 0u) << broker_.log();
  EXPECT_EQ(r.reconnects, 0u);
}

TEST_F(SimMosquittoTest, Qos0CountsWrittenAsAcked) {
  const SimMqttResult r = runSimMqtt(options(0));
  EXPECT_EQ(r.sent, 100u);
  EXPECT_EQ(r.acked, 100u);
  EXPECT_EQ(r.errors, 0u) << broker_.log();
}

TEST_F(SimMosquittoTest, SingleThreadManyDevices) {
  SimMqttOptions o = options(1);
  o.devices = 300;
  o.count = 5;
  o.rateSeconds = 0.2;
  o.threads = 1;
  const SimMqttResult r = runSimMqtt(o);
  EXPECT_EQ(r.sent, 1500u);
  EXPECT_EQ(r.acked, 1500u);
  EXPECT_EQ(r.errors, 0u) << broker_.log();
}

TEST_F(SimMosquittoTest, StopsAtDuration) {
  SimMqttOptions o = options(1);
  o.count = 0;
  o.durationSeconds = 1.0;
  o.rateSeconds = 0.1;
  const auto started = std::chrono::steady_clock::now();
  const SimMqttResult r = runSimMqtt(o);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_GT(r.sent, 0u);
  EXPECT_LE(r.sent, 5u * 11u);  // at most one message per device per 0.09 s
  EXPECT_EQ(r.acked, r.sent);
  EXPECT_EQ(r.errors, 0u);
  EXPECT_LT(elapsed, 3.0);
}

// The broker dies mid-run and comes back: devices reconnect with backoff, resend what was not
// acknowledged, and every message is still counted exactly once.
TEST_F(SimMosquittoTest, ReconnectsAndResendsAfterBrokerRestart) {
  for (const std::uint8_t qos : {std::uint8_t{1}, std::uint8_t{2}}) {
    SimMqttOptions o = options(qos);
    o.count = 40;
    auto run = std::async(std::launch::async, [o] { return runSimMqtt(o); });
    std::this_thread::sleep_for(std::chrono::milliseconds(1300));
    broker_.stop(SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ASSERT_TRUE(broker_.start(port_)) << broker_.log();
    const SimMqttResult r = run.get();
    EXPECT_EQ(r.sent, 200u) << "qos " << int(qos);
    EXPECT_EQ(r.acked, 200u) << "qos " << int(qos);
    EXPECT_GE(r.errors, 5u) << "qos " << int(qos);  // every device lost its connection
    EXPECT_GE(r.reconnects, 5u) << "qos " << int(qos);
  }
}

TEST(SimMqttTest, NoBrokerCountsErrorsAndEndsAtDuration) {
  SimMqttOptions o;
  o.port = freeLoopbackPort();  // nothing listens here
  o.devices = 3;
  o.durationSeconds = 1.0;
  o.qos = 1;
  const auto started = std::chrono::steady_clock::now();
  const SimMqttResult r = runSimMqtt(o);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(r.sent, 0u);
  EXPECT_EQ(r.acked, 0u);
  EXPECT_GE(r.errors, 3u);
  // Each device tries again after its backoff; how often within the second depends on the load.
  EXPECT_GE(r.reconnects, 1u);
  // It ends (rather than retrying forever); a generous bound, not a speed check: under a loaded
  // machine the reconnect backoff and the 1 s run take longer.
  EXPECT_LT(elapsed, 60.0);
}

TEST(SimMqttTest, SummaryIsOneLine) {
  SimMqttResult r;
  r.sent = 100;
  r.acked = 99;
  r.errors = 1;
  r.reconnects = 2;
  EXPECT_EQ(formatSimSummary(r, 4.0),
            "sent=100 acked=99 errors=1 reconnects=2 elapsed=4.00s rate=25.0/s");
  EXPECT_EQ(formatSimSummary(SimMqttResult{}, 0.0),
            "sent=0 acked=0 errors=0 reconnects=0 elapsed=0.00s rate=0.0/s");
}

}  // namespace
}  // namespace tern::tools
