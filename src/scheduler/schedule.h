#pragma once
// When a periodic job runs: a five-field cron expression (minute hour day-of-month month
// day-of-week, UTC) or a fixed interval. Pure code: the caller passes the time.
//
//   "*/5 * * * *"   every five minutes        "0 3 * * *"    daily at 03:00 UTC
//   "0 0 * * 1-5"   weekdays at midnight       "@hourly", "@daily", "@weekly", "@monthly"
//   "@every 30s"    every 30 s after the previous run was due (any core::parseDuration value)
#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace tern::scheduler {

class Schedule {
 public:
  // nullopt-like failure: the error names what is wrong with the text.
  static core::Result<Schedule> parse(std::string_view text);

  // The first time strictly after `afterUs` (µs since the epoch, UTC) at which the job is due;
  // nullopt when it never is (e.g. "0 0 31 2 *") within the next few years.
  std::optional<std::int64_t> next(std::int64_t afterUs) const;

  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::int64_t intervalUs_ = 0;  // > 0: an @every schedule
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> daysOfMonth_;  // 1..31
  std::bitset<13> months_;       // 1..12
  std::bitset<7> daysOfWeek_;    // 0 = Sunday
  bool domRestricted_ = false;
  bool dowRestricted_ = false;
};

}  // namespace tern::scheduler
