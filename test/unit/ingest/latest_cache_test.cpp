// The latest-state cache in front of a real SQLite store: it answers like the store, only ever
// shows committed batches, falls back to the store beyond its bound, and stays exact through
// retention while the writer keeps committing.
#include "ingest/latest_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ingest/pipeline.h"
#include "storage/sqlite/sqlite_store.h"
#include "support/counting_store.h"

namespace tern::ingest {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::CountingStore;

constexpr std::int64_t kT0 = 1'767'225'600'000'000;  // 2026-01-01T00:00:00Z
constexpr std::int64_t kSecond = 1'000'000;

class LatestCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = fs::temp_directory_path() /
           ("tern_latest_test_" + std::to_string(random()) + std::to_string(random()));
    fs::create_directories(dir_);
    inner_ = storage::sqlite::openSqliteStore({(dir_ / "tern.db").string()});
    store_ = std::make_unique<CountingStore>(*inner_);
  }
  void TearDown() override {
    store_.reset();
    inner_.reset();
    fs::remove_all(dir_);
  }

  static storage::Record record(const std::string& device, std::int64_t ts,
                                std::vector<storage::Field> fields) {
    storage::Record r;
    r.deviceId = device;
    r.serverTimeUs = ts;
    // Move-assigned and appended: GCC 12 at -O3 warns falsely (-Wrestrict) on assigning a
    // literal (or "literal" + string) here.
    r.nodeId = std::string("n");
    r.topic = std::string("device/");
    r.topic += device;
    r.payload = std::string("{}");
    r.payloadIsJson = true;
    r.fields = std::move(fields);
    return r;
  }

  // Commits a batch to the store with the cache told before and after, as the writer does.
  void commit(LatestCache& cache, const std::vector<storage::Record>& batch) {
    cache.beginBatch(batch);
    const auto status = store_->appendBatch(batch);
    ASSERT_TRUE(status.ok()) << status.message();
    cache.endBatch(true);
  }

  fs::path dir_;
  std::unique_ptr<storage::Store> inner_;
  std::unique_ptr<CountingStore> store_;
};

using Values = std::map<std::string, storage::FieldValue>;

std::string deviceName(int n) {
  std::string name = "dev";
  name += std::to_string(n);
  return name;
}

Values valuesOf(const storage::DeviceSummary& d) {
  Values out;
  for (const auto& f : d.latest) out[f.key] = f.value;
  return out;
}

// Same devices, counts, times and latest values (key order aside: PostgreSQL's differs).
void expectSameDevices(const std::vector<storage::DeviceSummary>& a,
                       const std::vector<storage::DeviceSummary>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].deviceId);
    EXPECT_EQ(a[i].deviceId, b[i].deviceId);
    EXPECT_EQ(a[i].firstSeenUs, b[i].firstSeenUs);
    EXPECT_EQ(a[i].lastSeenUs, b[i].lastSeenUs);
    EXPECT_EQ(a[i].messageCount, b[i].messageCount);
    EXPECT_EQ(valuesOf(a[i]), valuesOf(b[i]));
  }
}

TEST_F(LatestCacheTest, LoadsFromTheStoreAndAnswersLikeIt) {
  std::vector<storage::Record> before{
      record("b", kT0, {{"t", 1.5}, {"s", std::string("x")}}),
      record("a", kT0 + kSecond, {{"n", std::int64_t{7}}}),
      record("b", kT0 + 2 * kSecond, {{"t", 2.5}, {"ok", true}}),
  };
  ASSERT_TRUE(store_->appendBatch(before).ok());
  LatestCache cache(*store_, 100);
  ASSERT_TRUE(cache.load().ok());
  EXPECT_TRUE(cache.stats().complete);
  EXPECT_EQ(cache.stats().devices, 2u);

  // Later records win, new keys are added, NaN is not a latest value, time goes both ways.
  commit(cache, {record("b", kT0 + 3 * kSecond, {{"t", 3.5}, {"new", std::int64_t{1}}}),
                 record("c", kT0 - kSecond, {{"v", std::nan("")}, {"w", 1.0}}),
                 record("b", kT0 + 4 * kSecond, {{"t", 4.5}}), record("a", kT0 - 5 * kSecond, {})});

  const int readsBefore = store_->deviceReads;
  auto cached = cache.listDevices();
  ASSERT_TRUE(cached.ok());
  auto one = cache.getDevice("b");
  ASSERT_TRUE(one.ok() && one->has_value());
  auto none = cache.getDevice("nope");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(store_->deviceReads, readsBefore) << "a complete cache never reads the store";

  auto stored = inner_->listDevices();
  ASSERT_TRUE(stored.ok());
  expectSameDevices(*cached, *stored);
  ASSERT_EQ(cached->size(), 3u);
  EXPECT_EQ((*cached)[0].deviceId, "a");
  EXPECT_EQ((*cached)[0].firstSeenUs, kT0 - 5 * kSecond);
  EXPECT_EQ((**one).messageCount, 4);
  EXPECT_EQ(std::get<double>(valuesOf(**one).at("t")), 4.5);
  // The store's key order (first seen first) is kept.
  ASSERT_EQ((**one).latest.size(), 4u);
  EXPECT_EQ((**one).latest[0].key, "t");
  EXPECT_EQ((**one).latest[3].key, "new");
  EXPECT_EQ(valuesOf((*cached)[2]).count("v"), 0u);
}

TEST_F(LatestCacheTest, ABatchShowsOnlyOnceCommitted) {
  LatestCache cache(*store_, 100);
  ASSERT_TRUE(cache.load().ok());
  std::vector<storage::Record> batch{record("d", kT0, {{"x", std::int64_t{1}}})};

  cache.beginBatch(batch);
  auto during = cache.getDevice("d");
  ASSERT_TRUE(during.ok());
  EXPECT_FALSE(during->has_value()) << "in flight is not committed";
  cache.endBatch(false);  // the store refused it
  EXPECT_FALSE(cache.getDevice("d")->has_value());
  EXPECT_TRUE(cache.listDevices()->empty());

  commit(cache, batch);
  auto after = cache.getDevice("d");
  ASSERT_TRUE(after.ok() && after->has_value());
  EXPECT_EQ((**after).messageCount, 1);
}

TEST_F(LatestCacheTest, BeyondItsBoundTheStoreAnswersForTheRest) {
  ASSERT_TRUE(store_
                  ->appendBatch(std::vector<storage::Record>{record("a", kT0, {{"x", 1.0}}),
                                                             record("b", kT0, {{"x", 2.0}})})
                  .ok());
  LatestCache cache(*store_, 2);
  ASSERT_TRUE(cache.load().ok());
  EXPECT_TRUE(cache.stats().complete);
  commit(cache,
         {record("c", kT0 + kSecond, {{"x", 3.0}}), record("a", kT0 + kSecond, {{"x", 4.0}})});
  EXPECT_FALSE(cache.stats().complete);
  EXPECT_EQ(cache.stats().devices, 2u);

  const int reads = store_->deviceReads;
  auto a = cache.getDevice("a");
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((**a).messageCount, 2);
  EXPECT_EQ(store_->deviceReads, reads) << "a cached device comes from memory";
  auto c = cache.getDevice("c");
  ASSERT_TRUE(c.ok() && c->has_value()) << "not cached, so read from the store";
  EXPECT_EQ(std::get<double>(valuesOf(**c).at("x")), 3.0);
  EXPECT_EQ(store_->deviceReads, reads + 1);
  EXPECT_FALSE(cache.getDevice("zzz")->has_value());
  auto all = cache.listDevices();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);
  EXPECT_EQ(store_->deviceReads, reads + 3);
  EXPECT_EQ(cache.stats().storeReads, 3u);

  // A bound of 0 caches nothing: everything is the store's.
  LatestCache none(*store_, 0);
  ASSERT_TRUE(none.load().ok());
  EXPECT_FALSE(none.stats().complete);
  EXPECT_EQ(none.listDevices()->size(), 3u);
}

TEST_F(LatestCacheTest, UntilLoadedEveryReadGoesToTheStore) {
  ASSERT_TRUE(store_->appendBatch(std::vector<storage::Record>{record("a", kT0, {})}).ok());
  store_->failDeviceReads = true;
  LatestCache cache(*store_, 10);
  EXPECT_FALSE(cache.load().ok());
  commit(cache, {record("a", kT0 + kSecond, {})});
  EXPECT_FALSE(cache.getDevice("a").ok()) << "not answered from a half-filled cache";
  store_->failDeviceReads = false;
  auto a = cache.getDevice("a");
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((**a).messageCount, 2);
}

// A client's change in the store (tags, a device registered before it sent anything) is taken
// over by deviceUpdated; ingest keeps adding to it.
// Another node writing to the same database: records reach the store without this cache
// seeing the batch. A sync takes them over; this node's own batches are not counted twice.
TEST_F(LatestCacheTest, SyncTakesOverWhatOtherNodesWrote) {
  LatestCache cache(*store_, 100);
  ASSERT_TRUE(cache.load().ok());
  commit(cache, {record("mine", kT0, {{"v", std::int64_t{1}}})});
  // "Another node": straight into the store.
  ASSERT_TRUE(
      store_
          ->appendBatch(std::vector{record("theirs", kT0 + 5 * kSecond, {{"v", std::int64_t{7}}}),
                                    record("mine", kT0 + 6 * kSecond, {{"w", std::int64_t{2}}})})
          .ok());
  auto before = cache.getDevice("theirs");
  ASSERT_TRUE(before.ok());
  EXPECT_FALSE(before->has_value());
  ASSERT_TRUE(cache.syncFromStore(kT0 + 5 * kSecond).ok());
  auto theirs = cache.getDevice("theirs");
  ASSERT_TRUE(theirs.ok() && theirs->has_value());
  EXPECT_EQ((*theirs)->messageCount, 1);
  EXPECT_EQ(valuesOf(**theirs), (Values{{"v", std::int64_t{7}}}));
  auto mine = cache.getDevice("mine");
  ASSERT_TRUE(mine.ok() && mine->has_value());
  EXPECT_EQ((*mine)->messageCount, 2);
  EXPECT_EQ((*mine)->lastSeenUs, kT0 + 6 * kSecond);
  EXPECT_EQ(valuesOf(**mine), (Values{{"v", std::int64_t{1}}, {"w", std::int64_t{2}}}));
  // This node's next batch adds to what the sync took over, once.
  commit(cache, {record("mine", kT0 + 7 * kSecond, {{"v", std::int64_t{3}}})});
  ASSERT_TRUE(cache.syncFromStore(std::nullopt).ok());
  auto cached = cache.listDevices();
  auto stored = inner_->listDevices();
  ASSERT_TRUE(cached.ok() && stored.ok());
  expectSameDevices(*cached, *stored);
  EXPECT_EQ(cache.stats().syncs, 2U);
}

TEST_F(LatestCacheTest, WholeListSyncForgetsDevicesDeletedElsewhere) {
  LatestCache cache(*store_, 100);
  ASSERT_TRUE(cache.load().ok());
  commit(cache, {record("kept", kT0, {{"v", std::int64_t{1}}}),
                 record("gone", kT0, {{"v", std::int64_t{2}}})});
  // "Another node" deletes one: straight in the store, no deviceUpdated here.
  auto deleted = inner_->deleteDevice("gone");
  ASSERT_TRUE(deleted.ok() && *deleted);
  ASSERT_TRUE(cache.syncFromStore(kT0).ok());
  auto stale = cache.getDevice("gone");
  ASSERT_TRUE(stale.ok());
  EXPECT_TRUE(stale->has_value()) << "a since-sync sees only devices that sent: not deletions";
  ASSERT_TRUE(cache.syncFromStore(std::nullopt).ok());
  auto gone = cache.getDevice("gone");
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  auto kept = cache.getDevice("kept");
  ASSERT_TRUE(kept.ok() && kept->has_value());
  EXPECT_EQ(cache.stats().forgotten, 1U);
  EXPECT_EQ(cache.stats().devices, 1U);
  // Back again through another node: the next sync takes it as new.
  ASSERT_TRUE(
      store_->appendBatch(std::vector{record("gone", kT0 + kSecond, {{"v", std::int64_t{3}}})})
          .ok());
  ASSERT_TRUE(cache.syncFromStore(std::nullopt).ok());
  auto back = cache.getDevice("gone");
  ASSERT_TRUE(back.ok() && back->has_value());
  EXPECT_EQ((*back)->messageCount, 1);
  auto cached = cache.listDevices();
  auto stored = inner_->listDevices();
  ASSERT_TRUE(cached.ok() && stored.ok());
  expectSameDevices(*cached, *stored);
}

// A sync racing this node's writer: whatever the interleaving, the cache ends equal to the
// store (a device in a batch in flight is re-read under the commit gate, never counted twice).
TEST_F(LatestCacheTest, SyncConcurrentWithTheWriterNeverCountsTwice) {
  LatestCache cache(*store_, 1000);
  ASSERT_TRUE(cache.load().ok());
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    for (int i = 0; i < 200; ++i) {
      std::vector<storage::Record> batch;
      for (int d = 0; d < 10; ++d) {
        batch.push_back(record(deviceName(d), kT0 + i * kSecond + d, {{"i", std::int64_t{i}}}));
      }
      commit(cache, batch);
    }
    writing = false;
  });
  int syncs = 0;
  while (writing.load() && syncs < 10'000) {
    ASSERT_TRUE(
        cache.syncFromStore(syncs % 2 == 0 ? std::optional<std::int64_t>(kT0) : std::nullopt).ok());
    ++syncs;
  }
  writer.join();
  auto cached = cache.listDevices();
  auto stored = inner_->listDevices();
  ASSERT_TRUE(cached.ok() && stored.ok());
  expectSameDevices(*cached, *stored);
  for (const auto& device : *cached) EXPECT_EQ(device.messageCount, 200) << device.deviceId;
}

TEST_F(LatestCacheTest, DeviceUpdatesAreTakenFromTheStore) {
  LatestCache cache(*store_, 100);
  ASSERT_TRUE(cache.load().ok());
  commit(cache, {record("a", kT0, {{"x", 1.0}})});
  storage::DeviceUpdate update;
  update.tags = std::map<std::string, std::string>{{"fleet", "east"}};
  ASSERT_TRUE(store_->updateDevice("fresh", update).ok());
  ASSERT_TRUE(store_->updateDevice("a", update).ok());
  ASSERT_TRUE(cache.deviceUpdated("fresh").ok());
  ASSERT_TRUE(cache.deviceUpdated("a").ok());
  auto fresh = cache.getDevice("fresh");
  ASSERT_TRUE(fresh.ok() && fresh->has_value());
  EXPECT_EQ((**fresh).messageCount, 0);
  EXPECT_EQ((**fresh).tags.at("fleet"), "east");
  commit(cache, {record("fresh", kT0 + kSecond, {{"y", 2.0}})});
  fresh = cache.getDevice("fresh");
  EXPECT_EQ((**fresh).messageCount, 1);
  EXPECT_EQ((**fresh).firstSeenUs, kT0 + kSecond);
  EXPECT_EQ((**fresh).lastSeenUs, kT0 + kSecond);
  EXPECT_EQ((**fresh).tags.at("fleet"), "east");
  auto a = cache.getDevice("a");
  EXPECT_EQ((**a).messageCount, 1);
  EXPECT_EQ((**a).tags.at("fleet"), "east");
  expectSameDevices(*cache.listDevices(), *inner_->listDevices());
}

TEST_F(LatestCacheTest, RetentionRefreshTakesCountsAndFirstSeenFromTheStore) {
  std::vector<storage::Record> batch;
  for (int i = 0; i < 10; ++i)
    batch.push_back(record("old", kT0 + i * kSecond, {{"i", std::int64_t{i}}}));
  batch.push_back(record("new", kT0 + 100 * kSecond, {{"i", std::int64_t{0}}}));
  LatestCache cache(*store_, 100);
  ASSERT_TRUE(cache.load().ok());
  commit(cache, batch);
  auto deleted = store_->deleteBefore(kT0 + 6 * kSecond);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 6);
  EXPECT_EQ((**cache.getDevice("old")).messageCount, 10) << "stale until refreshed";
  ASSERT_TRUE(cache.refreshAfterRetention(kT0 + 6 * kSecond).ok());
  auto old = cache.getDevice("old");
  EXPECT_EQ((**old).messageCount, 4);
  EXPECT_EQ((**old).firstSeenUs, kT0 + 6 * kSecond);
  EXPECT_EQ(std::get<std::int64_t>(valuesOf(**old).at("i")), 9) << "latest values stay";
  expectSameDevices(*cache.listDevices(), *inner_->listDevices());
  EXPECT_EQ(cache.stats().refreshes, 1u);
}

// The writer keeps committing (through the real pipeline) while retention deletes and the cache
// refreshes; afterwards the cache equals the store exactly, for hot and idle devices alike.
TEST_F(LatestCacheTest, RefreshStaysExactWhileTheWriterCommits) {
  constexpr int kDevices = 50;
  LatestCache cache(*store_, 1000);
  ASSERT_TRUE(cache.load().ok());
  {
    std::vector<storage::Record> old;
    for (int d = 0; d < kDevices; ++d) {
      for (int i = 0; i < 20; ++i) {
        old.push_back(record(deviceName(d), kT0 + i * kSecond, {{"i", std::int64_t{i}}}));
      }
    }
    commit(cache, old);
  }
  PipelineOptions options;
  options.batchSize = 7;
  options.batchMs = 0;
  Pipeline pipeline(*store_, options, &cache);
  ASSERT_TRUE(pipeline.start().ok());
  std::atomic<bool> stop{false};
  std::atomic<int> acked{0};
  int submitted = 0;
  std::thread writer([&] {
    // "dev0" is in every batch (hot); the others now and then. Bounded in count.
    for (int n = 0; n < 20'000 && !stop; ++n) {
      const std::string device = n % 2 == 0 ? "dev0" : deviceName(n % kDevices);
      pipeline.submit(record(device, kT0 + 1000 * kSecond + n, {{"n", std::int64_t{n}}}),
                      [&] { ++acked; });
      ++submitted;
      if (n % 64 == 0) std::this_thread::sleep_for(100us);
    }
  });
  for (int round = 1; round <= 10; ++round) {
    const std::int64_t cutoff = kT0 + 2 * round * kSecond;
    ASSERT_TRUE(store_->deleteBefore(cutoff).ok());
    ASSERT_TRUE(cache.refreshAfterRetention(cutoff).ok());
  }
  stop = true;
  writer.join();
  pipeline.stop();
  EXPECT_EQ(acked.load(), submitted);
  expectSameDevices(*cache.listDevices(), *inner_->listDevices());
  EXPECT_EQ((**cache.getDevice("dev2")).messageCount, 0) << "idle, and all its messages expired";
}

}  // namespace
}  // namespace tern::ingest
