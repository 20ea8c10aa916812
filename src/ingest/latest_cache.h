#pragma once
// The latest-state cache: per device first seen, last seen, message count and the latest value
// of every key, in memory, so device lists, device lookups and "latest" endpoints never read the
// store. Loaded from Store::listDevices at start and kept current by the pipeline's writer,
// which applies each batch only after the store has committed it (never uncommitted data).
//
// Bounded: at most `maxDevices` devices. A device beyond the bound is not cached; from then on
// the cache is "incomplete" and answers what it does not hold from the store (device lists come
// from the store entirely). Retention changes counts and first-seen times in the store;
// refreshAfterRetention() re-reads them.
//
// Threading: the writer thread calls beginBatch/endBatch around each Store::appendBatch; reads
// and refreshAfterRetention may run on any thread. Devices are spread over shards, each with its
// own shared_mutex held only while one shard's entries are copied or updated, so readers never
// hold the writer up for more than one shard's copy.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/result.h"
#include "storage/store.h"

namespace tern::ingest {

struct LatestCacheStats {
  std::uint64_t devices = 0;  // devices held
  bool complete = true;  // holds every device the store has (false: loading failed or overflow)
  std::uint64_t storeReads = 0;  // reads answered by the store because the cache lacked them
  std::uint64_t refreshes = 0;   // retention refreshes done
  std::uint64_t syncs = 0;       // syncFromStore runs done (several nodes, one database)
  std::uint64_t forgotten = 0;   // devices a whole-list sync found gone (deleted elsewhere)
};

class LatestCache {
 public:
  LatestCache(storage::Store& store, std::size_t maxDevices);
  LatestCache(const LatestCache&) = delete;
  LatestCache& operator=(const LatestCache&) = delete;

  // At start, before the writer runs: fills the cache from Store::listDevices. Until it has
  // succeeded, the cache holds nothing and every read goes to the store.
  core::Status load();

  // Writer thread only, around each Store::appendBatch (live batches and spool replay alike):
  // beginBatch before it, endBatch after it with whether it committed. `records` must stay
  // alive and unchanged until endBatch. Between the two calls the batch is "in flight";
  // refreshAfterRetention waits for it only when it has to re-read a device the batch touches.
  void beginBatch(std::span<const storage::Record> records);
  void endBatch(bool committed);

  // Reads, any thread; the same contract as the Store methods of the same name.
  core::Result<std::vector<storage::DeviceSummary>> listDevices() const;
  core::Result<std::optional<storage::DeviceSummary>> getDevice(const std::string& deviceId) const;

  // After Store::updateDevice(deviceId) or Store::deleteDevice(deviceId) (any thread): takes the
  // device (tags, attributes, a device registered before it sent) from the store, or forgets it
  // when the store no longer has it, under the commit gate so no batch is in flight and store
  // and cache agree on every other part of it (a device that sent again after its deletion is
  // taken as the store has it: new).
  core::Status deviceUpdated(const std::string& deviceId);

  // After Store::deleteBefore(cutoffUs) (any thread, concurrently with the writer): takes message
  // counts and first-seen times of cached devices that had data before the cutoff from the store.
  core::Status refreshAfterRetention(std::int64_t cutoffUs);

  // Several nodes sharing one database (PostgreSQL): takes over the store's view of the devices
  // last seen at or after `sinceUs` (other nodes' messages), or with nullopt of every device
  // (also tags, names and attributes set through another node's API, and devices it
  // registered); a whole-list sync also forgets cached devices the store no longer has
  // (deleted through another node). Devices this node is writing at the same time are re-read
  // under the commit gate, as in refreshAfterRetention, so its own batches are never counted
  // twice. Any thread.
  core::Status syncFromStore(std::optional<std::int64_t> sinceUs);

  LatestCacheStats stats() const;

 private:
  struct Entry {
    std::int64_t firstSeenUs = 0;
    std::int64_t lastSeenUs = 0;
    std::int64_t messageCount = 0;
    std::vector<storage::Field> latest;       // key order: first seen first, as the store keeps it
    std::map<std::string, std::string> tags;  // set through the API, never by ingest
    std::string attributes = "{}";
    std::string name;
    std::string type;
    // The sequence number of the last batch that touched this device (set when it begins).
    std::uint64_t touchedSeq = 0;
  };
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept {
      return std::hash<std::string_view>{}(text);
    }
  };
  using Map = std::unordered_map<std::string, Entry, StringHash, std::equal_to<>>;
  struct Shard {
    mutable std::shared_mutex mutex;
    Map devices;
  };
  // One device's share of the batch in flight (pointers into the caller's records).
  struct Pending {
    std::string_view deviceId;
    std::int64_t firstSeenUs = 0;
    std::int64_t lastSeenUs = 0;
    std::int64_t count = 0;
    std::vector<std::pair<std::string_view, const storage::FieldValue*>> latest;
    std::unordered_map<std::string_view, std::size_t> latestIndex;
  };
  static constexpr std::size_t kShards = 64;

  Shard& shardFor(std::string_view deviceId);
  const Shard& shardFor(std::string_view deviceId) const;
  static storage::DeviceSummary toSummary(const std::string& deviceId, const Entry& entry);
  // The store's view of a device, all but touchedSeq.
  static void assign(Entry& entry, storage::DeviceSummary&& summary);
  // Inserts a device unless the bound is reached (then marks the cache incomplete). Shard lock
  // held.
  Entry* insertLocked(Shard& shard, std::string_view deviceId);

  storage::Store& store_;
  const std::size_t maxDevices_;
  std::array<Shard, kShards> shards_;
  std::atomic<std::size_t> size_{0};
  std::atomic<bool> loaded_{false};  // until load() succeeds every read goes to the store
  std::atomic<bool> complete_{false};
  mutable std::atomic<std::uint64_t> storeReads_{0};
  std::atomic<std::uint64_t> refreshes_{0};
  std::atomic<std::uint64_t> syncs_{0};
  std::atomic<std::uint64_t> forgotten_{0};
  // Batches begun and finished. At most one is in flight (one writer), so doneSeq_ is either
  // beganSeq_ or one behind it.
  std::atomic<std::uint64_t> beganSeq_{0};
  std::atomic<std::uint64_t> doneSeq_{0};
  // Held by the writer from beginBatch to endBatch; a refresh takes it to re-read devices that
  // are written continuously, so a commit cannot land between the read and the update.
  std::mutex commitGate_;
  std::vector<Pending> pending_;                          // writer thread only
  std::vector<std::vector<std::size_t>> pendingByShard_;  // writer thread only
};

}  // namespace tern::ingest
