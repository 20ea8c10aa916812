// PostgreSQL stopped for 30 s under QoS 1 load: publishers keep being acknowledged from the
// durable spool, and once the database is back every acknowledged message ends up in it exactly
// once. A real private PostgreSQL server, the whole Tern server, MQTT clients over TCP.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ingest/pipeline.h"
#include "support/mqtt_test_client.h"
#include "support/postgres_fixture.h"
#include "support/test_server.h"

namespace tern::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

[[maybe_unused]] auto* const kPostgresEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

constexpr int kPublishers = 4;

// One QoS 1 publisher: numbered messages, one in flight, each remembered once its PUBACK came.
class Publisher {
 public:
  Publisher(std::uint16_t port, int index) : index_(index) {
    connected_ = client_.connect(port, "outage-" + std::to_string(index)).has_value();
  }
  bool connected() const { return connected_; }
  std::string deviceId() const { return "outage-" + std::to_string(index_); }

  void run(const std::atomic<bool>& stop) {
    for (int n = 0; !stop; ++n) {
      codec::mqtt::Publish publish;
      publish.topic = "device/" + deviceId();
      publish.payload = "{\"n\":" + std::to_string(n) + "}";
      publish.qos = 1;
      publish.packetId = client_.nextPacketId();
      client_.send(publish);
      // Acks wait for the spool's grace period at the start of the outage.
      const auto deadline = Clock::now() + 30s;
      bool acked = false;
      while (!acked && Clock::now() < deadline && !client_.closed()) {
        auto packet = client_.receiveType(codec::mqtt::PacketType::kPuback, 1s);
        if (!packet) continue;
        const auto* ack = std::get_if<codec::mqtt::Ack>(&*packet);
        acked = ack != nullptr && ack->packetId == publish.packetId;
      }
      if (!acked) {
        ++unacked_;
        if (client_.closed()) return;
        continue;
      }
      std::lock_guard lock(mutex_);
      acked_.push_back(n);
      std::this_thread::sleep_for(2ms);
    }
  }

  std::vector<int> acked() const {
    std::lock_guard lock(mutex_);
    return acked_;
  }
  std::size_t ackedCount() const {
    std::lock_guard lock(mutex_);
    return acked_.size();
  }
  int unacked() const { return unacked_; }

 private:
  int index_;
  MqttTestClient client_;
  bool connected_ = false;
  mutable std::mutex mutex_;
  std::vector<int> acked_;
  std::atomic<int> unacked_{0};
};

// Parameterised only so that the test name carries "postgres" for `ctest -R postgres`.
class PostgresOutageTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PostgresOutageTest, EveryAcknowledgedMessageIsStoredExactlyOnceAfterA30sOutage) {
  PostgresServer& database = PostgresServer::shared();
  const std::string url = database.createDatabase();
  TestServer server([&](core::Config& c) {
    c.storage.backend = "postgres";
    c.storage.url = url;
  });

  std::vector<std::unique_ptr<Publisher>> publishers;
  for (int i = 0; i < kPublishers; ++i) {
    publishers.push_back(std::make_unique<Publisher>(server.mqttPort(), i));
    ASSERT_TRUE(publishers.back()->connected());
  }
  const auto totalAcked = [&] {
    std::size_t n = 0;
    for (const auto& p : publishers) n += p->ackedCount();
    return n;
  };
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (auto& p : publishers) threads.emplace_back([&stop, &p] { p->run(stop); });

  std::this_thread::sleep_for(3s);
  const std::size_t beforeOutage = totalAcked();
  EXPECT_GT(beforeOutage, 0u);
  database.stop();
  std::this_thread::sleep_for(15s);
  const std::size_t midOutage = totalAcked();
  std::this_thread::sleep_for(15s);
  const std::size_t endOutage = totalAcked();
  // Past the grace period, acknowledgements come from the spool.
  EXPECT_GT(endOutage, midOutage) << "no acks during the outage";
  const ingest::PipelineStats during = server.server().pipeline().stats();
  EXPECT_GT(during.spooled, 0u);
  EXPECT_GT(during.spoolBytes, 0u);
  database.start();

  std::this_thread::sleep_for(3s);
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_GT(totalAcked(), endOutage) << "no acks after the database came back";

  // Bounded wait for the spool to drain into PostgreSQL.
  const auto deadline = Clock::now() + 60s;
  ingest::PipelineStats s = server.server().pipeline().stats();
  while ((s.spoolBytes > 0 || s.queued > 0) && Clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
    s = server.server().pipeline().stats();
  }
  ASSERT_EQ(s.spoolBytes, 0u) << "spool did not drain";
  EXPECT_EQ(s.replayed, s.spooled);

  std::map<std::string, int> stored;
  for (const auto& row :
       PostgresServer::query(url, "SELECT device_id || ':' || (fields->>'n') FROM messages")) {
    ++stored[row];
  }
  std::size_t acked = 0;
  for (const auto& p : publishers) {
    for (int n : p->acked()) {
      ++acked;
      const std::string key = p->deviceId() + ":" + std::to_string(n);
      const auto it = stored.find(key);
      ASSERT_NE(it, stored.end()) << "acknowledged but not stored: " << key;
      EXPECT_EQ(it->second, 1) << "stored more than once: " << key;
    }
  }
  for (const auto& [key, count] : stored) EXPECT_EQ(count, 1) << "duplicate: " << key;
  std::size_t unacked = 0;
  for (const auto& p : publishers) unacked += static_cast<std::size_t>(p->unacked());
  std::cout << "acked " << acked << " (" << beforeOutage << " before the outage, "
            << endOutage - beforeOutage << " during it), unacked " << unacked << ", stored "
            << stored.size() << ", spooled " << s.spooled << ", replayed " << s.replayed << "\n";
}

INSTANTIATE_TEST_SUITE_P(postgres, PostgresOutageTest, ::testing::Values("postgres"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

}  // namespace
}  // namespace tern::test
