#include "ingest/pipeline.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace tern::ingest {

Pipeline::Pipeline(storage::Store& store, PipelineOptions options)
    : store_(store), options_(options) {
  options_.batchSize = std::max<std::uint32_t>(1, options_.batchSize);
  options_.queueCapacity = std::max<std::uint32_t>(2, options_.queueCapacity);
}

Pipeline::~Pipeline() { stop(); }

void Pipeline::start() {
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
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

void Pipeline::run() {
  using Clock = std::chrono::steady_clock;
  std::vector<storage::Record> records;
  std::vector<Completion> completions;
  records.reserve(options_.batchSize);
  completions.reserve(options_.batchSize);

  for (;;) {
    std::vector<DrainCallback> drained;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
      // Group commit: give the batch up to batchMs to fill, unless it is full or we are stopping.
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

    // Never drop and never acknowledge an uncommitted batch: retry with backoff until it commits.
    int backoffMs = 10;
    for (;;) {
      core::Status status = store_.appendBatch(records);
      if (status.ok()) break;
      bool giveUp = false;
      {
        std::lock_guard lock(mutex_);
        ++stats_.commitFailures;
        // At shutdown, do not hang forever on a dead store: these records were never
        // acknowledged, so their publishers still hold them and will send them again.
        giveUp = stopping_ && backoffMs >= 640;
      }
      if (giveUp) {
        spdlog::error("ingest: giving up on {} unacknowledged records at shutdown", records.size());
        completions.clear();
        records.clear();
        break;
      }
      spdlog::error("ingest: commit of {} records failed, retrying in {} ms: {}", records.size(),
                    backoffMs, status.message());
      std::this_thread::sleep_for(std::chrono::milliseconds(backoffMs));
      backoffMs = std::min(backoffMs * 2, 2000);
    }

    for (auto& done : completions) {
      if (done) done();
    }
    {
      std::lock_guard lock(mutex_);
      stats_.committed += records.size();
      ++stats_.batches;
      if (overloaded_ && queue_.size() <= options_.queueCapacity / 2) {
        overloaded_ = false;
        drained.swap(drainWaiters_);
      }
    }
    for (auto& callback : drained) callback();
    records.clear();
    completions.clear();
  }
}

}  // namespace tern::ingest
