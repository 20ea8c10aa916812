#pragma once
// Runs periodic jobs (retention, rollups, later user jobs) on one thread of its own, each on its
// Schedule. A job never overlaps itself; a slow job delays the others rather than piling up, and
// runs missed while the process was busy or asleep are not replayed (a job due five times in the
// past runs once, then keeps its schedule).
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/result.h"
#include "scheduler/schedule.h"

namespace tern::scheduler {

struct JobStatus {
  std::string name;
  std::string schedule;
  std::int64_t nextRunUs = 0;  // 0: never again
  std::int64_t lastRunUs = 0;  // 0: not run yet
  std::int64_t lastDurationUs = 0;
  std::uint64_t runs = 0;
  std::uint64_t failures = 0;
  std::string lastError;  // of the last run; empty when it succeeded
};

class JobRunner {
 public:
  using Job = std::function<core::Status()>;
  // The clock is injectable so tests can drive runDue() with chosen times.
  explicit JobRunner(std::function<std::int64_t()> clock = {});
  ~JobRunner();
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Before start(). The first run is the schedule's first time after now.
  void add(std::string name, Schedule schedule, Job job);

  // Starts the runner thread / stops it (waits for a running job to finish). Idempotent.
  void start();
  void stop();

  // Runs, on the calling thread, every job due at `nowUs` and schedules its next run. Returns
  // how many ran. The runner thread calls this; tests call it directly without start().
  std::size_t runDue(std::int64_t nowUs);

  std::vector<JobStatus> status() const;

 private:
  struct Entry {
    Schedule schedule;
    Job job;
    JobStatus status;
  };
  void loop();

  std::function<std::int64_t()> clock_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Entry> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tern::scheduler
