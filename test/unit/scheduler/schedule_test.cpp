// Cron and interval schedules: parsing, errors, and next-run times checked against a calendar.
#include "scheduler/schedule.h"

#include <gtest/gtest.h>

#include "core/time.h"

namespace tern::scheduler {
namespace {

std::int64_t at(const char* rfc3339) {
  return *core::parseIso8601(rfc3339);
}

std::string nextAfter(const char* schedule, const char* after) {
  auto parsed = Schedule::parse(schedule);
  EXPECT_TRUE(parsed.ok()) << (parsed.ok() ? "" : parsed.error().message);
  if (!parsed.ok()) return "parse error";
  auto next = parsed->next(at(after));
  return next ? core::formatRfc3339Millis(*next) : "never";
}

TEST(ScheduleTest, NextRunOfCronExpressions) {
  EXPECT_EQ(nextAfter("* * * * *", "2026-03-01T10:15:30Z"), "2026-03-01T10:16:00.000Z");
  // Strictly after: a time exactly on a due minute gives the following one.
  EXPECT_EQ(nextAfter("* * * * *", "2026-03-01T10:16:00Z"), "2026-03-01T10:17:00.000Z");
  EXPECT_EQ(nextAfter("*/5 * * * *", "2026-03-01T10:16:00Z"), "2026-03-01T10:20:00.000Z");
  EXPECT_EQ(nextAfter("0 3 * * *", "2026-03-01T10:16:00Z"), "2026-03-02T03:00:00.000Z");
  EXPECT_EQ(nextAfter("30 9-17/4 * * *", "2026-03-01T10:16:00Z"), "2026-03-01T13:30:00.000Z");
  EXPECT_EQ(nextAfter("0,45 * * * *", "2026-03-01T10:16:00Z"), "2026-03-01T10:45:00.000Z");
  // Month and year rollover; 2028 is a leap year.
  EXPECT_EQ(nextAfter("0 0 1 * *", "2026-12-15T00:00:00Z"), "2027-01-01T00:00:00.000Z");
  EXPECT_EQ(nextAfter("0 12 29 2 *", "2026-03-01T00:00:00Z"), "2028-02-29T12:00:00.000Z");
  EXPECT_EQ(nextAfter("0 0 31 * *", "2026-04-01T00:00:00Z"), "2026-05-31T00:00:00.000Z");
  // Days of week: 2026-03-01 is a Sunday. 7 is Sunday too.
  EXPECT_EQ(nextAfter("0 0 * * 1-5", "2026-02-27T12:00:00Z"), "2026-03-02T00:00:00.000Z");
  EXPECT_EQ(nextAfter("0 8 * * 7", "2026-03-01T09:00:00Z"), "2026-03-08T08:00:00.000Z");
  EXPECT_EQ(nextAfter("0 8 * * 0", "2026-03-01T07:00:00Z"), "2026-03-01T08:00:00.000Z");
  // Both day fields restricted: either matches (the 13th, or any Friday).
  EXPECT_EQ(nextAfter("0 0 13 * 5", "2026-03-01T00:00:00Z"), "2026-03-06T00:00:00.000Z");
  EXPECT_EQ(nextAfter("0 0 13 * 5", "2026-03-10T00:00:00Z"), "2026-03-13T00:00:00.000Z");
  EXPECT_EQ(nextAfter("0 0 31 2 *", "2026-03-01T00:00:00Z"), "never");
}

TEST(ScheduleTest, Shorthands) {
  EXPECT_EQ(nextAfter("@hourly", "2026-03-01T10:15:30Z"), "2026-03-01T11:00:00.000Z");
  EXPECT_EQ(nextAfter("@daily", "2026-03-01T10:15:30Z"), "2026-03-02T00:00:00.000Z");
  EXPECT_EQ(nextAfter("@weekly", "2026-03-02T10:15:30Z"), "2026-03-08T00:00:00.000Z");
  EXPECT_EQ(nextAfter("@monthly", "2026-03-02T10:15:30Z"), "2026-04-01T00:00:00.000Z");
  EXPECT_EQ(nextAfter("@yearly", "2026-03-02T10:15:30Z"), "2027-01-01T00:00:00.000Z");
  EXPECT_EQ(nextAfter("@every 30s", "2026-03-01T10:15:30Z"), "2026-03-01T10:16:00.000Z");
  EXPECT_EQ(nextAfter("@every 90m", "2026-03-01T10:15:30Z"), "2026-03-01T11:45:30.000Z");
}

TEST(ScheduleTest, BadExpressionsNameTheProblem) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "five fields"},
      {"* * * *", "five fields"},
      {"* * * * * *", "five fields"},
      {"60 * * * *", "minute"},
      {"* 24 * * *", "hour"},
      {"* * 0 * *", "day of month"},
      {"* * 32 * *", "day of month"},
      {"* * * 13 *", "month"},
      {"* * * * 8", "day of week"},
      {"*/0 * * * *", "step"},
      {"5-1 * * * *", "minute"},
      {"a * * * *", "minute"},
      {"1,,2 * * * *", "minute"},
      {"@every", "five fields"},
      {"@every 0s", "@every"},
      {"@every soon", "@every"},
      {"@sometimes", "five fields"},
  };
  for (const auto& [text, mention] : bad) {
    auto parsed = Schedule::parse(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_NE(parsed.error().message.find(mention), std::string::npos)
        << text << " → " << parsed.error().message;
  }
}

}  // namespace
}  // namespace tern::scheduler
