#pragma once
// The durable hand-off: records go in a bounded queue to one writer thread that commits them in
// batches (group commit) and then runs each record's completion. A completion runs only after
// the batch holding its record is committed, which is what lets the broker send PUBACK late.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "storage/store.h"

namespace tern::ingest {

struct PipelineOptions {
  std::uint32_t batchSize = 5000;
  std::uint32_t batchMs = 2;
  std::uint32_t queueCapacity = 100000;
};

struct PipelineStats {
  std::uint64_t submitted = 0;
  std::uint64_t committed = 0;
  std::uint64_t batches = 0;
  std::uint64_t commitFailures = 0;
  std::uint64_t queued = 0;
  std::uint64_t maxQueueDepth = 0;  // high-water mark, to show the bound holds
};

class Pipeline {
 public:
  // Runs on the writer thread after commit. Must be cheap: post work elsewhere.
  using Completion = std::function<void()>;
  // Runs on the writer thread when a full queue has drained below half capacity.
  using DrainCallback = std::function<void()>;

  Pipeline(storage::Store& store, PipelineOptions options);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  void start();
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

  storage::Store& store_;
  PipelineOptions options_;
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
