#include "scheduler/schedule.h"

#include <charconv>
#include <chrono>
#include <vector>

#include "core/time.h"

namespace tern::scheduler {
namespace {

constexpr std::int64_t kMinuteUs = 60'000'000;
constexpr std::int64_t kHourUs = 60 * kMinuteUs;
constexpr std::int64_t kDayUs = 24 * kHourUs;

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t end = text.find(separator, start);
    parts.push_back(
        text.substr(start, end == std::string_view::npos ? text.size() - start : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return parts;
}

// Concatenation through append: GCC 12 -O3 warns falsely (-Wrestrict) on "lit" + string.
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  (out.append(parts), ...);
  return out;
}

std::optional<int> number(std::string_view text) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// One cron field ("*", "*/5", "1,3,5", "9-17", "0-30/10") into a set of allowed values.
template <std::size_t N>
std::optional<std::string> parseField(std::string_view field, int low, int high,
                                      std::bitset<N>& out, bool& restricted) {
  restricted = field != "*";
  for (std::string_view item : split(field, ',')) {
    int step = 1;
    if (const auto slash = item.find('/'); slash != std::string_view::npos) {
      const auto parsed = number(item.substr(slash + 1));
      if (!parsed || *parsed < 1) return cat("bad step in '", item, "'");
      step = *parsed;
      item = item.substr(0, slash);
    }
    int from = low;
    int to = high;
    if (item != "*") {
      const auto dash = item.find('-');
      const auto first = number(item.substr(0, dash));
      if (!first) return cat("bad value '", item, "'");
      from = *first;
      to = *first;
      if (dash != std::string_view::npos) {
        const auto last = number(item.substr(dash + 1));
        if (!last) return cat("bad range '", item, "'");
        to = *last;
      } else if (step > 1) {
        to = high;  // "5/15" means from 5 to the end in steps of 15, as in Vixie cron
      }
    }
    if (from < low || to > high || from > to) {
      return cat("'", item, "' is outside ", std::to_string(low), "-", std::to_string(high));
    }
    for (int v = from; v <= to; v += step) out.set(static_cast<std::size_t>(v));
  }
  return std::nullopt;
}

}  // namespace

core::Result<Schedule> Schedule::parse(std::string_view text) {
  Schedule s;
  s.text_ = std::string(text);
  auto fail = [&](const std::string& why) {
    return core::Error{cat("schedule '", text, "': ", why)};
  };
  std::string_view cron = text;
  if (text.starts_with("@every ")) {
    const auto interval = core::parseDuration(text.substr(7));
    if (!interval || *interval <= 0) return fail("expected '@every DURATION' such as @every 30s");
    s.intervalUs_ = *interval;
    return s;
  }
  if (text == "@hourly") cron = "0 * * * *";
  if (text == "@daily" || text == "@midnight") cron = "0 0 * * *";
  if (text == "@weekly") cron = "0 0 * * 0";
  if (text == "@monthly") cron = "0 0 1 * *";
  if (text == "@yearly" || text == "@annually") cron = "0 0 1 1 *";

  std::vector<std::string_view> fields;
  for (auto part : split(cron, ' ')) {
    if (!part.empty()) fields.push_back(part);
  }
  if (fields.size() != 5) {
    return fail(
        "expected five fields (minute hour day-of-month month day-of-week) or @every/@daily");
  }
  bool unused = false;
  if (auto e = parseField(fields[0], 0, 59, s.minutes_, unused)) return fail(cat("minute: ", *e));
  if (auto e = parseField(fields[1], 0, 23, s.hours_, unused)) return fail(cat("hour: ", *e));
  if (auto e = parseField(fields[2], 1, 31, s.daysOfMonth_, s.domRestricted_)) {
    return fail(cat("day of month: ", *e));
  }
  if (auto e = parseField(fields[3], 1, 12, s.months_, unused)) return fail(cat("month: ", *e));
  std::bitset<8> dow;  // 7 is Sunday too
  if (auto e = parseField(fields[4], 0, 7, dow, s.dowRestricted_))
    return fail(cat("day of week: ", *e));
  for (std::size_t d = 0; d < 7; ++d) s.daysOfWeek_[d] = dow[d];
  if (dow[7]) s.daysOfWeek_.set(0);
  return s;
}

std::optional<std::int64_t> Schedule::next(std::int64_t afterUs) const {
  using namespace std::chrono;
  if (intervalUs_ > 0) return afterUs + intervalUs_;
  // The next whole minute after `afterUs`, then skip by month, day, hour and minute: at most a
  // few thousand steps even for rare schedules.
  std::int64_t t =
      (afterUs >= 0 ? afterUs / kMinuteUs : (afterUs - kMinuteUs + 1) / kMinuteUs) * kMinuteUs +
      kMinuteUs;
  const std::int64_t limit = t + 5 * 366 * kDayUs;
  while (t < limit) {
    const std::int64_t dayStart = t >= 0 ? t / kDayUs * kDayUs : (t - kDayUs + 1) / kDayUs * kDayUs;
    const sys_days day{days{dayStart / kDayUs}};
    const year_month_day ymd{day};
    const auto month = static_cast<unsigned>(ymd.month());
    if (!months_[month]) {
      // First day of the next month.
      const year_month_day nextMonth =
          year_month_day{ymd.year(), ymd.month(), std::chrono::day{1}} + months{1};
      t = sys_days{nextMonth}.time_since_epoch().count() * kDayUs;
      continue;
    }
    const bool domMatch = daysOfMonth_[static_cast<unsigned>(ymd.day())];
    const bool dowMatch = daysOfWeek_[weekday{day}.c_encoding()];
    // Vixie cron: when both day fields are restricted, either may match.
    const bool dayMatch =
        domRestricted_ && dowRestricted_ ? (domMatch || dowMatch) : (domMatch && dowMatch);
    if (!dayMatch) {
      t = dayStart + kDayUs;
      continue;
    }
    const auto hour = static_cast<std::size_t>((t - dayStart) / kHourUs);
    if (!hours_[hour]) {
      t = dayStart + static_cast<std::int64_t>(hour + 1) * kHourUs;
      continue;
    }
    const auto minute = static_cast<std::size_t>((t - dayStart) % kHourUs / kMinuteUs);
    if (!minutes_[minute]) {
      t += kMinuteUs;
      continue;
    }
    return t;
  }
  return std::nullopt;
}

}  // namespace tern::scheduler
