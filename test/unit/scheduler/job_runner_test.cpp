// The job runner driven with chosen times (runDue), and once for real on its own thread.
#include "scheduler/job_runner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "core/time.h"

namespace tern::scheduler {
namespace {

constexpr std::int64_t kMinute = 60'000'000;
const std::int64_t kT0 = *core::parseIso8601("2026-03-01T10:00:30Z");

TEST(JobRunnerTest, RunsJobsWhenDueAndRecordsTheirStatus) {
  std::int64_t now = kT0;
  JobRunner runner([&] { return now; });
  int every = 0;
  int hourly = 0;
  runner.add("every-minute", *Schedule::parse("* * * * *"), [&] {
    ++every;
    return core::Status::okStatus();
  });
  runner.add("hourly", *Schedule::parse("@hourly"), [&] {
    ++hourly;
    return core::Status(core::Error{"disk full"});
  });
  EXPECT_EQ(runner.runDue(now), 0u);  // nothing is due at 10:00:30
  now = kT0 + kMinute;                // 10:01:30
  EXPECT_EQ(runner.runDue(now), 1u);
  EXPECT_EQ(every, 1);
  EXPECT_EQ(runner.runDue(now), 0u) << "a job runs once per due time";
  now = kT0 + 60 * kMinute;  // 11:00:30: both due; the minute job missed 58 runs, runs once
  EXPECT_EQ(runner.runDue(now), 2u);
  EXPECT_EQ(every, 2);
  EXPECT_EQ(hourly, 1);

  auto status = runner.status();
  ASSERT_EQ(status.size(), 2u);
  EXPECT_EQ(status[0].name, "every-minute");
  EXPECT_EQ(status[0].runs, 2u);
  EXPECT_EQ(status[0].failures, 0u);
  EXPECT_EQ(core::formatRfc3339Millis(status[0].nextRunUs), "2026-03-01T11:01:00.000Z");
  EXPECT_EQ(status[1].schedule, "@hourly");
  EXPECT_EQ(status[1].failures, 1u);
  EXPECT_EQ(status[1].lastError, "disk full");
  EXPECT_EQ(core::formatRfc3339Millis(status[1].nextRunUs), "2026-03-01T12:00:00.000Z");
}

TEST(JobRunnerTest, AThrowingJobIsAFailureNotACrash) {
  std::int64_t now = kT0;
  JobRunner runner([&] { return now; });
  runner.add("bad", *Schedule::parse("@every 1s"),
             []() -> core::Status { throw std::runtime_error("boom"); });
  now += 2'000'000;
  EXPECT_EQ(runner.runDue(now), 1u);
  EXPECT_EQ(runner.status()[0].failures, 1u);
  EXPECT_NE(runner.status()[0].lastError.find("boom"), std::string::npos);
}

TEST(JobRunnerTest, TheThreadRunsJobsAndStops) {
  JobRunner runner;
  std::atomic<int> runs{0};
  runner.add("fast", *Schedule::parse("@every 10ms"), [&] {
    ++runs;
    return core::Status::okStatus();
  });
  runner.start();
  // Bounded wait for progress; no assertion on timing, only that it runs at all.
  for (int i = 0; i < 500 && runs.load() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  runner.stop();
  EXPECT_GE(runs.load(), 3);
  const int after = runs.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(runs.load(), after) << "no runs after stop()";
  runner.stop();  // idempotent
}

}  // namespace
}  // namespace tern::scheduler
