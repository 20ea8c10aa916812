#include "ingest/latest_cache.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace tern::ingest {
namespace {

// Devices re-read under the commit gate at a time: the writer waits for at most this many
// getDevice calls.
constexpr std::size_t kGateGroup = 16;

// Above this many keys, merging latest values uses a hash index instead of a linear search.
constexpr std::size_t kLinearKeys = 32;

// The stores do not keep values without a JSON form (NaN, infinities) as latest values.
bool representable(const storage::FieldValue& value) {
  const auto* d = std::get_if<double>(&value);
  return d == nullptr || std::isfinite(*d);
}

// Newer values win; a new key goes to the end (the order the stores keep).
void mergeInto(std::vector<storage::Field>& latest,
               std::span<const std::pair<std::string_view, const storage::FieldValue*>> updates) {
  if (latest.size() + updates.size() <= kLinearKeys) {
    for (const auto& [key, value] : updates) {
      auto found = std::find_if(latest.begin(), latest.end(),
                                [&](const storage::Field& f) { return f.key == key; });
      if (found == latest.end()) {
        latest.push_back(storage::Field{std::string(key), *value});
      } else {
        found->value = *value;
      }
    }
    return;
  }
  std::unordered_map<std::string_view, std::size_t> index;
  index.reserve(latest.size() + updates.size());
  for (std::size_t i = 0; i < latest.size(); ++i) index.emplace(latest[i].key, i);
  for (const auto& [key, value] : updates) {
    if (auto it = index.find(key); it != index.end()) {
      latest[it->second].value = *value;
    } else {
      // The new key is a view into the caller's record, which outlives this call.
      index.emplace(key, latest.size());
      latest.push_back(storage::Field{std::string(key), *value});
    }
  }
}

}  // namespace

LatestCache::LatestCache(storage::Store& store, std::size_t maxDevices)
    : store_(store), maxDevices_(maxDevices), pendingByShard_(kShards) {}

LatestCache::Shard& LatestCache::shardFor(std::string_view deviceId) {
  return shards_[StringHash{}(deviceId) % kShards];
}

const LatestCache::Shard& LatestCache::shardFor(std::string_view deviceId) const {
  return shards_[StringHash{}(deviceId) % kShards];
}

storage::DeviceSummary LatestCache::toSummary(const std::string& deviceId, const Entry& entry) {
  storage::DeviceSummary summary;
  summary.deviceId = deviceId;
  summary.firstSeenUs = entry.firstSeenUs;
  summary.lastSeenUs = entry.lastSeenUs;
  summary.messageCount = entry.messageCount;
  summary.latest = entry.latest;
  summary.tags = entry.tags;
  summary.attributes = entry.attributes;
  summary.name = entry.name;
  summary.type = entry.type;
  return summary;
}

LatestCache::Entry* LatestCache::insertLocked(Shard& shard, std::string_view deviceId) {
  if (size_.load(std::memory_order_relaxed) >= maxDevices_) {
    complete_.store(false, std::memory_order_release);
    return nullptr;
  }
  auto [it, inserted] = shard.devices.try_emplace(std::string(deviceId));
  if (inserted) size_.fetch_add(1, std::memory_order_relaxed);
  return &it->second;
}

core::Status LatestCache::load() {
  auto devices = store_.listDevices();
  if (!devices) {
    complete_.store(false, std::memory_order_release);
    return core::Error{"latest cache: loading devices: " + devices.error().message};
  }
  complete_.store(true, std::memory_order_release);
  loaded_.store(true, std::memory_order_release);
  for (auto& device : *devices) {
    Shard& shard = shardFor(device.deviceId);
    std::unique_lock lock(shard.mutex);
    Entry* entry = insertLocked(shard, device.deviceId);
    if (entry == nullptr) break;
    assign(*entry, std::move(device));
  }
  return {};
}

core::Status LatestCache::deviceUpdated(const std::string& deviceId) {
  if (!loaded_.load(std::memory_order_acquire)) return {};
  std::lock_guard gate(commitGate_);
  auto device = store_.getDevice(deviceId);
  if (!device) return core::Error{"latest cache: device update: " + device.error().message};
  Shard& shard = shardFor(deviceId);
  if (!device->has_value()) {
    // Deleted (and not back since): forget it.
    std::unique_lock lock(shard.mutex);
    if (shard.devices.erase(deviceId) > 0) size_.fetch_sub(1, std::memory_order_relaxed);
    return {};
  }
  storage::DeviceSummary& summary = **device;
  std::unique_lock lock(shard.mutex);
  Entry* entry = insertLocked(shard, deviceId);
  if (entry == nullptr) return {};  // over the bound: the store answers for it
  assign(*entry, std::move(summary));
  return {};
}

void LatestCache::assign(Entry& entry, storage::DeviceSummary&& summary) {
  entry.firstSeenUs = summary.firstSeenUs;
  entry.lastSeenUs = summary.lastSeenUs;
  entry.messageCount = summary.messageCount;
  entry.latest = std::move(summary.latest);
  entry.tags = std::move(summary.tags);
  entry.attributes = std::move(summary.attributes);
  entry.name = std::move(summary.name);
  entry.type = std::move(summary.type);
}

core::Status LatestCache::syncFromStore(std::optional<std::int64_t> sinceUs) {
  // As in refreshAfterRetention: every batch up to `done` is in the store and in the cache
  // before the store is read. A device a later batch touches, or one the cache lacks (a batch
  // in flight cannot mark it), may or may not be in what the store returns for this node's own
  // writes: it is re-read under the commit gate, so nothing is counted twice.
  if (!loaded_.load(std::memory_order_acquire)) return {};
  const std::uint64_t done = doneSeq_.load(std::memory_order_acquire);
  auto devices = sinceUs ? store_.listDevicesSeenSince(*sinceUs) : store_.listDevices();
  if (!devices) return core::Error{"latest cache: sync: " + devices.error().message};
  // A whole list also tells which devices are gone (deleted through another node): cached ones
  // it lacks that this node has not written since are re-read below, and forgotten if absent.
  std::unordered_set<std::string> listed;
  if (!sinceUs) {
    for (const auto& device : *devices) listed.insert(device.deviceId);
  }
  std::vector<std::string> again;
  for (auto& device : *devices) {
    Shard& shard = shardFor(device.deviceId);
    std::unique_lock lock(shard.mutex);
    auto it = shard.devices.find(device.deviceId);
    if (it == shard.devices.end() || it->second.touchedSeq > done) {
      again.push_back(std::move(device.deviceId));
      continue;
    }
    assign(it->second, std::move(device));
  }
  if (!sinceUs) {
    for (Shard& shard : shards_) {
      std::unique_lock lock(shard.mutex);
      for (const auto& [deviceId, entry] : shard.devices) {
        if (entry.touchedSeq <= done && !listed.contains(deviceId)) again.push_back(deviceId);
      }
    }
  }
  for (std::size_t start = 0; start < again.size(); start += kGateGroup) {
    std::lock_guard gate(commitGate_);
    const std::size_t end = std::min(again.size(), start + kGateGroup);
    for (std::size_t i = start; i < end; ++i) {
      auto device = store_.getDevice(again[i]);
      if (!device) return core::Error{"latest cache: sync: " + device.error().message};
      Shard& shard = shardFor(again[i]);
      std::unique_lock lock(shard.mutex);
      if (!device->has_value()) {
        // Not in the store (deleted elsewhere, and not back since): forget it.
        if (shard.devices.erase(again[i]) > 0) {
          size_.fetch_sub(1, std::memory_order_relaxed);
          forgotten_.fetch_add(1, std::memory_order_relaxed);
        }
        continue;
      }
      Entry* entry = insertLocked(shard, again[i]);
      if (entry != nullptr) assign(*entry, std::move(**device));
    }
  }
  syncs_.fetch_add(1, std::memory_order_relaxed);
  return {};
}

void LatestCache::beginBatch(std::span<const storage::Record> records) {
  commitGate_.lock();
  const std::uint64_t seq = beganSeq_.load(std::memory_order_relaxed) + 1;
  beganSeq_.store(seq, std::memory_order_release);

  // Aggregate per device outside any lock, the way the stores do: later records win.
  pending_.clear();
  for (auto& indexes : pendingByShard_) indexes.clear();
  std::unordered_map<std::string_view, std::size_t> index;
  for (const storage::Record& record : records) {
    auto [it, inserted] = index.try_emplace(record.deviceId, pending_.size());
    if (inserted) {
      Pending& p = pending_.emplace_back();
      p.deviceId = record.deviceId;
      p.firstSeenUs = std::numeric_limits<std::int64_t>::max();
      p.lastSeenUs = std::numeric_limits<std::int64_t>::min();
      pendingByShard_[StringHash{}(p.deviceId) % kShards].push_back(it->second);
    }
    Pending& p = pending_[it->second];
    p.firstSeenUs = std::min(p.firstSeenUs, record.serverTimeUs);
    p.lastSeenUs = std::max(p.lastSeenUs, record.serverTimeUs);
    ++p.count;
    for (const storage::Field& field : record.fields) {
      if (!representable(field.value)) continue;
      auto [keyIt, newKey] = p.latestIndex.try_emplace(field.key, p.latest.size());
      if (newKey) {
        p.latest.emplace_back(field.key, &field.value);
      } else {
        p.latest[keyIt->second].second = &field.value;
      }
    }
  }
  // Mark the devices before the store sees the batch: a refresh that reads the store from now
  // on cannot tell whether its read includes this batch, and must not trust it for them.
  for (std::size_t s = 0; s < kShards; ++s) {
    if (pendingByShard_[s].empty()) continue;
    std::unique_lock lock(shards_[s].mutex);
    for (const std::size_t i : pendingByShard_[s]) {
      auto it = shards_[s].devices.find(pending_[i].deviceId);
      if (it != shards_[s].devices.end()) it->second.touchedSeq = seq;
    }
  }
}

void LatestCache::endBatch(bool committed) {
  const std::uint64_t seq = beganSeq_.load(std::memory_order_relaxed);
  // Not loaded: entries would count only this run's messages, so nothing is cached.
  if (committed && loaded_.load(std::memory_order_relaxed)) {
    for (std::size_t s = 0; s < kShards; ++s) {
      if (pendingByShard_[s].empty()) continue;
      Shard& shard = shards_[s];
      std::unique_lock lock(shard.mutex);
      for (const std::size_t i : pendingByShard_[s]) {
        const Pending& p = pending_[i];
        Entry* entry = nullptr;
        if (auto it = shard.devices.find(p.deviceId); it != shard.devices.end()) {
          entry = &it->second;
          // Count 0: retention emptied it, so its first-seen time starts afresh (as in the stores).
          entry->firstSeenUs = entry->messageCount == 0
                                   ? p.firstSeenUs
                                   : std::min(entry->firstSeenUs, p.firstSeenUs);
          entry->lastSeenUs = std::max(entry->lastSeenUs, p.lastSeenUs);
          entry->messageCount += p.count;
        } else {
          entry = insertLocked(shard, p.deviceId);
          if (entry == nullptr) continue;  // over the bound: the store answers for it
          entry->firstSeenUs = p.firstSeenUs;
          entry->lastSeenUs = p.lastSeenUs;
          entry->messageCount = p.count;
        }
        entry->touchedSeq = seq;
        mergeInto(entry->latest, p.latest);
      }
    }
  }
  pending_.clear();
  doneSeq_.store(seq, std::memory_order_release);
  commitGate_.unlock();
}

core::Result<std::vector<storage::DeviceSummary>> LatestCache::listDevices() const {
  if (!complete_.load(std::memory_order_acquire)) {
    storeReads_.fetch_add(1, std::memory_order_relaxed);
    return store_.listDevices();
  }
  std::vector<storage::DeviceSummary> out;
  out.reserve(size_.load(std::memory_order_relaxed));
  for (const Shard& shard : shards_) {
    std::shared_lock lock(shard.mutex);
    for (const auto& [id, entry] : shard.devices) out.push_back(toSummary(id, entry));
  }
  // The stores list in byte order of the id; sorting happens outside every lock.
  std::sort(out.begin(), out.end(),
            [](const storage::DeviceSummary& a, const storage::DeviceSummary& b) {
              return a.deviceId < b.deviceId;
            });
  return out;
}

core::Result<std::optional<storage::DeviceSummary>> LatestCache::getDevice(
    const std::string& deviceId) const {
  if (!loaded_.load(std::memory_order_acquire)) {
    storeReads_.fetch_add(1, std::memory_order_relaxed);
    return store_.getDevice(deviceId);
  }
  {
    const Shard& shard = shardFor(deviceId);
    std::shared_lock lock(shard.mutex);
    if (auto it = shard.devices.find(deviceId); it != shard.devices.end()) {
      return std::optional<storage::DeviceSummary>(toSummary(it->first, it->second));
    }
  }
  if (complete_.load(std::memory_order_acquire)) return std::optional<storage::DeviceSummary>();
  storeReads_.fetch_add(1, std::memory_order_relaxed);
  return store_.getDevice(deviceId);
}

core::Status LatestCache::refreshAfterRetention(std::int64_t cutoffUs) {
  // Every batch up to `done` is committed and applied before the store is read below. A device
  // touched by a later batch (marked in beginBatch, before that batch reaches the store) may or
  // may not be in what the store returns, so it is re-read under the commit gate instead.
  if (!loaded_.load(std::memory_order_acquire)) return {};
  const std::uint64_t done = doneSeq_.load(std::memory_order_acquire);
  auto devices = store_.listDevices();
  if (!devices) return core::Error{"latest cache: refresh: " + devices.error().message};
  std::vector<std::string> again;
  for (const auto& device : *devices) {
    Shard& shard = shardFor(device.deviceId);
    std::unique_lock lock(shard.mutex);
    auto it = shard.devices.find(device.deviceId);
    // Retention only touches devices with messages before the cutoff.
    if (it == shard.devices.end() || it->second.firstSeenUs >= cutoffUs) continue;
    if (it->second.touchedSeq > done) {
      again.push_back(device.deviceId);
      continue;
    }
    it->second.firstSeenUs = device.firstSeenUs;
    it->second.messageCount = device.messageCount;
  }
  for (std::size_t start = 0; start < again.size(); start += kGateGroup) {
    // No batch is in flight while the gate is held, so the store and the cache agree on every
    // batch for these devices; only retention's changes differ.
    std::lock_guard gate(commitGate_);
    const std::size_t end = std::min(again.size(), start + kGateGroup);
    for (std::size_t i = start; i < end; ++i) {
      auto device = store_.getDevice(again[i]);
      if (!device) return core::Error{"latest cache: refresh: " + device.error().message};
      if (!device->has_value()) continue;
      Shard& shard = shardFor(again[i]);
      std::unique_lock lock(shard.mutex);
      auto it = shard.devices.find(again[i]);
      if (it == shard.devices.end()) continue;
      it->second.firstSeenUs = (*device)->firstSeenUs;
      it->second.messageCount = (*device)->messageCount;
    }
  }
  refreshes_.fetch_add(1, std::memory_order_relaxed);
  return {};
}

LatestCacheStats LatestCache::stats() const {
  LatestCacheStats s;
  s.devices = size_.load(std::memory_order_relaxed);
  s.complete = complete_.load(std::memory_order_acquire);
  s.storeReads = storeReads_.load(std::memory_order_relaxed);
  s.refreshes = refreshes_.load(std::memory_order_relaxed);
  s.syncs = syncs_.load(std::memory_order_relaxed);
  s.forgotten = forgotten_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace tern::ingest
