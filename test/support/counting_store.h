#pragma once
// A real store wrapped by a decorator that counts reads of the device summaries, can make them
// fail, and can hold a batch just before it reaches the store. Our own interface, not a mock:
// every call goes to the real backend.
#include <atomic>
#include <condition_variable>
#include <mutex>

#include "storage/store.h"

namespace tern::test {

class CountingStore : public storage::Store {
 public:
  explicit CountingStore(storage::Store& inner) : inner_(inner) {}

  std::atomic<int> deviceReads{0};  // listDevices + getDevice
  std::atomic<bool> failDeviceReads{false};
  std::atomic<int> appends{0};

  // While held, appendBatch waits before it calls the real store (the batch is not committed).
  void hold() {
    std::lock_guard lock(mutex_);
    held_ = true;
  }
  void release() {
    {
      std::lock_guard lock(mutex_);
      held_ = false;
    }
    changed_.notify_all();
  }
  // True once a batch is waiting in appendBatch (within `wait`).
  bool waitUntilHeld(std::chrono::milliseconds wait) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, wait, [this] { return waiting_ > 0; });
  }

  core::Status appendBatch(std::span<const storage::Record> records) override {
    {
      std::unique_lock lock(mutex_);
      ++waiting_;
      changed_.notify_all();
      changed_.wait(lock, [this] { return !held_; });
      --waiting_;
    }
    ++appends;
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
    ++deviceReads;
    if (failDeviceReads) return core::Error{"device reads are off in this test"};
    return inner_.listDevices();
  }
  core::Result<std::optional<storage::DeviceSummary>> getDevice(
      const std::string& deviceId) override {
    ++deviceReads;
    if (failDeviceReads) return core::Error{"device reads are off in this test"};
    return inner_.getDevice(deviceId);
  }
  core::Result<std::int64_t> countMessages() override { return inner_.countMessages(); }
  core::Result<std::int64_t> deleteBefore(std::int64_t cutoffUs) override {
    return inner_.deleteBefore(cutoffUs);
  }
  core::Result<std::int64_t> dropKeyBefore(const std::string& key, std::int64_t cutoffUs) override {
    return inner_.dropKeyBefore(key, cutoffUs);
  }
  core::Result<storage::DeviceSummary> updateDevice(const std::string& deviceId,
                                                    const storage::DeviceUpdate& update) override {
    return inner_.updateDevice(deviceId, update);
  }
  core::Result<std::vector<storage::DeviceSummary>> listDevicesWithTag(
      const std::string& key, const std::string& value) override {
    return inner_.listDevicesWithTag(key, value);
  }
  core::Result<std::vector<storage::FleetDevice>> fleetLatest(
      const storage::FleetLatestQuery& query) override {
    return inner_.fleetLatest(query);
  }
  core::Result<std::vector<storage::FleetDevice>> fleetThreshold(
      const storage::FleetThresholdQuery& query) override {
    return inner_.fleetThreshold(query);
  }
  core::Result<std::vector<storage::FleetDevice>> fleetWindowAverage(
      const storage::FleetWindowQuery& query) override {
    return inner_.fleetWindowAverage(query);
  }
  core::Result<std::vector<storage::FleetDailyRow>> fleetDaily(
      const storage::FleetDailyQuery& query) override {
    return inner_.fleetDaily(query);
  }
  core::Result<storage::RollupRun> rollup(std::int64_t untilUs) override {
    return inner_.rollup(untilUs);
  }
  std::string backendName() const override { return inner_.backendName(); }
  core::Status check() override { return inner_.check(); }

 private:
  storage::Store& inner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool held_ = false;
  int waiting_ = 0;
};

}  // namespace tern::test
