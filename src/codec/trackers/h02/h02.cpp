// H02 (Sinotrack ST-90x and many other Chinese trackers). One connection mixes
//   text   "*XX,<id>,<type>,...#"       (XX is the maker, usually HQ), and
//   binary '$' + packed BCD, fixed size (32 or 45 bytes, 42 with an 8-byte IMEI id, rarer 46/48),
//          'X' + 32 bytes (ignored, as Traccar does).
// No checksum. Speeds are knots. The status word is active-low.
#include "codec/trackers/h02/h02.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/trackers/util.h"

namespace tern::codec::trackers {

namespace {

constexpr std::string_view kProtocolName = "h02";
constexpr std::size_t kShortBinary = 32;   // '$' with a 5-byte id; every 'X' frame
constexpr std::size_t kLongIdBinary = 42;  // '$' with an 8-byte IMEI id
constexpr std::size_t kMaxBinary = 64;     // longer than any '$' variant seen
constexpr std::size_t kDefaultMaxFrame = 8 * 1024;
// '$' sizes seen from devices (5-byte id, 8-byte id); see splitBinary.
constexpr std::array<std::size_t, 4> kKnownShortIdSizes = {32, 45, 46, 48};
constexpr std::array<std::size_t, 1> kKnownLongIdSizes = {kLongIdBinary};

using Fields = std::vector<std::string_view>;

// ---- small text helpers -------------------------------------------------------------------

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isHexDigit(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool isAlnum(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool allDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), isDigit);
}
bool allHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), isHexDigit);
}
bool sixDigits(std::string_view s) {
  return s.size() == 6 && allDigits(s);
}
bool signedDigits(std::string_view s) {
  if (!s.empty() && s[0] == '-') s.remove_prefix(1);
  return allDigits(s);
}
// "d+.d+"
bool decimalWithPoint(std::string_view s) {
  auto dot = s.find('.');
  return dot != std::string_view::npos && allDigits(s.substr(0, dot)) &&
         allDigits(s.substr(dot + 1));
}

Fields split(std::string_view s, char separator) {
  Fields out;
  std::size_t start = 0;
  while (true) {
    std::size_t end = s.find(separator, start);
    if (end == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
}

// Joins pieces (plain appends: GCC 12 warns falsely on chains of string operator+).
std::string concat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view part : parts) out.append(part);
  return out;
}

std::string_view trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\r' || c == '\n' || c == '\t'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::optional<std::int64_t> toInt(std::string_view s, int base = 10) {
  std::int64_t value = 0;
  const char* first = s.data();
  const char* last = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(first, last, value, base);
  if (s.empty() || ec != std::errc() || ptr != last) return std::nullopt;
  return value;
}

// "d+[.d*]" (a trailing point is allowed, as the devices send "12.").
std::optional<double> toDecimal(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && isDigit(s[i])) ++i;
  if (i == 0) return std::nullopt;
  if (i < s.size()) {
    if (s[i] != '.') return std::nullopt;
    std::size_t j = i + 1;
    while (j < s.size() && isDigit(s[j])) ++j;
    if (j != s.size()) return std::nullopt;
    if (j == i + 1) s = s.substr(0, i);  // "12." → "12"
  }
  double value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return value;
}

int twoDigits(std::string_view s, std::size_t at) {
  return (s[at] - '0') * 10 + (s[at + 1] - '0');
}

std::int64_t floorDiv(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

// Out-of-range fields roll over (second 69 is the next minute, month 0 is last December), as
// the devices' own clocks and Traccar's lenient calendar do.
std::int64_t lenientMicros(int year, int month, int day, int hour, int minute, int second) {
  std::int64_t months = std::int64_t{year} * 12 + (month - 1);
  std::int64_t y = floorDiv(months, 12);
  auto m = static_cast<unsigned>(months - y * 12 + 1);
  std::int64_t days = daysFromCivil(y, m, 1) + (day - 1);
  std::int64_t seconds = days * 86400 + std::int64_t{hour} * 3600 + minute * 60 + second;
  return seconds * 1'000'000;
}

struct Clock {
  std::int64_t year;
  int month, day, hour, minute, second;
};

Clock clockOf(std::int64_t micros) {
  std::int64_t seconds = floorDiv(micros, 1'000'000);
  std::int64_t days = floorDiv(seconds, 86400);
  auto secondOfDay = static_cast<int>(seconds - days * 86400);
  // Civil date from days since 1970-01-01 (proleptic Gregorian, 400-year eras).
  days += 719468;
  std::int64_t era = floorDiv(days, 146097);
  auto dayOfEra = static_cast<unsigned>(days - era * 146097);
  unsigned yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146096) / 365;
  unsigned dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100);
  unsigned mp = (5 * dayOfYear + 2) / 153;
  auto day = static_cast<int>(dayOfYear - (153 * mp + 2) / 5 + 1);
  auto month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  std::int64_t year = static_cast<std::int64_t>(yearOfEra) + era * 400 + (month <= 2 ? 1 : 0);
  return {year, month, day, secondOfDay / 3600, secondOfDay / 60 % 60, secondOfDay % 60};
}

std::string hhmmss(std::int64_t micros) {
  Clock c = clockOf(micros);
  char text[16];
  std::snprintf(text, sizeof text, "%02d%02d%02d", c.hour, c.minute, c.second);
  return text;
}

std::string yyyyMMddHHmmss(std::int64_t micros) {
  Clock c = clockOf(micros);
  char text[32];
  std::snprintf(text, sizeof text, "%04lld%02d%02d%02d%02d%02d", static_cast<long long>(c.year),
                c.month, c.day, c.hour, c.minute, c.second);
  return text;
}

// ---- binary frame shape ---------------------------------------------------------------------

std::uint8_t byteAt(std::string_view s, std::size_t i) {
  return static_cast<std::uint8_t>(s[i]);
}

enum class Fit : std::uint8_t { kNo, kMaybe, kYes };

bool bcdAtMost(std::uint8_t b, int max) {
  int hi = b >> 4;
  int lo = b & 0xF;
  return hi <= 9 && lo <= 9 && hi * 10 + lo <= max;
}

// The fixed part of a '$'/'X' frame at `at` with an id of `idLen` bytes: hhmmss ddmmyy in BCD
// and in range, then latitude and longitude digits. kMaybe while the time/date bytes are not all
// in `b` yet; later bytes are checked only as far as they are present.
Fit checkCore(std::string_view b, std::size_t at, std::size_t idLen) {
  static constexpr std::array<int, 6> kLimits = {23, 59, 59, 31, 12, 99};
  std::size_t t = at + 1 + idLen;
  for (std::size_t i = 0; i < kLimits.size(); ++i) {
    if (t + i >= b.size()) return Fit::kMaybe;
    if (!bcdAtMost(byteAt(b, t + i), kLimits[i])) return Fit::kNo;
  }
  // Latitude (4 bytes), battery (1, any value), longitude (4 bytes + the high nibble of the next).
  std::size_t lat = t + 6;
  for (std::size_t i = 0; i < 10 && lat + i < b.size(); ++i) {
    std::uint8_t v = byteAt(b, lat + i);
    if (i == 4) continue;
    if ((v >> 4) > 9 || (i != 9 && (v & 0xF) > 9)) return Fit::kNo;
  }
  return Fit::kYes;
}

bool isMarker(char c) {
  return c == '*' || c == '$' || c == 'X';
}

// Whether a frame could start at `at`.
Fit startFit(std::string_view b, std::size_t at) {
  char c = b[at];
  if (c == '*') {
    // "*XX," : a two-character maker, then a comma.
    for (std::size_t i = 1; i <= 3; ++i) {
      if (at + i >= b.size()) return Fit::kMaybe;
      char x = b[at + i];
      if (i < 3 ? !isAlnum(x) : x != ',') return Fit::kNo;
    }
    return Fit::kYes;
  }
  if (c == '$' || c == 'X') {
    Fit shortId = checkCore(b, at, 5);
    if (shortId == Fit::kYes) return Fit::kYes;
    Fit longId = c == '$' ? checkCore(b, at, 8) : Fit::kNo;
    if (longId == Fit::kYes) return Fit::kYes;
    return (shortId == Fit::kMaybe || longId == Fit::kMaybe) ? Fit::kMaybe : Fit::kNo;
  }
  return Fit::kNo;
}

// ---- positions ------------------------------------------------------------------------------

struct Context {
  SessionState& session;
  std::int64_t now;
  DecodeResult& result;
};

// Identifies the session from a frame's id; a frame without id needs an earlier one.
bool accept(SessionState& session, std::string_view id) {
  if (id.empty()) return session.identified();
  if (session.deviceId == id) return true;
  return session.identify(std::string(id));
}

Position newPosition(const SessionState& session) {
  Position p;
  p.protocol = std::string(kProtocolName);
  p.deviceId = session.deviceId;
  return p;
}

Position statusOnly(const SessionState& session, std::int64_t timeUs) {
  Position p = newPosition(session);
  p.hasLocation = false;
  p.deviceTimeUs = timeUs;
  return p;
}

// Coordinates out of range never leave the decoder: the position keeps its other data.
void checkRange(Position& p) {
  if (p.latitude < -90 || p.latitude > 90 || p.longitude < -180 || p.longitude > 180) {
    p.hasLocation = false;
    p.valid = false;
    p.latitude = 0;
    p.longitude = 0;
  }
  if (p.course && (*p.course < 0 || *p.course > 360)) p.course.reset();
}

// Active-low status word; one alarm at most, most urgent first.
void applyStatus(Position& p, std::uint32_t status) {
  auto set = [status](int bit) { return ((status >> bit) & 1U) != 0; };
  if (!set(0)) {
    p.addAlarm("vibration");
  } else if (!set(1) || !set(18)) {
    p.addAlarm("sos");
  } else if (!set(2)) {
    p.addAlarm("overspeed");
  } else if (!set(19)) {
    p.addAlarm("powerCut");
  }
  p.set(attr::kIgnition, set(10));
  p.set(attr::kStatus, std::int64_t{status});
}

// Battery byte of the binary frame: 1..6 are levels, 0xF1..0xF6 too, up to 100 a percentage.
std::optional<std::int64_t> binaryBatteryLevel(unsigned value) {
  if (value == 0) return std::nullopt;
  if (value <= 3) return (value - 1) * 10;
  if (value <= 6) return (value - 1) * 20;
  if (value <= 100) return value;
  if (value >= 0xF1 && value <= 0xF6) return value - 0xF0;
  return std::nullopt;
}

// ---- binary '$' frame -----------------------------------------------------------------------

void decodeBinary(std::string_view frame, Context& ctx) {
  const bool longId = frame.size() == kLongIdBinary ||
                      (checkCore(frame, 0, 5) != Fit::kYes && checkCore(frame, 0, 8) == Fit::kYes);
  ByteReader r(frame);
  r.skip(1);
  std::string id = longId ? toHex(r.bytes(8)).substr(0, 15) : toHex(r.bytes(5));
  // Packed BCD read digit by digit; a non-decimal nibble keeps its value, as the devices mean it.
  auto nibbles = [&r](std::size_t count) {
    std::array<int, 12> d{};
    std::string_view raw = r.bytes(count);
    for (std::size_t i = 0; i < raw.size() && 2 * i + 1 < d.size(); ++i) {
      auto b = static_cast<std::uint8_t>(raw[i]);
      d[2 * i] = b >> 4;
      d[2 * i + 1] = b & 0xF;
    }
    return d;
  };
  auto when = nibbles(6);
  auto lat = nibbles(4);
  unsigned battery = r.u8();
  auto lon = nibbles(5);
  auto speedCourse = nibbles(3);
  std::uint32_t status = r.u32();
  if (r.failed()) {
    ctx.result.note = "short binary frame";
    return;
  }
  if (!accept(ctx.session, id)) {
    ctx.result.note = "device not accepted";
    return;
  }
  auto two = [](const std::array<int, 12>& d, std::size_t at) { return d[at] * 10 + d[at + 1]; };
  Position p = newPosition(ctx.session);
  p.deviceTimeUs = lenientMicros(2000 + two(when, 10), two(when, 8), two(when, 6), two(when, 0),
                                 two(when, 2), two(when, 4));
  if (auto level = binaryBatteryLevel(battery)) p.set(attr::kBatteryLevel, *level);
  // Latitude: dd mm.mmmm. Longitude: ddd mm.mmmm, then the flags nibble.
  double latMinutes = two(lat, 2) + (lat[4] * 1000 + lat[5] * 100 + lat[6] * 10 + lat[7]) / 10000.0;
  double latitude = two(lat, 0) + latMinutes / 60;
  double lonMinutes = two(lon, 3) + (lon[5] * 1000 + lon[6] * 100 + lon[7] * 10 + lon[8]) / 10000.0;
  double longitude = lon[0] * 100 + two(lon, 1) + lonMinutes / 60;
  int flags = lon[9];
  p.valid = (flags & 0x2) != 0;
  p.latitude = (flags & 0x4) != 0 ? latitude : -latitude;
  p.longitude = (flags & 0x8) != 0 ? longitude : -longitude;
  p.speedKmh = (speedCourse[0] * 100 + speedCourse[1] * 10 + speedCourse[2]) * kKnotsToKmh;
  p.course = speedCourse[3] * 100 + speedCourse[4] * 10 + speedCourse[5];
  applyStatus(p, status);
  checkRange(p);
  ctx.result.positions.push_back(std::move(p));
}

// ---- text frames ----------------------------------------------------------------------------

// Degrees from "-dd-mm.mmmm", "[d…]dd.mmmm" (no degrees digits means 0) or "d…ddmmmmmm" (four
// implied minute decimals).
std::optional<double> textCoordinate(std::string_view v) {
  if (v.empty()) return std::nullopt;
  if (v[0] == '-') {
    std::size_t dash = v.find('-', 1);
    if (dash == std::string_view::npos) return std::nullopt;
    std::string_view degrees = v.substr(1, dash - 1);
    std::string_view minutes = v.substr(dash + 1);
    if (!allDigits(degrees) || !decimalWithPoint(minutes)) return std::nullopt;
    auto d = toInt(degrees);
    auto m = toDecimal(minutes);
    if (!d || !m) return std::nullopt;
    return static_cast<double>(*d) + *m / 60;
  }
  std::size_t dot = v.find('.');
  if (dot != std::string_view::npos) {
    std::string_view whole = v.substr(0, dot);
    if (whole.size() < 2 || !allDigits(whole) || !allDigits(v.substr(dot + 1))) return std::nullopt;
    std::string_view degrees = whole.substr(0, whole.size() - 2);
    auto m = toDecimal(v.substr(whole.size() - 2));
    auto d = degrees.empty() ? std::optional<std::int64_t>(0) : toInt(degrees);
    if (!d || !m) return std::nullopt;
    return static_cast<double>(*d) + *m / 60;
  }
  if (v.size() < 7 || !allDigits(v)) return std::nullopt;
  auto d = toInt(v.substr(0, v.size() - 6));
  if (!d) return std::nullopt;
  double minutes =
      twoDigits(v, v.size() - 6) + static_cast<double>(*toInt(v.substr(v.size() - 4))) / 10000.0;
  return static_cast<double>(*d) + minutes / 60;
}

// The general text position ("V1", "V4" answers and the other "V…" variants):
//   *XX,<id>,{V4,<answer…>|V…},[hhmmss],[A|V|B|coding],<lat>,N|S,<lon>,E|W,<speed>,[course],
//     [battery,][ddmmyy][,sim,sim,sim][,<status 8
//     hex>[,odometer,temp,fuel,altitude,lac,cid|,data…]]#
// Optional parts are tried in the order a device most likely means them; where that differs
// from Traccar's pattern (date before battery, status before SIM fields) Traccar loses the date
// or the status of the frame.
struct TextFix {
  std::size_t answerFrom = 0, answerTo = 0;  // answer fields [from, to) of a V4 frame
  std::string_view type;                     // "V1", "V8", …; empty for a V4 answer
  std::string_view time, validity, date;
  bool coding = false;  // a coding-scheme number instead of A/V: a valid fix
  double latitude = 0, longitude = 0, speedKnots = 0, course = 0;
  std::size_t statusAt = 0, extrasAt = 0, dataAt = 0;  // field indexes, 0 = absent
};

class TextMatcher {
 public:
  explicit TextMatcher(const Fields& f) : f_(f), newlines_(f.size() + 1, 0) {
    for (std::size_t i = 0; i < f.size(); ++i) {
      newlines_[i + 1] = newlines_[i] + (f[i].find('\n') != std::string_view::npos ? 1 : 0);
    }
  }

  bool match(TextFix& out) {
    const std::size_t n = f_.size();
    if (n < 3 || f_[0].size() != 2) return false;
    if (!f_[1].empty() && !allDigits(f_[1])) return false;
    if (f_[2] == "V4") {
      // The answer is free text (commas too): take as much as still leaves a position.
      for (std::size_t k = n; k-- > 4;) {
        TextFix fix;
        if (newlineIn(3, k)) continue;
        if (rest(k, fix)) {
          fix.answerFrom = 3;
          fix.answerTo = k;
          out = fix;
          return true;
        }
      }
    }
    if (!f_[2].empty() && f_[2][0] == 'V') {
      TextFix fix;
      if (rest(3, fix)) {
        fix.type = f_[2];
        out = fix;
        return true;
      }
    }
    return false;
  }

 private:
  // Whether fields [from, to) contain a line break (free-text parts are single-line).
  bool newlineIn(std::size_t from, std::size_t to) const {
    return from < to && newlines_[to] != newlines_[from];
  }

  bool rest(std::size_t j, TextFix& out) const {
    const std::size_t n = f_.size();
    if (j + 9 > n) return false;  // time … course, and the field after the course
    std::string_view time = f_[j];
    if (!time.empty() && !sixDigits(time)) return false;
    std::string_view v = f_[j + 1];
    bool coding = false;
    if (!(v.empty() || v == "A" || v == "B" || v == "V")) {
      if (!allDigits(v)) return false;
      coding = true;
    }
    auto lat = textCoordinate(f_[j + 2]);
    if (!lat || (f_[j + 3] != "N" && f_[j + 3] != "S")) return false;
    auto lon = textCoordinate(f_[j + 4]);
    if (!lon || (f_[j + 5] != "E" && f_[j + 5] != "W")) return false;
    std::string_view speedText = f_[j + 6];
    while (!speedText.empty() && speedText.front() == ' ') speedText.remove_prefix(1);
    auto speed = toDecimal(speedText);
    if (!speed) return false;
    std::optional<double> course = 0.0;
    if (!f_[j + 7].empty()) course = toDecimal(f_[j + 7]);
    if (!course) return false;
    out.time = time;
    out.validity = coding ? std::string_view() : v;
    out.coding = coding;
    out.latitude = f_[j + 3] == "S" ? -*lat : *lat;
    out.longitude = f_[j + 5] == "W" ? -*lon : *lon;
    out.speedKnots = *speed;
    out.course = *course;
    const std::size_t m = j + 8;
    // The date (or its empty field), else a battery number before it. Trying the date first
    // keeps "ddmmyy,,ip,iccid,status" (V19) from being read as a battery and losing the date.
    std::string_view date = f_[m];
    if ((date.empty() || sixDigits(date)) && tail(m + 1, out)) {
      out.date = date;
      return true;
    }
    if (allDigits(f_[m]) && m + 1 < n) {
      date = f_[m + 1];
      if ((date.empty() || sixDigits(date)) && tail(m + 2, out)) {
        out.date = date;
        return true;
      }
    }
    return false;
  }

  // The status part, else three SIM fields before it (a status-looking field is the status).
  bool tail(std::size_t t, TextFix& out) const {
    if (status(t, out)) return true;
    return f_.size() - t >= 3 && status(t + 3, out);
  }

  bool status(std::size_t u, TextFix& out) const {
    const std::size_t n = f_.size();
    out.statusAt = out.extrasAt = out.dataAt = 0;
    if (u == n) return true;
    if (f_[u].size() != 8 || !allHex(f_[u])) return false;
    out.statusAt = u;
    if (n - (u + 1) == 6 && allDigits(f_[u + 1]) && signedDigits(f_[u + 2]) &&
        decimalWithPoint(f_[u + 3]) && signedDigits(f_[u + 4]) && allHex(f_[u + 5]) &&
        allHex(f_[u + 6])) {
      out.extrasAt = u + 1;
      return true;
    }
    if (n > u + 1) {
      if (newlineIn(u + 1, n)) return false;
      out.dataAt = u + 1;
    }
    return true;
  }

  const Fields& f_;
  std::vector<std::size_t> newlines_;  // line breaks in fields [0, i)
};

std::string_view span(const Fields& f, std::size_t from, std::size_t to) {
  if (from >= to) return {};
  const char* begin = f[from].data();
  const char* end = f[to - 1].data() + f[to - 1].size();
  return {begin, static_cast<std::size_t>(end - begin)};
}

std::int64_t textTime(std::string_view date, std::string_view time, std::int64_t now) {
  if (date.empty()) return now;  // no date: the device means "now"
  int hour = 0, minute = 0, second = 0;
  if (!time.empty()) {
    hour = twoDigits(time, 0);
    minute = twoDigits(time, 2);
    second = twoDigits(time, 4);
  }
  return lenientMicros(2000 + twoDigits(date, 4), twoDigits(date, 2), twoDigits(date, 0), hour,
                       minute, second);
}

std::int64_t dateTime(std::string_view date, std::string_view time) {
  return lenientMicros(2000 + twoDigits(date, 4), twoDigits(date, 2), twoDigits(date, 0),
                       twoDigits(time, 0), twoDigits(time, 2), twoDigits(time, 4));
}

std::uint32_t hex8(std::string_view s) {
  return static_cast<std::uint32_t>(toInt(s.substr(0, 8), 16).value_or(0));
}

bool ackEnabled(const SessionState& session) {
  const std::string* ack = session.getExtra("ack");
  return ack != nullptr && *ack == "true";
}

void decodeGeneral(const Fields& f, Context& ctx) {
  TextFix fix;
  if (!TextMatcher(f).match(fix)) {
    ctx.result.note = "unrecognised text frame";
    return;
  }
  std::string_view id = f[1];
  if (!accept(ctx.session, id)) {
    ctx.result.note = id.empty() ? "not identified" : "device not accepted";
    return;
  }
  Position p = newPosition(ctx.session);
  if (fix.answerTo > fix.answerFrom) {
    std::string answer(span(f, fix.answerFrom, fix.answerTo));
    p.set(attr::kResult, answer);
    ctx.result.commandAnswer = CommandAnswer{answer};
  }
  if (fix.type == "V1") {
    // The device waits for this (it carries the server's UTC time).
    ctx.result.response = concat({"*HQ,", id, ",V4,V1,", yyyyMMddHHmmss(ctx.now), "#"});
  } else if (ackEnabled(ctx.session)) {
    ctx.result.response = concat({"*HQ,", id, ",R12,", hhmmss(ctx.now), "#"});
  }
  p.deviceTimeUs = textTime(fix.date, fix.time, ctx.now);
  p.valid = fix.coding || fix.validity == "A";
  p.latitude = fix.latitude;
  p.longitude = fix.longitude;
  p.speedKmh = fix.speedKnots * kKnotsToKmh;
  p.course = fix.course;
  if (fix.statusAt != 0) applyStatus(p, hex8(f[fix.statusAt]));
  if (fix.extrasAt != 0) {
    std::size_t e = fix.extrasAt;
    if (auto odometer = toInt(f[e])) p.set(attr::kOdometer, *odometer);
    if (auto temp = toInt(f[e + 1])) p.set("temp1", *temp);
    if (auto fuel = toDecimal(f[e + 2])) p.set(attr::kFuelLevel, *fuel);
    if (auto altitude = toInt(f[e + 3])) p.altitude = static_cast<double>(*altitude);
  }
  if (fix.dataAt != 0) {
    for (std::size_t i = fix.dataAt; i < f.size(); ++i) {
      p.set(concat({"io", std::to_string(i - fix.dataAt + 1)}), std::string(trim(f[i])));
    }
  }
  checkRange(p);
  ctx.result.positions.push_back(std::move(p));
}

// V0 / HTBT heartbeat: echoed back up to the type; HTBT may carry the battery level.
void decodeHeartbeat(const Fields& f, Context& ctx) {
  if (!accept(ctx.session, f[1])) {
    ctx.result.note = "device not accepted";
    return;
  }
  ctx.result.response = concat({"*", f[0], ",", f[1], ",", f[2], "#"});
  if (f[2] != "HTBT" || f.size() < 4 || f[1].empty()) return;
  std::string_view level = f[3];
  std::size_t digits = 0;
  while (digits < level.size() && isDigit(level[digits])) ++digits;
  auto value = toInt(level.substr(0, digits));
  if (!value) return;
  Position p = statusOnly(ctx.session, 0);
  p.set(attr::kBatteryLevel, *value);
  ctx.result.positions.push_back(std::move(p));
}

// NBR: cell towers instead of a fix.
//   *XX,<id>,NBR,hhmmss,mcc,mnc,delay,count,(lac,cid,rssi,)+ddmmyy,<status>…#
void decodeNbr(const Fields& f, Context& ctx) {
  const std::size_t n = f.size();
  if (n < 13 || !allDigits(f[1]) || !sixDigits(f[3])) return;
  for (std::size_t i = 4; i < 8; ++i) {
    if (!allDigits(f[i])) return;
  }
  std::size_t triples = 0;
  while (8 + 3 * triples + 2 < n && allDigits(f[8 + 3 * triples]) &&
         allDigits(f[8 + 3 * triples + 1]) && signedDigits(f[8 + 3 * triples + 2])) {
    ++triples;
  }
  for (; triples >= 1; --triples) {
    std::size_t d = 8 + 3 * triples;
    if (d + 1 < n && sixDigits(f[d]) && f[d + 1].size() >= 8 && allHex(f[d + 1].substr(0, 8))) {
      if (!accept(ctx.session, f[1])) {
        ctx.result.note = "device not accepted";
        return;
      }
      ctx.result.response = concat({"*HQ,", f[1], ",V4,NBR,", yyyyMMddHHmmss(ctx.now), "#"});
      Position p = statusOnly(ctx.session, dateTime(f[d], f[3]));
      applyStatus(p, hex8(f[d + 1]));
      ctx.result.positions.push_back(std::move(p));
      return;
    }
  }
}

// LINK: *XX,<id>,LINK,hhmmss,rssi,satellites,battery,steps,turnovers,ddmmyy,<status>…#
void decodeLink(const Fields& f, Context& ctx) {
  if (f.size() < 11 || !allDigits(f[1]) || !sixDigits(f[3]) || !sixDigits(f[9])) return;
  std::array<std::int64_t, 5> values{};
  for (std::size_t i = 0; i < values.size(); ++i) {
    auto v = allDigits(f[4 + i]) ? toInt(f[4 + i]) : std::nullopt;
    if (!v) return;
    values[i] = *v;
  }
  if (f[10].size() < 8 || !allHex(f[10].substr(0, 8))) return;
  if (!accept(ctx.session, f[1])) {
    ctx.result.note = "device not accepted";
    return;
  }
  Position p = statusOnly(ctx.session, dateTime(f[9], f[3]));
  p.set(attr::kRssi, values[0]);
  p.set("sat", values[1]);
  p.set(attr::kBatteryLevel, values[2]);
  p.set("steps", values[3]);
  p.set("turnovers", values[4]);
  applyStatus(p, hex8(f[10]));
  ctx.result.positions.push_back(std::move(p));
}

// V3: cell towers and the battery.
//   *XX,<id>,V3,hhmmss,<mcc><mnc>,count,<cells…>,<battery 4 hex>,<reboots>,X,ddmmyy,<status>#
void decodeV3(const Fields& f, Context& ctx) {
  const std::size_t n = f.size();
  if (n < 12 || !allDigits(f[1]) || !sixDigits(f[3]) || f[4].size() < 4 || !allDigits(f[4]) ||
      !allDigits(f[5])) {
    return;
  }
  if (f[n - 5].size() != 4 || !allHex(f[n - 5]) || !allDigits(f[n - 4]) || f[n - 3] != "X" ||
      !sixDigits(f[n - 2]) || f[n - 1].size() != 8 || !allHex(f[n - 1])) {
    return;
  }
  if (!accept(ctx.session, f[1])) {
    ctx.result.note = "device not accepted";
    return;
  }
  Position p = statusOnly(ctx.session, dateTime(f[n - 2], f[3]));
  p.set(attr::kBattery, *toInt(f[n - 5], 16));
  applyStatus(p, hex8(f[n - 1]));
  ctx.result.positions.push_back(std::move(p));
}

// VP1: either cell towers (*hq,<imei>,VP1,V,mcc,mnc,cells…#) or a fix without time of day
// (*hq,<imei>,VP1,A,<lat>,N,<lon>,E,<speed>,<course>,ddmmyy#).
void decodeVp1(const Fields& f, Context& ctx) {
  const std::size_t n = f.size();
  if (n < 4 || !allDigits(f[1])) return;
  if (f[3] == "V") {
    if (n < 7 || !allDigits(f[4]) || !allDigits(f[5]) || f[6].empty()) return;
    if (!accept(ctx.session, f[1])) {
      ctx.result.note = "device not accepted";
      return;
    }
    ctx.result.positions.push_back(statusOnly(ctx.session, 0));
    return;
  }
  if ((f[3] != "A" && f[3] != "B") || n < 11) return;
  if (f[4].find('.') == std::string_view::npos || f[6].find('.') == std::string_view::npos ||
      (f[5] != "N" && f[5] != "S") || (f[7] != "E" && f[7] != "W") || !decimalWithPoint(f[8]) ||
      !decimalWithPoint(f[9]) || f[10].size() < 6 || !allDigits(f[10].substr(0, 6))) {
    return;
  }
  double lat = 0;
  double lon = 0;
  if (auto v = textCoordinate(f[4])) {
    lat = *v;
  } else {
    return;
  }
  if (auto v = textCoordinate(f[6])) {
    lon = *v;
  } else {
    return;
  }
  if (!accept(ctx.session, f[1])) {
    ctx.result.note = "device not accepted";
    return;
  }
  Position p = newPosition(ctx.session);
  p.valid = true;
  p.latitude = f[5] == "S" ? -lat : lat;
  p.longitude = f[7] == "W" ? -lon : lon;
  p.speedKmh = toDecimal(f[8]).value_or(0) * kKnotsToKmh;
  p.course = toDecimal(f[9]).value_or(0);
  p.deviceTimeUs = dateTime(f[10].substr(0, 6), "000000");
  checkRange(p);
  ctx.result.positions.push_back(std::move(p));
}

// SMS: the device's answer to a text command, e.g. its configuration (may span lines).
void decodeSms(std::string_view body, const Fields& f, Context& ctx) {
  if (f.size() < 4) return;
  if (!accept(ctx.session, f[1])) {
    ctx.result.note = f[1].empty() ? "not identified" : "device not accepted";
    return;
  }
  auto offset = static_cast<std::size_t>(f[3].data() - body.data());
  std::string text(body.substr(offset));
  Position p = statusOnly(ctx.session, 0);
  p.set(attr::kResult, text);
  ctx.result.commandAnswer = CommandAnswer{text};
  ctx.result.positions.push_back(std::move(p));
}

void decodeText(std::string_view sentence, Context& ctx) {
  std::string_view body = sentence.substr(1);
  if (!body.empty() && body.back() == '#') body.remove_suffix(1);
  Fields f = split(body, ',');
  if (f.size() < 3) {
    ctx.result.note = "unrecognised text frame";
    return;
  }
  std::string_view type = f[2];
  if (type == "V0" || type == "HTBT") {
    decodeHeartbeat(f, ctx);
  } else if (type == "NBR") {
    decodeNbr(f, ctx);
  } else if (type == "LINK") {
    decodeLink(f, ctx);
  } else if (type == "V3") {
    decodeV3(f, ctx);
  } else if (type == "VP1") {
    decodeVp1(f, ctx);
  } else if (type == "SMS") {
    decodeSms(body, f, ctx);
  } else {
    decodeGeneral(f, ctx);
  }
  if (ctx.result.positions.empty() && ctx.result.note == nullptr && ctx.result.response.empty()) {
    ctx.result.note = "unrecognised text frame";
  }
}

// ---- the codec ------------------------------------------------------------------------------

class H02Codec final : public ProtocolCodec {
 public:
  explicit H02Codec(std::size_t binaryLength) : binaryLength_(binaryLength) {
    const ProtocolInfo* info = findProtocol(kProtocolName);
    maxFrame_ = info != nullptr ? info->maxFrameSize : kDefaultMaxFrame;
  }

  FrameResult splitFrame(std::string_view b) override {
    if (b.empty()) return {FrameStatus::kNeedMore, 0};
    if (!isMarker(b[0])) {
      // Garbage, or the CR/LF some devices put after '#': drop up to the next marker.
      std::size_t next = 1;
      while (next < b.size() && !isMarker(b[next])) ++next;
      return {FrameStatus::kSkip, next};
    }
    return b[0] == '*' ? splitText(b) : splitBinary(b);
  }

  DecodeResult decode(std::string_view frame, SessionState& session,
                      std::int64_t serverTimeUs) override {
    lastServerTimeUs_ = serverTimeUs;
    DecodeResult result;
    Context ctx{session, serverTimeUs, result};
    if (frame.empty()) {
      result.note = "empty frame";
    } else if (frame[0] == '*') {
      decodeText(trim(frame), ctx);
    } else if (frame[0] == '$') {
      if (frame.size() < kShortBinary) {
        result.note = "short binary frame";
      } else {
        decodeBinary(frame, ctx);
      }
    } else {
      result.note = "unsupported frame type";  // 'X' frames: no documented layout
    }
    return result;
  }

  // Commands are text with the server's time of day as their first parameter; the codec has no
  // clock, so it uses the time of the last decoded frame (or session extra "serverTimeUs").
  std::optional<std::string> encodeCommand(const Command& command,
                                           const SessionState& session) override {
    if (command.type == CommandType::kCustomHex) {
      auto bytes = fromHex(command.text);
      if (!bytes || bytes->empty()) return std::nullopt;
      return bytes;
    }
    if (session.deviceId.empty()) return std::nullopt;
    std::int64_t now = lastServerTimeUs_;
    if (const std::string* t = session.getExtra("serverTimeUs")) {
      if (auto v = toInt(*t)) now = *v;
    }
    const std::string head = concat({"*HQ,", session.deviceId, ","});
    const std::string time = hhmmss(now);
    switch (command.type) {
      case CommandType::kEngineStop:
        return concat({head, "S20,", time, ",1,1#"});
      case CommandType::kEngineResume:
        return concat({head, "S20,", time, ",1,0#"});
      case CommandType::kPositionSingle:
        // "Locate now" of the H02 command tables (Traccar's H02 encoder has none).
        return concat({head, "R12,", time, "#"});
      case CommandType::kCustom: {
        const std::string& text = command.text;
        // A complete device command is sent as it is; otherwise "<CMD>[,params]" gets the
        // header and the time inserted after the command word.
        if (text.empty()) return std::nullopt;
        if (text.front() == '*') return text;
        if (text.find('#') != std::string::npos) return std::nullopt;
        std::size_t comma = text.find(',');
        std::string_view view = text;
        if (comma == std::string::npos) return concat({head, view, ",", time, "#"});
        return concat({head, view.substr(0, comma), ",", time, view.substr(comma), "#"});
      }
      default:
        return std::nullopt;
    }
  }

 private:
  FrameResult splitText(std::string_view b) const {
    if (startFit(b, 0) == Fit::kNo) return {FrameStatus::kSkip, 1};
    std::size_t hash = b.find('#', 1);
    if (hash == std::string_view::npos) {
      return {b.size() >= maxFrame_ ? FrameStatus::kTooLarge : FrameStatus::kNeedMore, 0};
    }
    if (hash + 1 > maxFrame_) return {FrameStatus::kTooLarge, 0};
    return {FrameStatus::kOk, hash + 1};
  }

  // Binary frames have no length field and no end marker, so the end is found from (1) the
  // start of the next frame, (2) the size configured or learnt for this connection, (3) a read
  // that ends exactly at a known size with nothing that could be a next frame inside it.
  FrameResult splitBinary(std::string_view b) {
    const std::size_t n = b.size();
    if (b[0] == 'X') {
      if (checkCore(b, 0, 5) == Fit::kNo) return {FrameStatus::kSkip, 1};
      if (n < kShortBinary) return {FrameStatus::kNeedMore, 0};
      return {FrameStatus::kOk, kShortBinary};
    }
    Fit shortId = checkCore(b, 0, 5);
    Fit longId = checkCore(b, 0, 8);
    if (shortId == Fit::kNo && longId == Fit::kNo) return {FrameStatus::kSkip, 1};
    if (n < kShortBinary) return {FrameStatus::kNeedMore, 0};
    // With 32 bytes both layouts are fully checked: one of them is kYes.
    const bool isLongId = shortId != Fit::kYes;
    const std::size_t minSize = isLongId ? kLongIdBinary : kShortBinary;
    if (n < minSize) return {FrameStatus::kNeedMore, 0};
    for (std::size_t size = minSize; size <= kMaxBinary && size < n; ++size) {
      if (isMarker(b[size]) && startFit(b, size) == Fit::kYes) {
        learntSize_ = size;
        return {FrameStatus::kOk, size};
      }
    }
    std::size_t fixed = binaryLength_ != 0 ? binaryLength_ : learntSize_;
    if (fixed >= minSize && fixed <= kMaxBinary) {
      return n >= fixed ? FrameResult{FrameStatus::kOk, fixed}
                        : FrameResult{FrameStatus::kNeedMore, 0};
    }
    std::span<const std::size_t> known = kKnownShortIdSizes;
    if (isLongId) known = kKnownLongIdSizes;
    if (std::find(known.begin(), known.end(), n) != known.end()) {
      for (std::size_t size : known) {
        // A shorter frame followed by the first bytes of the next one: wait to see which.
        if (size < n && startFit(b, size) != Fit::kNo) return {FrameStatus::kNeedMore, 0};
      }
      return {FrameStatus::kOk, n};
    }
    // Nothing recognisable follows within any known size: cut the shortest and resync.
    if (n > kMaxBinary) return {FrameStatus::kOk, minSize};
    return {FrameStatus::kNeedMore, 0};
  }

  std::size_t maxFrame_ = kDefaultMaxFrame;
  std::size_t binaryLength_;
  std::size_t learntSize_ = 0;
  std::int64_t lastServerTimeUs_ = 0;
};

}  // namespace

std::unique_ptr<ProtocolCodec> createH02Codec() {
  return std::make_unique<H02Codec>(0);
}

std::unique_ptr<ProtocolCodec> createH02CodecWithLength(std::size_t binaryLength) {
  return std::make_unique<H02Codec>(binaryLength);
}

}  // namespace tern::codec::trackers
