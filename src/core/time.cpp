#include "core/time.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

namespace tern::core {

namespace {

namespace chr = std::chrono;

constexpr std::int64_t kMicrosPerSecond = 1'000'000;
constexpr std::int64_t kMicrosPerDay = 86'400 * kMicrosPerSecond;

// Floor division: pre-1970 instants must round towards the earlier day/millisecond,
// not towards zero.
constexpr std::int64_t floorDiv(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// Reads exactly `width` decimal digits at `pos`, advancing it.
bool readDigits(std::string_view text, std::size_t& pos, std::size_t width, int& out) {
  if (pos + width > text.size()) {
    return false;
  }
  int value = 0;
  for (std::size_t i = 0; i < width; ++i) {
    const char c = text[pos + i];
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + (c - '0');
  }
  out = value;
  pos += width;
  return true;
}

bool consume(std::string_view text, std::size_t& pos, char c) {
  if (pos < text.size() && text[pos] == c) {
    ++pos;
    return true;
  }
  return false;
}

// Days since 1970-01-01 for a validated civil date; nullopt for e.g. February 30.
std::optional<std::int64_t> daysFromCivil(int y, int m, int d) {
  const chr::year_month_day ymd{chr::year{y}, chr::month{static_cast<unsigned>(m)},
                                chr::day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) {
    return std::nullopt;
  }
  return chr::sys_days{ymd}.time_since_epoch().count();
}

// Checked a * b + c for the non-negative values the parsers produce.
bool mulAdd(std::int64_t a, std::int64_t b, std::int64_t c, std::int64_t& out) {
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  if (b != 0 && a > (kMax - c) / b) {
    return false;
  }
  out = a * b + c;
  return true;
}

}  // namespace

std::int64_t nowMicros() {
  return chr::duration_cast<chr::microseconds>(chr::system_clock::now().time_since_epoch()).count();
}

std::int64_t monotonicMicros() {
  return chr::duration_cast<chr::microseconds>(chr::steady_clock::now().time_since_epoch()).count();
}

std::string formatRfc3339Millis(std::int64_t micros) {
  // std::chrono::year covers ±32767; clamp instead of printing garbage for absurd inputs.
  constexpr std::int64_t kMinDays =
      chr::sys_days{chr::year::min() / 1 / 1}.time_since_epoch().count();
  constexpr std::int64_t kMaxDays =
      chr::sys_days{chr::year::max() / 12 / 31}.time_since_epoch().count();
  std::int64_t days = floorDiv(micros, kMicrosPerDay);
  std::int64_t inDay = micros - days * kMicrosPerDay;
  if (days < kMinDays) {
    days = kMinDays;
    inDay = 0;
  } else if (days > kMaxDays) {
    days = kMaxDays;
    inDay = kMicrosPerDay - 1;
  }
  const chr::year_month_day ymd{chr::sys_days{chr::days{days}}};
  const std::int64_t millis = inDay / 1000;
  const int year = static_cast<int>(ymd.year());
  const auto ms = static_cast<int>(millis % 1000);
  const auto sec = static_cast<int>(millis / 1000 % 60);
  const auto min = static_cast<int>(millis / 60'000 % 60);
  const auto hour = static_cast<int>(millis / 3'600'000);

  char buf[48];
  // Years outside 0000..9999 use the ISO 8601 expanded form (explicit sign).
  const char* yearFormat = (year < 0 || year > 9999) ? "%+05d" : "%04d";
  int n = std::snprintf(buf, sizeof buf, yearFormat, year);
  n += std::snprintf(buf + n, sizeof buf - static_cast<std::size_t>(n),
                     "-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<unsigned>(ymd.month()),
                     static_cast<unsigned>(ymd.day()), hour, min, sec, ms);
  return std::string(buf, static_cast<std::size_t>(n));
}

std::optional<std::int64_t> parseIso8601(std::string_view text) {
  std::size_t pos = 0;
  int year = 0;
  int month = 0;
  int day = 0;
  if (!readDigits(text, pos, 4, year) || !consume(text, pos, '-') ||
      !readDigits(text, pos, 2, month) || !consume(text, pos, '-') ||
      !readDigits(text, pos, 2, day)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31) {
    return std::nullopt;
  }
  const auto days = daysFromCivil(year, month, day);
  if (!days) {
    return std::nullopt;
  }
  if (pos == text.size()) {
    return *days * kMicrosPerDay;  // date only: midnight UTC
  }

  const char sep = text[pos++];
  if (sep != 'T' && sep != 't' && sep != ' ') {
    return std::nullopt;
  }
  int hour = 0;
  int minute = 0;
  int second = 0;
  if (!readDigits(text, pos, 2, hour) || !consume(text, pos, ':') ||
      !readDigits(text, pos, 2, minute)) {
    return std::nullopt;
  }
  // Seconds are optional ("2026-11-22T07:33Z" is valid ISO 8601).
  if (consume(text, pos, ':') && !readDigits(text, pos, 2, second)) {
    return std::nullopt;
  }
  // Leap seconds (60) are rejected: nothing downstream can represent them.
  if (hour > 23 || minute > 59 || second > 59) {
    return std::nullopt;
  }
  std::int64_t fraction = 0;
  if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
    ++pos;
    const std::size_t start = pos;
    std::int64_t scale = 100'000;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      // Digits past microseconds are truncated, but must still be digits.
      fraction += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) {
      return std::nullopt;
    }
  }

  std::int64_t offsetMinutes = 0;
  if (pos < text.size()) {
    const char z = text[pos++];
    if (z == 'Z' || z == 'z') {
      // UTC
    } else if (z == '+' || z == '-') {
      int offHour = 0;
      int offMinute = 0;
      if (!readDigits(text, pos, 2, offHour)) {
        return std::nullopt;
      }
      consume(text, pos, ':');  // ±HH:MM or ±HHMM
      if (!readDigits(text, pos, 2, offMinute) || offHour > 23 || offMinute > 59) {
        return std::nullopt;
      }
      offsetMinutes = (offHour * 60 + offMinute) * (z == '-' ? -1 : 1);
    } else {
      return std::nullopt;
    }
  }
  // No zone designator is read as UTC: Tern stores and reports UTC only.
  if (pos != text.size()) {
    return std::nullopt;
  }
  const std::int64_t secondsOfDay = hour * 3600 + minute * 60 + second - offsetMinutes * 60;
  return *days * kMicrosPerDay + secondsOfDay * kMicrosPerSecond + fraction;
}

std::optional<std::int64_t> parseTimeParam(std::string_view text) {
  if (text.empty()) {
    return std::nullopt;
  }
  std::size_t digitsStart = (text[0] == '-') ? 1 : 0;
  bool allDigits = digitsStart < text.size();
  for (std::size_t i = digitsStart; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') {
      allDigits = false;
      break;
    }
  }
  if (!allDigits) {
    return parseIso8601(text);
  }
  std::int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size()) {
    return std::nullopt;  // overflow
  }
  // Magnitude tells the unit: 1e11 s is year 5138, 1e14 ms is year 5138 too.
  const std::int64_t magnitude = value < 0 ? -(value + 1) : value;
  if (magnitude < 100'000'000'000) {
    return value * kMicrosPerSecond;
  }
  if (magnitude < 100'000'000'000'000) {
    return value * 1000;
  }
  return value;
}

std::optional<std::int64_t> epochToMicros(double value) {
  if (!std::isfinite(value) || value < 0) {
    return std::nullopt;
  }
  const double micros = value < 1e11 ? value * 1e6 : value * 1e3;
  // 9.2e18 is the last double safely below INT64_MAX.
  if (micros >= 9.2e18) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(std::llround(micros));
}

std::optional<std::int64_t> parseDuration(std::string_view text) {
  std::size_t pos = 0;
  std::int64_t number = 0;
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
    if (!mulAdd(number, 10, text[pos] - '0', number)) {
      return std::nullopt;
    }
    ++pos;
  }
  if (pos == 0) {
    return std::nullopt;
  }
  const std::string_view unit = text.substr(pos);
  std::int64_t scale = 0;
  if (unit.empty() || unit == "s") {
    scale = kMicrosPerSecond;
  } else if (unit == "us") {
    scale = 1;
  } else if (unit == "ms") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60 * kMicrosPerSecond;
  } else if (unit == "h") {
    scale = 3600 * kMicrosPerSecond;
  } else if (unit == "d") {
    scale = kMicrosPerDay;
  } else if (unit == "w") {
    scale = 7 * kMicrosPerDay;
  } else {
    return std::nullopt;
  }
  // Zero is only meaningful as "off", spelled "0" or "0s"; "0h" is more likely a typo.
  if (number == 0 && scale != kMicrosPerSecond) {
    return std::nullopt;
  }
  std::int64_t micros = 0;
  if (!mulAdd(number, scale, 0, micros)) {
    return std::nullopt;
  }
  return micros;
}

}  // namespace tern::core
