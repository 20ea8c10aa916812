// [[sources]]: Tern as a client of a real external broker (Debian's mosquitto, started per test
// on a free loopback port). Messages published there are stored per ingest route, reach local
// subscribers, survive a restart of the source, and queue at the source while Tern is down.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "app/server.h"
#include "bridge/source_client.h"
#include "core/config.h"
#include "ingest/normalizer.h"
#include "ingest/pipeline.h"
#include "storage/sqlite/sqlite_store.h"
#include "storage/store.h"
#include "support/mqtt_test_client.h"
#include "support/test_pki.h"
#include "support/test_server.h"

extern char** environ;

namespace tern::test {
namespace {

constexpr const char* kMosquitto = "/usr/sbin/mosquitto";
constexpr auto kWait = std::chrono::seconds(30);

// Polls `done` until it holds or `kWait` passes: a bound against hanging, not a timing check.
bool waitFor(const std::function<bool()>& done) {
  const auto until = std::chrono::steady_clock::now() + kWait;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

// A store whose commits wait while the gate is closed: the pipeline backs up deterministically.
class GatedStore : public storage::Store {
 public:
  explicit GatedStore(std::unique_ptr<storage::Store> inner) : inner_(std::move(inner)) {}
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    changed_.notify_all();
  }
  core::Status appendBatch(std::span<const storage::Record> records) override {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return open_; });
    lock.unlock();
    return inner_->appendBatch(records);
  }
  core::Result<std::vector<storage::StoredRecord>> queryMessages(
      const storage::MessageQuery& query) override {
    return inner_->queryMessages(query);
  }
  core::Result<std::vector<storage::Bucket>> querySeries(
      const storage::SeriesQuery& query) override {
    return inner_->querySeries(query);
  }
  core::Result<std::vector<storage::DeviceSummary>> listDevices() override {
    return inner_->listDevices();
  }
  core::Result<std::optional<storage::DeviceSummary>> getDevice(const std::string& id) override {
    return inner_->getDevice(id);
  }
  core::Result<std::int64_t> countMessages() override { return inner_->countMessages(); }
  std::string backendName() const override { return inner_->backendName(); }
  core::Status check() override { return inner_->check(); }

 private:
  std::unique_ptr<storage::Store> inner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
};

class MosquittoProcess {
 public:
  ~MosquittoProcess() { stop(SIGTERM); }

  // Starts mosquitto on 127.0.0.1:port (persistence off) and waits until it accepts clients.
  // `settings` replaces the default `allow_anonymous true`.
  bool start(std::uint16_t port, const std::string& settings = "allow_anonymous true\n") {
    const std::string base = ::testing::TempDir() + "tern_bridge_mosquitto_" + std::to_string(port);
    configPath_ = base + ".conf";
    logPath_ = base + ".log";
    {
      std::ofstream conf(configPath_, std::ios::trunc);
      conf << "listener " << port << " 127.0.0.1\npersistence false\n" << settings;
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
      MqttTestClient probe;
      if (probe.open(port)) return true;
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
  std::string configPath_;
  std::string logPath_;
};

class BridgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kMosquitto, X_OK) != 0) GTEST_SKIP() << kMosquitto << " is not installed";
    port_ = freePort();
    ASSERT_TRUE(mosquitto_.start(port_)) << mosquitto_.log();
  }

  core::SourceConfig source(const std::string& clientId) const {
    core::SourceConfig s;
    s.name = "ext";
    s.host = "127.0.0.1";
    s.port = port_;
    s.clientId = clientId;
    s.topics = {"device/+", "plant/#"};
    s.qos = 1;
    return s;
  }

  // Publishes at QoS 1 to mosquitto; true once mosquitto acknowledged every message.
  bool publishToSource(const std::string& topic, int count, const std::string& field) {
    MqttTestClient client;
    if (!client.connect(port_, "publisher-" + std::to_string(++publishers_))) return false;
    for (int i = 0; i < count; ++i) {
      if (!client.publish(topic, "{\"" + field + "\":" + std::to_string(i) + "}", 1)) return false;
    }
    client.disconnect();
    return true;
  }

  static bridge::SourceStats stats(app::Server& server) {
    auto all = server.sourceStats();
    return all.empty() ? bridge::SourceStats{} : all.front();
  }

  static std::int64_t count(app::Server& server) {
    auto n = server.store().countMessages();
    return n.ok() ? *n : -1;
  }

  static std::vector<storage::StoredRecord> messagesOf(app::Server& server, const std::string& id) {
    storage::MessageQuery query;
    query.deviceId = id;
    query.limit = 1000;
    auto records = server.store().queryMessages(query);
    return records.ok() ? *records : std::vector<storage::StoredRecord>{};
  }

  std::uint16_t port_ = 0;
  int publishers_ = 0;
  MosquittoProcess mosquitto_;
};

TEST_F(BridgeTest, IngestsRoutesAndSurvivesASourceRestart) {
  TestServer server([&](core::Config& c) {
    c.ingest.routes = {{"device/+", "topic:2"}, {"plant/#", "json:uuid"}};
    c.sources.push_back(source("tern-bridge-test-restart"));
  });
  app::Server& s = server.server();
  ASSERT_TRUE(waitFor([&] { return stats(s).connected; })) << mosquitto_.log();

  MqttTestClient local;  // a subscriber on Tern's own broker sees what the source sends
  ASSERT_TRUE(local.connect(server.mqttPort(), "local-subscriber"));
  ASSERT_EQ(local.subscribe("device/#", 1), 1);

  ASSERT_TRUE(publishToSource("device/abc", 5, "value"));
  MqttTestClient plant;
  ASSERT_TRUE(plant.connect(port_, "plant-publisher"));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        plant.publish("plant/line1/temp", "{\"uuid\":\"p-7\",\"t\":" + std::to_string(i) + "}", 1));
  }
  plant.disconnect();

  ASSERT_TRUE(waitFor([&] { return count(s) == 8; })) << count(s);
  const auto abc = messagesOf(s, "abc");
  ASSERT_EQ(abc.size(), 5u);
  for (std::size_t i = 0; i < abc.size(); ++i) {
    EXPECT_EQ(abc[i].record.topic, "device/abc");
    EXPECT_EQ(abc[i].record.payload, "{\"value\":" + std::to_string(i) + "}");  // in order
    EXPECT_EQ(abc[i].record.nodeId, "test-node");
  }
  const auto p7 = messagesOf(s, "p-7");
  ASSERT_EQ(p7.size(), 3u);
  EXPECT_EQ(p7[0].record.topic, "plant/line1/temp");

  auto delivered = local.receivePublish(std::chrono::milliseconds(10000));
  ASSERT_TRUE(delivered);
  EXPECT_EQ(delivered->topic, "device/abc");
  EXPECT_EQ(delivered->payload, "{\"value\":0}");

  // Every QoS 1 message is acknowledged to the source (after its commit).
  ASSERT_TRUE(waitFor([&] { return stats(s).acked == 8; })) << stats(s).acked;
  EXPECT_EQ(stats(s).received, 8u);
  EXPECT_EQ(stats(s).reconnects, 0u);

  // The source dies and comes back (without its sessions: persistence is off).
  mosquitto_.stop(SIGKILL);
  ASSERT_TRUE(waitFor([&] { return !stats(s).connected; }));
  ASSERT_TRUE(mosquitto_.start(port_)) << mosquitto_.log();
  ASSERT_TRUE(waitFor([&] { return stats(s).connected; })) << mosquitto_.log();
  EXPECT_GE(stats(s).reconnects, 1u);

  ASSERT_TRUE(publishToSource("device/def", 4, "n"));
  ASSERT_TRUE(waitFor([&] { return count(s) == 12; })) << count(s);
  EXPECT_EQ(messagesOf(s, "def").size(), 4u);
  EXPECT_EQ(messagesOf(s, "abc").size(), 5u);  // nothing stored twice
  ASSERT_TRUE(waitFor([&] { return stats(s).acked == 12; })) << stats(s).acked;
}

TEST_F(BridgeTest, MessagesQueuedAtTheSourceWhileTernIsDownArriveAfterRestart) {
  TempDir dir;
  core::Config config = testConfig(dir.path());
  config.sources.push_back(source("tern-bridge-test-persistent"));  // clean_session false

  {
    app::Server first(config);
    first.start();
    ASSERT_TRUE(waitFor([&] { return stats(first).connected; })) << mosquitto_.log();
    ASSERT_TRUE(publishToSource("device/d1", 3, "before"));
    ASSERT_TRUE(waitFor([&] { return count(first) == 3; })) << count(first);
    ASSERT_TRUE(waitFor([&] { return stats(first).acked == 3; }));
    first.stop();
  }

  // Tern is down: mosquitto keeps the session and queues QoS 1 messages for it.
  ASSERT_TRUE(publishToSource("device/d1", 5, "while_down"));
  ASSERT_TRUE(publishToSource("device/d2", 2, "while_down"));

  app::Server second(config);
  second.start();
  ASSERT_TRUE(waitFor([&] { return count(second) == 10; })) << count(second);
  EXPECT_EQ(messagesOf(second, "d1").size(), 8u);
  EXPECT_EQ(messagesOf(second, "d2").size(), 2u);
  ASSERT_TRUE(waitFor([&] { return stats(second).acked == 7; })) << stats(second).acked;
  EXPECT_EQ(stats(second).received, 7u);  // the first run's messages were acked, not resent
  EXPECT_TRUE(stats(second).connected);
  second.stop();
}

TEST_F(BridgeTest, SourcesAppearInHealth) {
  TestServer server(
      [&](core::Config& c) { c.sources.push_back(source("tern-bridge-test-health")); });
  ASSERT_TRUE(waitFor([&] { return stats(server.server()).connected; }));
  std::string body;
  ASSERT_EQ(runCommand(
                "curl -sf http://127.0.0.1:" + std::to_string(server.httpPort()) + "/api/v1/health",
                &body),
            0);
  EXPECT_NE(body.find("\"sources\":[{\"name\":\"ext\",\"connected\":true,\"received\":0,"
                      "\"acked\":0,\"reconnects\":0}]"),
            std::string::npos)
      << body;
}

TEST_F(BridgeTest, CredentialsAreSentAndARefusalIsRetried) {
  TempDir dir;
  const std::string passwords = (dir.path() / "passwords").string();
  ASSERT_EQ(runCommand("mosquitto_passwd -b -c " + passwords + " tern secret"), 0);
  mosquitto_.stop(SIGTERM);
  ASSERT_TRUE(mosquitto_.start(port_, "allow_anonymous false\npassword_file " + passwords + "\n"))
      << mosquitto_.log();

  {
    TestServer refused([&](core::Config& c) {
      core::SourceConfig s = source("tern-bridge-test-refused");
      s.username = "tern";
      s.password = "wrong";
      c.sources.push_back(s);
    });
    // CONNACK "bad username or password": not connected, retried with backoff.
    ASSERT_TRUE(waitFor([&] { return stats(refused.server()).reconnects >= 2; }));
    EXPECT_FALSE(stats(refused.server()).connected);
  }

  TestServer server([&](core::Config& c) {
    core::SourceConfig s = source("tern-bridge-test-credentials");
    s.username = "tern";
    s.password = "secret";
    c.sources.push_back(s);
  });
  ASSERT_TRUE(waitFor([&] { return stats(server.server()).connected; })) << mosquitto_.log();
  MqttTestClient publisher;
  codec::mqtt::Connect connect;
  connect.protocolName = "MQTT";
  connect.clientId = "authenticated-publisher";
  connect.username = "tern";
  connect.password = "secret";
  auto connack = publisher.connect(port_, connect);
  ASSERT_TRUE(connack);
  ASSERT_EQ(connack->returnCode, codec::mqtt::ConnackCode::kAccepted);
  ASSERT_TRUE(publisher.publish("device/secure", "{\"v\":1}", 1));
  ASSERT_TRUE(waitFor([&] { return count(server.server()) == 1; }));
  EXPECT_EQ(messagesOf(server.server(), "secure").size(), 1u);
}

// TLS to the source: mosquitto gets a second listener with a certificate from a throwaway CA
// (and, in the second part, demands a client certificate). The bridge verifies the source's
// certificate and host name; a source signed by another CA is refused and retried.
TEST_F(BridgeTest, TlsToTheSourceIsVerifiedAndCarriesClientCertificates) {
  TempDir dir;
  TestPki pki;
  ASSERT_TRUE(makeTestPki(dir.path(), pki));
  // mosquitto started as root drops to the `mosquitto` user before it reads its key.
  namespace fs = std::filesystem;
  fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                  fs::perms::others_read | fs::perms::others_exec);
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    fs::permissions(entry.path(), fs::perms::group_read | fs::perms::others_read,
                    fs::perm_options::add);
  }
  const std::uint16_t tlsPort = freePort();
  mosquitto_.stop(SIGTERM);
  ASSERT_TRUE(mosquitto_.start(port_, "allow_anonymous true\nlistener " + std::to_string(tlsPort) +
                                          " 127.0.0.1\ncafile " + pki.caCert.string() +
                                          "\ncertfile " + pki.serverCert.string() + "\nkeyfile " +
                                          pki.serverKey.string() + "\n"))
      << mosquitto_.log();
  const auto tlsSource = [&](const std::string& clientId, const std::filesystem::path& ca) {
    core::SourceConfig s = source(clientId);
    s.port = tlsPort;
    s.tls = true;
    s.tlsCa = ca.string();
    return s;
  };

  {
    // Signed by a CA we do not trust: the handshake fails, and is retried with backoff.
    TestServer untrusted([&](core::Config& c) {
      c.sources.push_back(tlsSource("tern-bridge-tls-untrusted", pki.otherCaCert));
    });
    ASSERT_TRUE(waitFor([&] { return stats(untrusted.server()).reconnects >= 2; }));
    EXPECT_FALSE(stats(untrusted.server()).connected);
  }
  {
    // tls_verify = false accepts it (tests only).
    TestServer unverified([&](core::Config& c) {
      core::SourceConfig s = tlsSource("tern-bridge-tls-unverified", pki.otherCaCert);
      s.tlsVerify = false;
      c.sources.push_back(s);
    });
    ASSERT_TRUE(waitFor([&] { return stats(unverified.server()).connected; })) << mosquitto_.log();
  }
  {
    TestServer server(
        [&](core::Config& c) { c.sources.push_back(tlsSource("tern-bridge-tls", pki.caCert)); });
    ASSERT_TRUE(waitFor([&] { return stats(server.server()).connected; })) << mosquitto_.log();
    ASSERT_TRUE(publishToSource("device/tls-1", 5, "v"));
    ASSERT_TRUE(waitFor([&] { return count(server.server()) == 5; }));
    EXPECT_EQ(messagesOf(server.server(), "tls-1").size(), 5u);
    ASSERT_TRUE(waitFor([&] { return stats(server.server()).acked == 5; }));
  }

  // Client certificates required by the source.
  mosquitto_.stop(SIGTERM);
  ASSERT_TRUE(mosquitto_.start(port_, "allow_anonymous true\nlistener " + std::to_string(tlsPort) +
                                          " 127.0.0.1\ncafile " + pki.caCert.string() +
                                          "\ncertfile " + pki.serverCert.string() + "\nkeyfile " +
                                          pki.serverKey.string() + "\nrequire_certificate true\n"))
      << mosquitto_.log();
  {
    TestServer without([&](core::Config& c) {
      c.sources.push_back(tlsSource("tern-bridge-tls-nocert", pki.caCert));
    });
    ASSERT_TRUE(waitFor([&] { return stats(without.server()).reconnects >= 2; }));
    EXPECT_FALSE(stats(without.server()).connected);
  }
  TestServer server([&](core::Config& c) {
    core::SourceConfig s = tlsSource("tern-bridge-tls-cert", pki.caCert);
    s.tlsCert = pki.clientCert.string();
    s.tlsKey = pki.clientKey.string();
    c.sources.push_back(s);
  });
  ASSERT_TRUE(waitFor([&] { return stats(server.server()).connected; })) << mosquitto_.log();
  ASSERT_TRUE(publishToSource("device/tls-2", 3, "v"));
  ASSERT_TRUE(waitFor([&] { return count(server.server()) == 3; }));
  EXPECT_EQ(messagesOf(server.server(), "tls-2").size(), 3u);
}

TEST(BridgeConfigTest, TlsSettingsAreChecked) {
  TempDir dir;
  const auto configError = [&](const std::string& source) {
    const std::string file = (dir.path() / "tern.toml").string();
    {
      std::ofstream out(file, std::ios::trunc);
      out << "[[sources]]\nname = \"ext\"\nhost = \"127.0.0.1\"\ntopics = [\"a/#\"]\n" << source;
    }
    try {
      core::Config config;
      core::applyConfigFile(config, file);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(configError("tls_ca = \"/nonexistent.pem\"\n").find("need tls = true"),
            std::string::npos);
  EXPECT_NE(configError("tls = true\ntls_ca = \"/nonexistent.pem\"\n").find("readable file"),
            std::string::npos);
  const std::string pem = (dir.path() / "x.pem").string();
  std::ofstream(pem) << "x";
  EXPECT_NE(configError("tls = true\ntls_cert = \"" + pem + "\"\n").find("tls_key"),
            std::string::npos);
  EXPECT_EQ(configError("tls = true\n"), "");
}

// The pipeline is overloaded (its store blocks): the source stops being read, nothing is
// acknowledged; once the store commits again, reading resumes and every message is stored and
// acknowledged, in order.
TEST_F(BridgeTest, BackPressureStopsReadingUntilThePipelineDrains) {
  TempDir dir;
  GatedStore store(storage::sqlite::openSqliteStore({(dir.path() / "tern.db").string()}));
  ingest::PipelineOptions options;
  options.batchSize = 4;
  options.queueCapacity = 5;  // below mosquitto's 20 in-flight messages per client
  ingest::Pipeline pipeline(store, options);
  ASSERT_TRUE(pipeline.start().ok());
  const ingest::Normalizer normalizer({{"device/+", "topic:2"}}, "test-node");
  boost::asio::io_context io(1);
  auto guard = boost::asio::make_work_guard(io);
  std::thread loop([&io] { io.run(); });
  auto client = std::make_shared<bridge::SourceClient>(io, source("tern-bridge-test-pressure"),
                                                       pipeline, normalizer, nullptr, 1024 * 1024);
  // Runs however the test ends (an ASSERT returns early): the loop thread must be joined.
  struct Finally {
    std::function<void()> run;
    ~Finally() { run(); }
  } finally{[&] {
    store.open();
    client->stopReading(std::chrono::milliseconds(1000));
    pipeline.stop();
    client->shutdown(std::chrono::milliseconds(1000));
    guard.reset();
    loop.join();
  }};
  client->start();
  ASSERT_TRUE(waitFor([&] { return client->stats().connected; })) << mosquitto_.log();

  constexpr int kMessages = 60;
  ASSERT_TRUE(publishToSource("device/bp", kMessages, "n"));
  ASSERT_TRUE(waitFor([&] { return client->stats().readPauses >= 1; }));
  EXPECT_EQ(client->stats().acked, 0u);  // nothing is committed yet
  EXPECT_LT(client->stats().received, static_cast<std::uint64_t>(kMessages));

  store.open();
  ASSERT_TRUE(waitFor([&] { return client->stats().acked == kMessages; })) << client->stats().acked;
  storage::MessageQuery query;
  query.deviceId = "bp";
  query.limit = 1000;
  auto stored = store.queryMessages(query);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), static_cast<std::size_t>(kMessages));
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ((*stored)[static_cast<std::size_t>(i)].record.payload,
              "{\"n\":" + std::to_string(i) + "}");
  }
}

TEST(BridgeConfigTest, BadSourceStopsTheServerWithExitStatus2) {
  TempDir dir;
  core::Config config = testConfig(dir.path());
  core::SourceConfig bad;
  bad.name = "tls";
  bad.host = "127.0.0.1";
  bad.topics = {"#"};
  bad.tlsCa = "/etc/hostname";  // TLS settings without tls = true
  config.sources.push_back(bad);
  try {
    app::Server server(config);
    ADD_FAILURE() << "no ConfigError";
  } catch (const core::ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("config: sources[0].tls:", 0), 0u) << e.what();
  }

  const std::string path = (dir.path() / "bad.toml").string();
  {
    std::ofstream out(path);
    out << "[server]\ndata_dir = \"" << (dir.path() / "data").string()
        << "\"\n\n[[sources]]\nname = \"ext\"\nhost = \"127.0.0.1\"\nport = 0\ntopics = [\"#\"]\n";
  }
  std::string output;
  const int status =
      runCommand(std::string(TERN_BINARY_DIR) + "/tern serve --config " + path, &output);
  EXPECT_EQ(status, 2) << output;
  EXPECT_NE(output.find("config: sources[0].port: expected an integer between 1 and 65535"),
            std::string::npos)
      << output;
}

}  // namespace
}  // namespace tern::test
