// The pipeline with a spool, in front of a real SQLite store that fails on demand: acks come
// from the spool while the store refuses writes, everything is replayed in order once it takes
// them again, a full spool is back-pressure, and without a spool nothing changes.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ingest/pipeline.h"
#include "ingest/spool.h"
#include "storage/sqlite/sqlite_store.h"

namespace tern::ingest {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Wraps the real store; appendBatch fails while `fail` is set.
class FailingStore : public storage::Store {
 public:
  explicit FailingStore(storage::Store& inner) : inner_(inner) {}
  std::atomic<bool> fail{false};
  std::atomic<int> appends{0};

  core::Status appendBatch(std::span<const storage::Record> records) override {
    ++appends;
    if (fail) return core::Error{"database is down"};
    return inner_.appendBatch(records);
  }
  core::Result<std::vector<storage::StoredRecord>> queryMessages(
      const storage::MessageQuery& query) override {
    return inner_.queryMessages(query);
  }
  core::Result<std::vector<storage::Bucket>> querySeries(
      const storage::SeriesQuery& query) override {
    return inner_.querySeries(query);
  }
  core::Result<std::vector<storage::DeviceSummary>> listDevices() override {
    return inner_.listDevices();
  }
  core::Result<std::optional<storage::DeviceSummary>> getDevice(
      const std::string& deviceId) override {
    return inner_.getDevice(deviceId);
  }
  core::Result<std::int64_t> countMessages() override { return inner_.countMessages(); }
  std::string backendName() const override { return inner_.backendName(); }
  core::Status check() override { return inner_.check(); }

 private:
  storage::Store& inner_;
};

storage::Record numbered(int i) {
  storage::Record r;
  r.deviceId = "dev";
  r.serverTimeUs = 1'700'000'000'000'000 + i;
  r.nodeId = "node";
  r.topic = "device/dev";
  r.payload = "{\"n\":" + std::to_string(i) + "}";
  r.payloadIsJson = true;
  r.fields.push_back({"n", std::int64_t{i}});
  return r;
}

bool waitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

class PipelineSpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = fs::temp_directory_path() /
           ("tern_pipeline_test_" + std::to_string(random()) + std::to_string(random()));
    fs::create_directories(dir_);
    inner_ = storage::sqlite::openSqliteStore({(dir_ / "tern.db").string()});
    store_ = std::make_unique<FailingStore>(*inner_);
  }
  void TearDown() override {
    store_.reset();
    inner_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  PipelineOptions spoolOptions() const {
    PipelineOptions o;
    o.batchSize = 10;
    o.batchMs = 1;
    o.queueCapacity = 1000;
    o.spoolDir = (dir_ / "spool").string();
    o.spoolAfterMs = 0;
    return o;
  }

  void submit(Pipeline& pipeline, int from, int to) {
    for (int i = from; i < to; ++i) pipeline.submit(numbered(i), [this] { ++acked_; });
  }

  // The numbers in the store, in commit (id) order.
  std::vector<std::int64_t> stored() {
    storage::MessageQuery q;
    q.deviceId = "dev";
    q.limit = 100000;
    auto rows = inner_->queryMessages(q);
    EXPECT_TRUE(rows.ok());
    std::vector<storage::StoredRecord> sorted =
        rows.ok() ? *rows : std::vector<storage::StoredRecord>{};
    std::sort(sorted.begin(), sorted.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    std::vector<std::int64_t> out;
    for (const auto& r : sorted) out.push_back(std::get<std::int64_t>(r.record.fields.at(0).value));
    return out;
  }

  static std::vector<std::int64_t> iota(int from, int to) {
    std::vector<std::int64_t> out;
    for (int i = from; i < to; ++i) out.push_back(i);
    return out;
  }

  fs::path dir_;
  std::unique_ptr<storage::Store> inner_;
  std::unique_ptr<FailingStore> store_;
  std::atomic<int> acked_{0};
};

TEST_F(PipelineSpoolTest, AcksFromTheSpoolWhileTheStoreFailsThenReplaysInOrder) {
  Pipeline pipeline(*store_, spoolOptions());
  ASSERT_TRUE(pipeline.start().ok());
  store_->fail = true;
  submit(pipeline, 0, 100);
  ASSERT_TRUE(waitFor([&] { return acked_ == 100; })) << acked_;
  EXPECT_EQ(stored().size(), 0u);
  PipelineStats s = pipeline.stats();
  EXPECT_EQ(s.spooled, 100u);
  EXPECT_EQ(s.committed, 0u);
  EXPECT_GT(s.spoolBytes, 0u);

  // Back: new records queue behind the spooled ones.
  store_->fail = false;
  submit(pipeline, 100, 150);
  ASSERT_TRUE(waitFor([&] { return pipeline.stats().spoolBytes == 0 && acked_ == 150; }));
  ASSERT_TRUE(waitFor([&] { return stored().size() == 150; }));
  EXPECT_EQ(stored(), iota(0, 150));  // exactly once, in order
  s = pipeline.stats();
  EXPECT_EQ(s.replayed + s.committed, 150u);
  EXPECT_GE(s.replayed, 100u);
  EXPECT_GT(s.commitFailures, 0u);

  // Drained: straight to the store again.
  submit(pipeline, 150, 160);
  ASSERT_TRUE(waitFor([&] { return acked_ == 160; }));
  pipeline.stop();
  EXPECT_EQ(pipeline.stats().spooled, s.spooled);
  EXPECT_EQ(stored(), iota(0, 160));
  for (const auto& e : fs::directory_iterator(dir_ / "spool")) {
    EXPECT_NE(e.path().extension(), ".log") << "replayed segment left behind: " << e.path();
  }
}

TEST_F(PipelineSpoolTest, FullSpoolIsBackPressureAndNothingAcknowledgedIsLost) {
  PipelineOptions options = spoolOptions();
  options.spoolMaxBytes = 2000;  // about 25 records
  options.spoolSegmentBytes = 500;
  Pipeline pipeline(*store_, options);
  ASSERT_TRUE(pipeline.start().ok());
  store_->fail = true;
  submit(pipeline, 0, 200);
  ASSERT_TRUE(waitFor([&] { return pipeline.overloaded(); }));
  std::this_thread::sleep_for(200ms);
  const int ackedWhileFull = acked_;
  EXPECT_GT(ackedWhileFull, 0);
  EXPECT_LT(ackedWhileFull, 200);
  EXPECT_EQ(static_cast<std::uint64_t>(ackedWhileFull), pipeline.stats().spooled);
  EXPECT_LE(pipeline.stats().spoolBytes, options.spoolMaxBytes);
  EXPECT_TRUE(pipeline.overloaded());
  std::atomic<bool> drained{false};
  pipeline.onDrain([&] { drained = true; });
  EXPECT_FALSE(drained);

  store_->fail = false;
  ASSERT_TRUE(waitFor([&] { return acked_ == 200 && pipeline.stats().spoolBytes == 0; }));
  EXPECT_TRUE(drained);
  EXPECT_FALSE(pipeline.overloaded());
  ASSERT_TRUE(waitFor([&] { return stored().size() == 200; }));
  EXPECT_EQ(stored(), iota(0, 200));
}

TEST_F(PipelineSpoolTest, WithoutASpoolAcksWaitForTheStoreAsBefore) {
  PipelineOptions options = spoolOptions();
  options.spoolDir.clear();
  Pipeline pipeline(*store_, options);
  ASSERT_TRUE(pipeline.start().ok());
  store_->fail = true;
  submit(pipeline, 0, 20);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(acked_, 0);
  EXPECT_GT(pipeline.stats().commitFailures, 0u);
  store_->fail = false;
  ASSERT_TRUE(waitFor([&] { return acked_ == 20; }));
  EXPECT_EQ(pipeline.stats().committed, 20u);
  EXPECT_EQ(pipeline.stats().spooled, 0u);
  EXPECT_EQ(stored(), iota(0, 20));
  EXPECT_FALSE(fs::exists(dir_ / "spool"));
}

TEST_F(PipelineSpoolTest, ABriefFailureIsRetriedInPlaceBeforeSpooling) {
  PipelineOptions options = spoolOptions();
  options.spoolAfterMs = 60'000;
  Pipeline pipeline(*store_, options);
  ASSERT_TRUE(pipeline.start().ok());
  store_->fail = true;
  submit(pipeline, 0, 20);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(acked_, 0);
  store_->fail = false;
  ASSERT_TRUE(waitFor([&] { return acked_ == 20; }));
  EXPECT_EQ(pipeline.stats().spooled, 0u);
  EXPECT_EQ(stored(), iota(0, 20));
}

TEST_F(PipelineSpoolTest, StopWhileTheStoreFailsSpoolsAndTheNextStartReplays) {
  PipelineOptions options = spoolOptions();
  options.spoolAfterMs = 60'000;  // at stop, the spool is used at once
  {
    Pipeline pipeline(*store_, options);
    ASSERT_TRUE(pipeline.start().ok());
    store_->fail = true;
    submit(pipeline, 0, 30);
    std::this_thread::sleep_for(50ms);
    pipeline.stop();
    EXPECT_EQ(acked_, 30);
    EXPECT_EQ(pipeline.stats().spooled, 30u);
  }
  EXPECT_EQ(stored().size(), 0u);

  store_->fail = false;
  Pipeline pipeline(*store_, options);
  ASSERT_TRUE(pipeline.start().ok());
  EXPECT_GT(pipeline.stats().spoolBytes, 0u);
  submit(pipeline, 30, 40);  // behind what the last run left
  ASSERT_TRUE(waitFor([&] { return acked_ == 40 && pipeline.stats().spoolBytes == 0; }));
  ASSERT_TRUE(waitFor([&] { return stored().size() == 40; }));
  EXPECT_EQ(stored(), iota(0, 40));
  EXPECT_EQ(pipeline.stats().replayed, 40u);
}

TEST_F(PipelineSpoolTest, ASpoolLeftByACrashIsReplayedAtStart) {
  {
    SpoolOptions so;
    so.dir = (dir_ / "spool").string();
    Spool spool(so);
    ASSERT_TRUE(spool.open().ok());
    std::vector<storage::Record> records;
    for (int i = 0; i < 25; ++i) records.push_back(numbered(i));
    ASSERT_TRUE(spool.append(records).ok());
  }
  Pipeline pipeline(*store_, spoolOptions());
  ASSERT_TRUE(pipeline.start().ok());
  ASSERT_TRUE(waitFor([&] { return pipeline.stats().spoolBytes == 0; }));
  ASSERT_TRUE(waitFor([&] { return stored().size() == 25; }));
  EXPECT_EQ(stored(), iota(0, 25));
  EXPECT_EQ(pipeline.stats().replayed, 25u);
}

}  // namespace
}  // namespace tern::ingest
