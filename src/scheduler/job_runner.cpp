#include "scheduler/job_runner.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <exception>

#include "core/time.h"

namespace tern::scheduler {
namespace {
// Re-read the clock at least this often, so a wall-clock jump does not leave the runner asleep.
constexpr std::int64_t kMaxSleepUs = 60'000'000;
}  // namespace

JobRunner::JobRunner(std::function<std::int64_t()> clock)
    : clock_(clock ? std::move(clock) : std::function<std::int64_t()>(core::nowMicros)) {}

JobRunner::~JobRunner() {
  stop();
}

void JobRunner::add(std::string name, Schedule schedule, Job job) {
  std::lock_guard lock(mutex_);
  Entry entry{std::move(schedule), std::move(job), {}};
  entry.status.name = std::move(name);
  entry.status.schedule = entry.schedule.text();
  entry.status.nextRunUs = entry.schedule.next(clock_()).value_or(0);
  jobs_.push_back(std::move(entry));
  wake_.notify_all();
}

void JobRunner::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { loop(); });
}

void JobRunner::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::size_t JobRunner::runDue(std::int64_t nowUs) {
  std::size_t ran = 0;
  for (std::size_t i = 0;; ++i) {
    Job job;
    std::string name;
    {
      std::lock_guard lock(mutex_);
      if (i >= jobs_.size()) break;
      Entry& entry = jobs_[i];
      if (entry.status.nextRunUs == 0 || entry.status.nextRunUs > nowUs) continue;
      job = entry.job;
      name = entry.status.name;
    }
    // The job runs without the lock: status() and add() stay responsive meanwhile.
    const std::int64_t started = clock_();
    core::Status result = core::Error{"job threw"};
    try {
      result = job();
    } catch (const std::exception& e) {
      result = core::Error{std::string("job threw: ") + e.what()};
    }
    const std::int64_t finished = clock_();
    ++ran;
    std::lock_guard lock(mutex_);
    JobStatus& status = jobs_[i].status;
    status.lastRunUs = started;
    status.lastDurationUs = finished - started;
    ++status.runs;
    if (result.ok()) {
      status.lastError.clear();
    } else {
      ++status.failures;
      status.lastError = result.message();
      spdlog::warn("job {}: {}", name, status.lastError);
    }
    // From the later of "now" and the due time: missed runs are skipped, not replayed.
    status.nextRunUs = jobs_[i].schedule.next(std::max(nowUs, finished)).value_or(0);
  }
  return ran;
}

std::vector<JobStatus> JobRunner::status() const {
  std::lock_guard lock(mutex_);
  std::vector<JobStatus> out;
  out.reserve(jobs_.size());
  for (const auto& entry : jobs_) out.push_back(entry.status);
  return out;
}

void JobRunner::loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    std::int64_t now = clock_();
    std::int64_t nextDue = now + kMaxSleepUs;
    for (const auto& entry : jobs_) {
      if (entry.status.nextRunUs != 0) nextDue = std::min(nextDue, entry.status.nextRunUs);
    }
    if (nextDue > now) {
      wake_.wait_for(lock, std::chrono::microseconds(nextDue - now));
      continue;
    }
    lock.unlock();
    runDue(now);
    lock.lock();
  }
}

}  // namespace tern::scheduler
