#include "ingest/pipeline.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "ingest/latest_cache.h"
#include "ingest/spool.h"

namespace tern::ingest {

Pipeline::Pipeline(storage::Store& store, PipelineOptions options, LatestCache* latest)
    : store_(store), options_(std::move(options)), latest_(latest) {
  options_.batchSize = std::max<std::uint32_t>(1, options_.batchSize);
  options_.queueCapacity = std::max<std::uint32_t>(2, options_.queueCapacity);
  if (!options_.spoolDir.empty()) {
    spool_ = std::make_unique<Spool>(SpoolOptions{
        options_.spoolDir, options_.syncFull, options_.spoolMaxBytes, options_.spoolSegmentBytes});
  }
}

Pipeline::~Pipeline() {
  stop();
}

core::Status Pipeline::start() {
  if (thread_.joinable()) return {};
  if (spool_) {
    if (auto status = spool_->open(); !status.ok()) return status;
    std::lock_guard lock(mutex_);
    stats_.spoolBytes = spool_->bytes();
  }
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
  return {};
}

void Pipeline::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Pipeline::submit(storage::Record record, Completion done) {
  bool wakeWriter = false;
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(Item{std::move(record), std::move(done)});
    ++stats_.submitted;
    if (queue_.size() >= options_.queueCapacity) overloaded_ = true;
    stats_.maxQueueDepth = std::max<std::uint64_t>(stats_.maxQueueDepth, queue_.size());
    // The writer only needs a nudge when it may be sleeping on an empty queue or the batch is full.
    wakeWriter = queue_.size() == 1 || queue_.size() == options_.batchSize;
  }
  if (wakeWriter) wake_.notify_one();
}

bool Pipeline::overloaded() const {
  std::lock_guard lock(mutex_);
  return overloaded_;
}

void Pipeline::onDrain(DrainCallback callback) {
  {
    std::lock_guard lock(mutex_);
    if (overloaded_) {
      drainWaiters_.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

PipelineStats Pipeline::stats() const {
  std::lock_guard lock(mutex_);
  PipelineStats s = stats_;
  s.queued = queue_.size();
  return s;
}

core::Status Pipeline::commit(std::span<const storage::Record> records) {
  core::Status status;
  if (latest_ == nullptr) {
    status = store_.appendBatch(records);
  } else {
    latest_->beginBatch(records);
    try {
      status = store_.appendBatch(records);
    } catch (...) {
      latest_->endBatch(false);
      throw;
    }
    latest_->endBatch(status.ok());
  }
  if (status.ok() && options_.onCommitted) options_.onCommitted(records);
  return status;
}

void Pipeline::finishBatch(std::vector<storage::Record>& records,
                           std::vector<Completion>& completions, bool spooled) {
  for (auto& done : completions) {
    if (done) done();
  }
  std::vector<DrainCallback> drained;
  {
    std::lock_guard lock(mutex_);
    if (spooled) {
      stats_.spooled += records.size();
      stats_.spoolBytes = spool_->bytes();
    } else {
      stats_.committed += records.size();
      ++stats_.batches;
    }
    if (overloaded_ && queue_.size() <= options_.queueCapacity / 2) {
      overloaded_ = false;
      drained.swap(drainWaiters_);
    }
  }
  for (auto& callback : drained) callback();
  records.clear();
  completions.clear();
}

void Pipeline::run() {
  using Clock = std::chrono::steady_clock;
  std::vector<storage::Record> records;  // the batch in hand, not yet durable
  std::vector<Completion> completions;
  std::vector<storage::Record> replay;
  records.reserve(options_.batchSize);
  completions.reserve(options_.batchSize);

  // One backoff for every store call, live batches and replay alike.
  int backoffMs = 10;
  Clock::time_point storeRetryAt{};
  // Optional time points as (flag, time): GCC 12 -O3 warns falsely on std::optional here.
  bool failing = false;
  Clock::time_point failingSince{};
  Clock::time_point spoolRetryAt{};
  bool spoolRefusing = false;  // log a refusing spool once per episode, not per retry
  bool stuck = false;
  Clock::time_point stuckSinceStop{};
  const auto storeFailed = [&](const core::Status& status, std::size_t n, const char* what) {
    const auto now = Clock::now();
    if (!failing) failingSince = now;
    failing = true;
    {
      std::lock_guard lock(mutex_);
      ++stats_.commitFailures;
    }
    spdlog::error("ingest: {} of {} records failed, retrying in {} ms: {}", what, n, backoffMs,
                  status.message());
    storeRetryAt = now + std::chrono::milliseconds(backoffMs);
    backoffMs = std::min(backoffMs * 2, 2000);
  };
  const auto storeSucceeded = [&] {
    failing = false;
    backoffMs = 10;
    storeRetryAt = {};
  };

  for (;;) {
    if (records.empty()) {
      std::unique_lock lock(mutex_);
      if (spool_ && !spool_->empty()) {
        // Replay is due at storeRetryAt; new records may arrive meanwhile.
        wake_.wait_until(lock, storeRetryAt, [this] { return stopping_ || !queue_.empty(); });
      } else {
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      }
      // What is left in the spool is replayed at the next start.
      if (queue_.empty() && stopping_) return;
      if (!queue_.empty()) {
        // Group commit: give the batch up to batchMs to fill, unless it is full or we stop.
        auto deadline = Clock::now() + std::chrono::milliseconds(options_.batchMs);
        wake_.wait_until(lock, deadline,
                         [this] { return stopping_ || queue_.size() >= options_.batchSize; });
        std::size_t n = std::min<std::size_t>(queue_.size(), options_.batchSize);
        for (std::size_t i = 0; i < n; ++i) {
          records.push_back(std::move(queue_.front().record));
          completions.push_back(std::move(queue_.front().done));
          queue_.pop_front();
        }
      }
    }
    bool stopping = false;
    {
      std::lock_guard lock(mutex_);
      stopping = stopping_;
    }

    // Never drop and never acknowledge a batch before it is durable in the store or the spool.
    if (!records.empty()) {
      const auto spoolDue = [&] {
        if (!spool_) return false;
        if (!spool_->empty()) return true;  // stay behind what is spooled, to keep the order
        return failing && (stopping || Clock::now() - failingSince >=
                                           std::chrono::milliseconds(options_.spoolAfterMs));
      };
      if (!spoolDue() && Clock::now() >= storeRetryAt) {
        core::Status status = commit(records);
        if (status.ok()) {
          storeSucceeded();
          finishBatch(records, completions, false);
        } else {
          storeFailed(status, records.size(), "commit");
        }
      }
      if (!records.empty() && spoolDue() && Clock::now() >= spoolRetryAt) {
        bool full = false;
        core::Status status = spool_->append(records, &full);
        if (status.ok()) {
          if (spoolRefusing) spdlog::info("ingest: spool takes records again");
          spoolRefusing = false;
          finishBatch(records, completions, true);
        } else {
          // Back-pressure until replay frees room (or the disk recovers): publishers stop being
          // read, nothing acknowledged is dropped.
          {
            std::lock_guard lock(mutex_);
            overloaded_ = true;
          }
          if (!spoolRefusing) {
            spdlog::error("ingest: cannot spool {} records, pausing publishers: {}", records.size(),
                          status.message());
          }
          spoolRefusing = true;
          spoolRetryAt = Clock::now() + std::chrono::milliseconds(full ? 100 : 500);
        }
      }
    }

    if (spool_ && !spool_->empty() && Clock::now() >= storeRetryAt) {
      core::Status status = spool_->readChunk(options_.batchSize, replay);
      if (!status.ok()) {
        spdlog::error("ingest: spool replay: {}", status.message());
        storeRetryAt = Clock::now() + std::chrono::milliseconds(1000);
      } else if (!replay.empty()) {
        status = commit(replay);
        if (status.ok()) {
          storeSucceeded();
          // A crash before this checkpoint replays the chunk again (at-least-once).
          if (auto cp = spool_->commitChunk(); !cp.ok()) {
            spdlog::error("ingest: spool checkpoint: {}", cp.message());
          }
          std::lock_guard lock(mutex_);
          stats_.replayed += replay.size();
        } else {
          storeFailed(status, replay.size(), "spool replay");
        }
      }
      std::lock_guard lock(mutex_);
      stats_.spoolBytes = spool_->bytes();
    }

    if (records.empty()) {
      stuck = false;
      continue;
    }
    // At shutdown, do not hang forever on a dead store (and a refusing spool): these records
    // were never acknowledged, so their publishers still hold them and will send them again.
    const auto now = Clock::now();
    if (stopping && !stuck) {
      stuck = true;
      stuckSinceStop = now;
    }
    if (stuck && now - stuckSinceStop >= std::chrono::milliseconds(1000)) {
      spdlog::error("ingest: giving up on {} unacknowledged records at shutdown", records.size());
      records.clear();
      completions.clear();
      std::vector<DrainCallback> drained;
      {
        std::lock_guard lock(mutex_);
        overloaded_ = false;
        drained.swap(drainWaiters_);
      }
      for (auto& callback : drained) callback();
      continue;
    }
    // The batch is stuck: wait for the next store or spool attempt.
    auto until = storeRetryAt;
    if (spool_ && spoolRetryAt > now) until = std::min(until, spoolRetryAt);
    std::this_thread::sleep_until(std::max(until, now + std::chrono::milliseconds(1)));
  }
}

}  // namespace tern::ingest
