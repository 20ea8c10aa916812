#pragma once
// The durable hand-off: records go in a bounded queue to one writer thread that commits them in
// batches (group commit) and then runs each record's completion. A completion runs only after
// the batch holding its record is committed, which is what lets the broker send PUBACK late.
// With a spool (PipelineOptions::spoolDir), a batch the store refuses for longer than
// spoolAfterMs goes to the durable spool instead and is acknowledged from there; the writer
// replays the spool into the store, oldest first, once the store takes writes again.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/result.h"
#include "storage/store.h"

namespace tern::ingest {

struct PipelineOptions {
  std::uint32_t batchSize = 5000;
  std::uint32_t batchMs = 2;
  std::uint32_t queueCapacity = 100000;
  // The durable spool: off when empty (acks then wait for the store, as without a spool).
  std::string spoolDir;
  bool syncFull = false;  // fdatasync every spool append (storage.sync = full)
  std::uint64_t spoolMaxBytes = 1024ull * 1024 * 1024;
  std::uint64_t spoolSegmentBytes = 64ull * 1024 * 1024;
  // How long a failing store is retried in place before batches are spooled: a blip (one
  // reconnect, up to the store's 5 s reconnect backoff) costs no spool churn. At stop, 0.
  std::uint32_t spoolAfterMs = 10000;
  // Called on the writer thread with every batch the store has committed (live or replayed from
  // the spool), before the batch's completions run; e.g. the API's live feed. Must not block.
  std::function<void(std::span<const storage::Record>)> onCommitted;
};

struct PipelineStats {
  std::uint64_t submitted = 0;
  std::uint64_t committed = 0;
  std::uint64_t batches = 0;
  std::uint64_t commitFailures = 0;
  std::uint64_t queued = 0;
  std::uint64_t maxQueueDepth = 0;  // high-water mark, to show the bound holds
  // Acknowledged from the spool (not counted in committed), replayed from it into the store,
  // and the spool's size on disk.
  std::uint64_t spooled = 0;
  std::uint64_t replayed = 0;
  std::uint64_t spoolBytes = 0;
};

class Spool;
class LatestCache;

class Pipeline {
 public:
  // Runs on the writer thread after commit. Must be cheap: post work elsewhere.
  using Completion = std::function<void()>;
  // Runs on the writer thread when a full queue has drained below half capacity.
  using DrainCallback = std::function<void()>;

  // With `latest`, every batch committed to the store (live or replayed from the spool) is
  // applied to that cache right after its commit (before its completions run).
  Pipeline(storage::Store& store, PipelineOptions options, LatestCache* latest = nullptr);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Opens the spool, if any (what a previous run left there is replayed first), and starts the
  // writer thread. Fails only when the spool cannot be opened.
  core::Status start();
  // Commits everything queued, runs its completions, and stops the writer thread.
  void stop();

  // Queues a record. Never blocks and never drops: a caller that sees overloaded() afterwards
  // must stop reading its socket and wait for onDrain. The overshoot is bounded by what callers
  // read before they check (one read buffer per connection).
  void submit(storage::Record record, Completion done);
  bool overloaded() const;
  // Registers a one-shot callback for when the queue drains; runs at once if not overloaded.
  void onDrain(DrainCallback callback);

  PipelineStats stats() const;

 private:
  struct Item {
    storage::Record record;
    Completion done;
  };
  void run();
  // Store::appendBatch, with the latest-state cache told before and after.
  core::Status commit(std::span<const storage::Record> records);
  // After a batch was committed or spooled: counts it, runs its completions and the drain
  // callbacks when the queue is back below half.
  void finishBatch(std::vector<storage::Record>& records, std::vector<Completion>& completions,
                   bool spooled);

  storage::Store& store_;
  PipelineOptions options_;
  LatestCache* latest_;
  std::unique_ptr<Spool> spool_;  // used by the writer thread only
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Item> queue_;
  std::vector<DrainCallback> drainWaiters_;
  bool stopping_ = false;
  bool overloaded_ = false;
  PipelineStats stats_;
  std::thread thread_;
};

}  // namespace tern::ingest
