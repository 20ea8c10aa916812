// TK103 (Xexun-style protocol and its many clones): text frames
//   "(" <device id> <4-character command> <data> ")"
// with a 12-character id (some devices 11, or a 15-digit IMEI), or "(<id>,<command>,<data>)".
// No checksum. Free text between '$' characters (command results) may contain ')'. Speeds are
// km/h. Only the handshake (BP00) and the login (BP05) are answered.
#include "codec/trackers/tk103/tk103.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codec/trackers/util.h"

namespace tern::codec::trackers {

namespace {

constexpr std::string_view kProtocolName = "tk103";
// An unterminated frame this long is given up for the next '(' (an unmatched '$' hides its ')').
constexpr std::size_t kResyncAfter = 1024;
constexpr std::size_t kDefaultMaxFrame = 8 * 1024;

using Fields = std::vector<std::string_view>;

// ---- small text helpers -------------------------------------------------------------------

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isUpper(char c) {
  return c >= 'A' && c <= 'Z';
}
bool isHexDigit(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool allDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), isDigit);
}
bool allHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), isHexDigit);
}
bool sixDigits(std::string_view s) {
  return s.size() >= 6 && allDigits(s.substr(0, 6));
}

// Joins pieces (plain appends: GCC 12 warns falsely on chains of string operator+).
std::string concat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view part : parts) out.append(part);
  return out;
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

std::optional<std::int64_t> toInt(std::string_view s, int base = 10) {
  std::int64_t value = 0;
  const char* last = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), last, value, base);
  if (s.empty() || ec != std::errc() || ptr != last) return std::nullopt;
  return value;
}

// A decimal number possibly padded with spaces (" 46.0", "000.00"); nullopt when malformed.
std::optional<double> toNumber(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty()) return std::nullopt;
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

// Out-of-range fields roll over (month 0 is last December), as the devices' clocks and
// Traccar's lenient calendar do.
std::int64_t lenientMicros(int year, int month, int day, int hour, int minute, int second) {
  std::int64_t months = std::int64_t{year} * 12 + (month - 1);
  std::int64_t y = floorDiv(months, 12);
  auto m = static_cast<unsigned>(months - y * 12 + 1);
  std::int64_t days = daysFromCivil(y, m, 1) + (day - 1);
  std::int64_t seconds = days * 86400 + std::int64_t{hour} * 3600 + minute * 60 + second;
  return seconds * 1'000'000;
}

// "ddmmyy" and "hhmmss" (both at least six digits).
std::int64_t dmyHms(std::string_view date, std::string_view time) {
  return lenientMicros(2000 + twoDigits(date, 4), twoDigits(date, 2), twoDigits(date, 0),
                       twoDigits(time, 0), twoDigits(time, 2), twoDigits(time, 4));
}

// ---- positions ------------------------------------------------------------------------------

bool accept(SessionState& session, std::string_view id) {
  if (id.empty()) return session.identified();
  if (session.deviceId == id) return true;
  return session.identify(std::string(id));
}

Position statusOnly(const SessionState& session, std::int64_t timeUs) {
  Position p;
  p.protocol = std::string(kProtocolName);
  p.deviceId = session.deviceId;
  p.hasLocation = false;
  p.deviceTimeUs = timeUs;
  return p;
}

void checkRange(Position& p) {
  if (p.latitude < -90 || p.latitude > 90 || p.longitude < -180 || p.longitude > 180) {
    p.hasLocation = false;
    p.valid = false;
    p.latitude = 0;
    p.longitude = 0;
  }
  if (p.course && (*p.course < 0 || *p.course > 360)) p.course.reset();
}

bool decodeLow(const SessionState& session) {
  const std::string* v = session.getExtra("decodeLow");
  return v != nullptr && *v == "true";
}

// Alarms and ignition changes the command itself stands for.
void applyCommand(Position& p, std::string_view command, std::string_view data) {
  struct Event {
    std::string_view commands[3];
    const char* alarm;  // nullptr: ignition change
    bool ignition;
  };
  static constexpr Event kEvents[] = {
      {{"ZC11", "DW31", "DW51"}, "movement", false},
      {{"ZC12", "DW32", "DW52"}, "lowBattery", false},
      {{"ZC13", "DW33", "DW53"}, "powerCut", false},
      {{"ZC15", "DW35", "DW55"}, nullptr, true},
      {{"ZC16", "DW36", "DW56"}, nullptr, false},
      {{"ZC29", "DW42", "DW62"}, nullptr, true},
      {{"ZC17", "DW37", "DW57"}, "removing", false},
      {{"ZC25", "DW3E", "DW5E"}, "sos", false},
      {{"ZC26", "DW3F", "DW5F"}, "tampering", false},
      {{"ZC27", "DW40", "DW60"}, "lowPower", false},
  };
  for (const Event& e : kEvents) {
    if (std::find(std::begin(e.commands), std::end(e.commands), command) != std::end(e.commands)) {
      if (e.alarm != nullptr) {
        p.addAlarm(e.alarm);
      } else {
        p.set(attr::kIgnition, e.ignition);
      }
      return;
    }
  }
  if (command == "BO01") {
    // The first data digit.
    static constexpr const char* kAlarms[] = {nullptr,    "accident",  "sos",         "vibration",
                                              "lowspeed", "overspeed", "geofenceExit"};
    if (!data.empty() && data[0] >= '1' && data[0] <= '6') p.addAlarm(kAlarms[data[0] - '0']);
  } else if (command == "BQ81") {
    // ",ALARM,<type>,…" or the type alone.
    std::size_t at = data.find("ALARM,");
    char type = at != std::string_view::npos && at + 6 < data.size() ? data[at + 6]
                : !data.empty() && isDigit(data.back())              ? data.back()
                                                                     : '?';
    static constexpr const char* kAlarms[] = {"lowBattery",       "overspeed",   "idle",
                                              "hardAcceleration", "hardBraking", "temperature"};
    if (type >= '0' && type <= '5') p.addAlarm(kAlarms[type - '0']);
  }
}

// The 8-character I/O block "<charge 0/1><ignition 0/1><io hex><io hex><io hex><fuel 3 hex>".
struct IoBlock {
  bool charging = false, ignition = false;
  int mask1 = 0, mask2 = 0, mask3 = 0;
  std::int64_t fuel = 0;
};

std::optional<IoBlock> ioBlock(std::string_view s) {
  if (s.size() != 8 || (s[0] != '0' && s[0] != '1') || (s[1] != '0' && s[1] != '1') ||
      !allHex(s.substr(2))) {
    return std::nullopt;
  }
  IoBlock io;
  io.charging = s[0] == '0';  // 0 = on external power
  io.ignition = s[1] == '1';
  io.mask1 = static_cast<int>(*toInt(s.substr(2, 1), 16));
  io.mask2 = static_cast<int>(*toInt(s.substr(3, 1), 16));
  io.mask3 = static_cast<int>(*toInt(s.substr(4, 1), 16));
  io.fuel = *toInt(s.substr(5, 3), 16);
  return io;
}

void applyIo(Position& p, const IoBlock& io, bool low) {
  auto bit = [](int mask, int n) { return (mask >> n) & 1; };
  p.set(attr::kCharge, io.charging);
  p.set(attr::kIgnition, io.ignition);
  p.set("in2", std::int64_t{bit(io.mask1, 0)});
  p.set("panic", std::int64_t{bit(io.mask1, 1)});
  p.set("out2", std::int64_t{bit(io.mask1, 2)});
  // Inputs that read 0 are usually unconnected: reported only when set (or tk103.decodeLow).
  if (low || bit(io.mask1, 3) != 0) p.set(attr::kBlocked, std::int64_t{bit(io.mask1, 3)});
  for (int i = 0; i < 3; ++i) {
    if (low || bit(io.mask2, i) != 0) {
      p.set(concat({"hs", std::to_string(3 - i)}), std::int64_t{bit(io.mask2, i)});
    }
  }
  if (low || bit(io.mask2, 3) != 0) p.set("door", std::int64_t{bit(io.mask2, 3)});
  for (int i = 1; i <= 3; ++i) {
    if (low || bit(io.mask3, i) != 0) {
      p.set(concat({"ls", std::to_string(4 - i)}), std::int64_t{bit(io.mask3, i)});
    }
  }
  p.set(attr::kFuel, io.fuel);
}

// ---- the position body ----------------------------------------------------------------------
//   <date 6>[,]<A|V>[,]<lat [d]dmm.m+>[ ]N|S[,]<lon [dd]dmm.m+>E|W[,]<speed 1-5 of " 0-9.">
//   [digits,]<hhmmss>[,]( <course 6 of " 0-9." | 2 digits>[,]<io block>L<odometer hex>
//                        | <course d+.d+> ) …
// The date is yymmdd in the compact form and ddmmyy when a comma follows it.

struct Body {
  bool commas = false;
  int a = 0, b = 0, c = 0;  // the date's three two-digit numbers
  bool valid = false;
  double latitude = 0, longitude = 0;
  double speed = 0;
  int hour = 0, minute = 0, second = 0;
  std::optional<double> course;
  std::optional<IoBlock> io;
  std::optional<std::int64_t> odometer;
  std::size_t end = 0;  // where the part after the course/odometer starts
};

class BodyMatcher {
 public:
  explicit BodyMatcher(std::string_view s) : s_(s) {}

  bool match(std::size_t p, Body& out) {
    if (p + 6 > s_.size() || !allDigits(s_.substr(p, 6))) return false;
    out.a = twoDigits(s_, p);
    out.b = twoDigits(s_, p + 2);
    out.c = twoDigits(s_, p + 4);
    p += 6;
    out.commas = optional(p, ',');
    if (p >= s_.size() || (s_[p] != 'A' && s_[p] != 'V')) return false;
    out.valid = s_[p++] == 'A';
    optional(p, ',');
    double lat = 0, lon = 0;
    if (!coordinate(p, lat, 'N', 'S')) return false;
    optional(p, ',');
    if (!coordinate(p, lon, 'E', 'W')) return false;
    optional(p, ',');
    out.latitude = lat;
    out.longitude = lon;
    // The speed takes up to five characters; the longest that lets the rest match wins.
    for (std::size_t len = 5; len >= 1; --len) {
      if (p + len > s_.size()) continue;
      std::string_view speed = s_.substr(p, len);
      if (!std::all_of(speed.begin(), speed.end(),
                       [](char ch) { return ch == ' ' || ch == '.' || isDigit(ch); })) {
        continue;
      }
      std::size_t q = p + len;
      std::size_t r = q;
      while (r < s_.size() && isDigit(s_[r])) ++r;
      if ((r < s_.size() && s_[r] == ',' && timeAndCourse(r + 1, out)) || timeAndCourse(q, out)) {
        out.speed = toNumber(speed).value_or(0);
        return true;
      }
    }
    return false;
  }

 private:
  bool optional(std::size_t& p, char c) const {
    if (p < s_.size() && s_[p] == c) {
      ++p;
      return true;
    }
    return false;
  }

  // Spaces, degrees and whole minutes (at least two digits before the point), fraction, then
  // the hemisphere letter.
  bool coordinate(std::size_t& p, double& value, char positive, char negative) const {
    while (p < s_.size() && s_[p] == ' ') ++p;
    std::size_t whole = p;
    while (p < s_.size() && isDigit(s_[p])) ++p;
    if (p - whole < 2 || p >= s_.size() || s_[p] != '.') return false;
    std::size_t dot = p++;
    std::size_t fraction = p;
    while (p < s_.size() && isDigit(s_[p])) ++p;
    if (p == fraction || p >= s_.size() || (s_[p] != positive && s_[p] != negative)) return false;
    auto degrees =
        dot - whole > 2 ? toInt(s_.substr(whole, dot - whole - 2)) : std::optional<std::int64_t>(0);
    auto minutes = toNumber(s_.substr(dot - 2, p - (dot - 2)));
    if (!degrees || !minutes) return false;
    value = static_cast<double>(*degrees) + *minutes / 60;
    if (s_[p] == negative) value = -value;
    ++p;
    return true;
  }

  bool timeAndCourse(std::size_t p, Body& out) const {
    if (p + 6 > s_.size() || !allDigits(s_.substr(p, 6))) return false;
    out.hour = twoDigits(s_, p);
    out.minute = twoDigits(s_, p + 2);
    out.second = twoDigits(s_, p + 4);
    p += 6;
    if (p < s_.size() && s_[p] == ',') ++p;
    // A 6-character or 2-digit course before the I/O block and odometer…
    for (std::size_t len : {std::size_t{6}, std::size_t{2}}) {
      if (p + len > s_.size()) continue;
      std::string_view course = s_.substr(p, len);
      bool ok =
          len == 2 ? allDigits(course) : std::all_of(course.begin(), course.end(), [](char ch) {
            return ch == ' ' || ch == '.' || isDigit(ch);
          });
      if (!ok) continue;
      std::size_t q = p + len;
      if ((q < s_.size() && s_[q] == ',' && ioAndOdometer(q + 1, out)) || ioAndOdometer(q, out)) {
        out.course = toNumber(course);
        return true;
      }
    }
    // … or a decimal course alone.
    std::size_t q = p;
    while (q < s_.size() && isDigit(s_[q])) ++q;
    if (q == p || q >= s_.size() || s_[q] != '.') return false;
    std::size_t fraction = ++q;
    while (q < s_.size() && isDigit(s_[q])) ++q;
    if (q == fraction) return false;
    out.course = toNumber(s_.substr(p, q - p));
    out.io.reset();
    out.odometer.reset();
    out.end = q;
    return true;
  }

  bool ioAndOdometer(std::size_t p, Body& out) const {
    if (p + 9 > s_.size()) return false;
    auto io = ioBlock(s_.substr(p, 8));
    if (!io || s_[p + 8] != 'L') return false;
    std::size_t q = p + 9;
    std::size_t digits = q;
    while (q < s_.size() && isHexDigit(s_[q])) ++q;
    if (q == digits) return false;
    // Up to 16 hex digits fit; longer runs are not an odometer a device sends.
    out.odometer = q - digits <= 15 ? toInt(s_.substr(digits, q - digits), 16) : std::nullopt;
    out.io = io;
    out.end = q;
    return true;
  }

  std::string_view s_;
};

// A trailing temperature "+017.7" after the odometer (some models).
std::optional<double> trailingTemperature(std::string_view rest) {
  if (rest.size() < 6) return std::nullopt;
  std::string_view t = rest.substr(rest.size() - 6);
  if ((t[0] != '+' && t[0] != '-') || !allDigits(t.substr(1, 3)) || t[4] != '.' || !isDigit(t[5])) {
    return std::nullopt;
  }
  auto value = toNumber(t.substr(1));
  if (!value) return std::nullopt;
  return t[0] == '-' ? -*value : *value;
}

// ---- message types --------------------------------------------------------------------------

struct Header {
  std::string_view id, command, data;
};

bool looksLikeCommand(std::string_view c) {
  auto upperOrDigit = [](char ch) { return isUpper(ch) || isDigit(ch); };
  return c.size() == 4 && isUpper(c[0]) && isUpper(c[1]) && upperOrDigit(c[2]) &&
         upperOrDigit(c[3]);
}

// `s` is the frame without its parentheses.
bool parseHeader(std::string_view s, Header& h) {
  auto compact = [&](std::size_t idLen) {
    if (s.size() < idLen + 4 || s.substr(0, idLen + 4).find(',') != std::string_view::npos ||
        !looksLikeCommand(s.substr(idLen, 4))) {
      return false;
    }
    h = {s.substr(0, idLen), s.substr(idLen, 4), s.substr(idLen + 4)};
    return true;
  };
  if (compact(12) || compact(11)) return true;
  if (s.size() >= 19 && allDigits(s.substr(0, 15)) && compact(15)) return true;
  std::size_t comma = s.find(',');
  if (comma != std::string_view::npos && comma > 0 && s.size() >= comma + 5 &&
      looksLikeCommand(s.substr(comma + 1, 4)) && (s.size() == comma + 5 || s[comma + 5] == ',')) {
    h = {s.substr(0, comma), s.substr(comma + 1, 4), s.substr(comma + 5)};
    return true;
  }
  return false;
}

struct Context {
  SessionState& session;
  DecodeResult& result;
};

// A position message: the body follows whatever data the command puts first (an alarm code,
// the IMEI of a login, ",ALARM,1,164,").
bool decodePosition(const Header& h, Context& ctx) {
  const std::string_view data = h.data;
  Body body;
  std::size_t at = 0;
  bool found = false;
  for (; at + 6 < data.size(); ++at) {
    body = Body{};
    if (isDigit(data[at]) && BodyMatcher(data).match(at, body)) {
      found = true;
      break;
    }
  }
  if (!found) return false;
  Position p = statusOnly(ctx.session, 0);
  p.hasLocation = true;
  applyCommand(p, h.command, data.substr(0, at));
  p.valid = body.valid;
  p.latitude = body.latitude;
  p.longitude = body.longitude;
  p.speedKmh = body.speed;
  p.course = body.course;
  int year = body.commas ? body.c : body.a;
  int day = body.commas ? body.a : body.c;
  p.deviceTimeUs = lenientMicros(2000 + year, body.b, day, body.hour, body.minute, body.second);
  if (body.io) applyIo(p, *body.io, decodeLow(ctx.session));
  if (body.odometer) p.set(attr::kOdometer, *body.odometer);
  if (auto temp = trailingTemperature(data.substr(body.end))) p.set("temp1", *temp);
  checkRange(p);
  ctx.result.positions.push_back(std::move(p));
  return true;
}

// ZC20: "(<id>,ZC20,ddmmyy,hhmmss,<level 0-6>,<battery cV>,<power dV>,<installed>…)"
void decodeBattery(const Header& h, Context& ctx) {
  if (h.data.empty() || h.data[0] != ',') return;
  Fields f = split(h.data.substr(1), ',');
  if (f.size() < 6 || f[0].size() != 6 || !sixDigits(f[0]) || f[1].size() != 6 ||
      !sixDigits(f[1]) || !allDigits(f[2]) || !allDigits(f[3]) || !allDigits(f[4]) ||
      f[5].empty() || !isDigit(f[5][0])) {
    return;
  }
  Position p = statusOnly(ctx.session, dmyHms(f[0], f[1]));
  auto level = toInt(f[2]).value_or(-1);
  static constexpr std::array<int, 7> kLevels = {-1, -1, 10, 20, 50, 80, 100};
  if (level >= 0 && level < static_cast<std::int64_t>(kLevels.size()) &&
      kLevels[static_cast<std::size_t>(level)] >= 0) {
    p.set(attr::kBatteryLevel, std::int64_t{kLevels[static_cast<std::size_t>(level)]});
  }
  auto battery = toInt(f[3]);
  if (battery && *battery != 65535) p.set(attr::kBattery, static_cast<double>(*battery) * 0.01);
  auto power = toInt(f[4]);
  if (power && *power != 65535) p.set(attr::kPower, static_cast<double>(*power) * 0.1);
  ctx.result.positions.push_back(std::move(p));
}

// Cell towers instead of a fix: "…,mcc,mnc,lac,cid[,…]" or "{mcc,mnc,lac,cid}" lines, maybe
// followed by the I/O block. Towers are not kept (no network model); the I/O block is.
void decodeCells(const Header& h, Context& ctx) {
  Position p = statusOnly(ctx.session, 0);
  std::size_t comma = h.data.rfind(',');
  if (comma != std::string_view::npos) {
    if (auto io = ioBlock(h.data.substr(comma + 1))) applyIo(p, *io, decodeLow(ctx.session));
  }
  ctx.result.positions.push_back(std::move(p));
}

// ZC03: "(<id>,ZC03,ddmmyy,hhmmss,$<answer text>$)"
void decodeCommandResult(const Header& h, Context& ctx) {
  std::string_view d = h.data;
  if (d.size() < 16 || d[0] != ',' || !sixDigits(d.substr(1)) || d[7] != ',' ||
      !sixDigits(d.substr(8)) || d[14] != ',' || d[15] != '$') {
    return;
  }
  std::string_view text = d.substr(16);
  std::size_t close = text.find('$');
  if (close != std::string_view::npos) text = text.substr(0, close);
  Position p = statusOnly(ctx.session, dmyHms(d.substr(1, 6), d.substr(8, 6)));
  p.set(attr::kResult, std::string(text));
  ctx.result.commandAnswer = CommandAnswer{std::string(text)};
  ctx.result.positions.push_back(std::move(p));
}

bool wifiEntry(std::string_view s) {
  // aa:bb:cc:dd:ee:ff*<rssi>*<channel>
  if (s.size() < 21) return false;
  for (std::size_t i = 0; i < 17; ++i) {
    if (i % 3 == 2 ? s[i] != ':' : !isHexDigit(s[i])) return false;
  }
  Fields parts = split(s.substr(17), '*');
  if (parts.size() != 3 || !parts[0].empty()) return false;
  std::string_view rssi = parts[1];
  if (!rssi.empty() && (rssi[0] == '-' || rssi[0] == '+')) rssi.remove_prefix(1);
  return allDigits(rssi) && allDigits(parts[2]);
}

// DW5x: "(<id>,DW5x,mcc,mnc,lac,cid,<wifi count>,<mac*rssi*ch,…>ddmmyy,hhmmss)"
void decodeLbsWifi(const Header& h, Context& ctx) {
  if (h.data.empty() || h.data[0] != ',') return;
  Fields f = split(h.data.substr(1), ',');
  if (f.size() < 7) return;
  for (std::size_t i = 0; i < 5; ++i) {
    if (!allDigits(f[i])) return;
  }
  std::size_t k = 5;
  while (k < f.size() && wifiEntry(f[k])) ++k;
  if (k + 1 >= f.size() || f[k].size() != 6 || !sixDigits(f[k]) || !sixDigits(f[k + 1])) return;
  Position p = statusOnly(ctx.session, dmyHms(f[k], f[k + 1]));
  applyCommand(p, h.command, "0");
  ctx.result.positions.push_back(std::move(p));
}

// BV00: the vehicle's VIN (17 characters).
void decodeVin(const Header& h, Context& ctx) {
  if (h.data.size() != 17) return;
  Position p = statusOnly(ctx.session, 0);
  p.set(attr::kVin, std::string(h.data));
  ctx.result.positions.push_back(std::move(p));
}

std::uint16_t be16(std::string_view b, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<std::uint8_t>(b[at]) << 8) |
                                    static_cast<std::uint8_t>(b[at + 1]));
}

// BS51: battery management registers "90:<hex>,91:<hex>,…" in the layout of common e-bike BMS
// boards (0x90 pack, 0x91 cell extremes, 0x92 temperature extremes, 0x94 counts, 0x95 cell
// voltages in frames of three, 0x96 temperatures in frames of seven; temperatures +40 °C).
void decodeBmsRegisters(const Header& h, Context& ctx) {
  std::map<int, std::string> registers;
  for (std::string_view entry : split(h.data, ',')) {
    std::size_t colon = entry.find(':');
    if (colon == std::string_view::npos) continue;
    auto key = toInt(entry.substr(0, colon), 16);
    auto value = fromHex(entry.substr(colon + 1));
    if (key && value) registers[static_cast<int>(*key)] = *value;
  }
  if (registers.empty()) return;
  Position p = statusOnly(ctx.session, 0);
  auto reg = [&](int key, std::size_t size) -> const std::string* {
    auto it = registers.find(key);
    return it != registers.end() && it->second.size() >= size ? &it->second : nullptr;
  };
  if (const std::string* v = reg(0x90, 8)) {
    p.set(attr::kBattery, be16(*v, 0) / 10.0);
    p.set("batteryCurrent", (be16(*v, 4) - 30000) / 10.0);
    p.set(attr::kBatteryLevel, static_cast<std::int64_t>(std::lround(be16(*v, 6) / 10.0)));
  }
  if (const std::string* v = reg(0x91, 6)) {
    p.set("cellVoltageMax", be16(*v, 0) / 1000.0);
    p.set("cellVoltageMin", be16(*v, 3) / 1000.0);
  }
  if (const std::string* v = reg(0x92, 4)) {
    p.set("batteryTempMax", std::int64_t{static_cast<std::uint8_t>((*v)[0])} - 40);
    p.set("batteryTempMin", std::int64_t{static_cast<std::uint8_t>((*v)[2])} - 40);
  }
  std::size_t cells = 0, temps = 0;
  if (const std::string* v = reg(0x94, 2)) {
    cells = static_cast<std::uint8_t>((*v)[0]);
    temps = static_cast<std::uint8_t>((*v)[1]);
  }
  if (const std::string* v = reg(0x95, 8)) {
    for (std::size_t g = 0; g + 8 <= v->size(); g += 8) {
      std::size_t frame = static_cast<std::uint8_t>((*v)[g]);
      for (std::size_t k = 0; k < 3 && frame >= 1; ++k) {
        std::size_t n = (frame - 1) * 3 + k + 1;
        if (n > cells) break;
        p.set(concat({"cell", std::to_string(n)}), be16(*v, g + 1 + 2 * k) / 1000.0);
      }
    }
  }
  if (const std::string* v = reg(0x96, 8)) {
    for (std::size_t g = 0; g + 8 <= v->size(); g += 8) {
      std::size_t frame = static_cast<std::uint8_t>((*v)[g]);
      for (std::size_t k = 0; k < 7 && frame >= 1; ++k) {
        std::size_t n = (frame - 1) * 7 + k + 1;
        if (n > temps) break;
        p.set(concat({"batteryTemp", std::to_string(n)}),
              std::int64_t{static_cast<std::uint8_t>((*v)[g + 1 + k])} - 40);
      }
    }
  }
  ctx.result.positions.push_back(std::move(p));
}

// BS50: a binary battery report in hex. Known parts (layout inferred from the one sample):
// length (2, of what follows), cell count at 3, cell voltages little-endian mV from 4, the
// number of battery probes at 72 and their temperatures (+40 °C) from 75.
void decodeBmsBinary(const Header& h, Context& ctx) {
  auto bytes = fromHex(h.data);
  if (!bytes || bytes->size() < 4) return;
  const std::string& b = *bytes;
  if (static_cast<std::size_t>(be16(b, 0)) != b.size() - 2) ctx.result.badLength = true;
  Position p = statusOnly(ctx.session, 0);
  std::size_t cells = static_cast<std::uint8_t>(b[3]);
  for (std::size_t i = 0; i < cells && 4 + 2 * i + 1 < b.size(); ++i) {
    std::size_t at = 4 + 2 * i;
    double mv = static_cast<std::uint8_t>(b[at]) | (static_cast<std::uint8_t>(b[at + 1]) << 8);
    p.set(concat({"cell", std::to_string(i + 1)}), mv / 1000.0);
  }
  if (b.size() > 72) {
    std::size_t probes = static_cast<std::uint8_t>(b[72]);
    for (std::size_t i = 0; i < probes && 75 + i < b.size(); ++i) {
      p.set(concat({"batteryTemp", std::to_string(i + 1)}),
            std::int64_t{static_cast<std::uint8_t>(b[75 + i])} - 40);
    }
  }
  ctx.result.positions.push_back(std::move(p));
}

// ---- the codec ------------------------------------------------------------------------------

class Tk103Codec final : public ProtocolCodec {
 public:
  Tk103Codec() {
    const ProtocolInfo* info = findProtocol(kProtocolName);
    maxFrame_ = info != nullptr ? info->maxFrameSize : kDefaultMaxFrame;
  }

  // From '(' to the first ')' outside "$…$" free text.
  FrameResult splitFrame(std::string_view b) override {
    if (b.empty()) return {FrameStatus::kNeedMore, 0};
    std::size_t start = b.find('(');
    if (start != 0) return {FrameStatus::kSkip, start == std::string_view::npos ? b.size() : start};
    bool inText = false;
    for (std::size_t i = 1; i < b.size(); ++i) {
      char c = b[i];
      if (c == '$') {
        inText = !inText;
      } else if (!inText && c == ')') {
        if (i + 1 > maxFrame_) return {FrameStatus::kTooLarge, 0};
        return {FrameStatus::kOk, i + 1};
      } else if (!inText && c == '(') {
        return {FrameStatus::kSkip, i};  // a new frame starts: the first '(' was not one
      }
    }
    if (b.size() > kResyncAfter) {
      std::size_t next = b.find('(', 1);
      if (next != std::string_view::npos) return {FrameStatus::kSkip, next};
    }
    if (b.size() >= maxFrame_) return {FrameStatus::kTooLarge, 0};
    return {FrameStatus::kNeedMore, 0};
  }

  DecodeResult decode(std::string_view frame, SessionState& session, std::int64_t) override {
    DecodeResult result;
    Context ctx{session, result};
    if (frame.empty() || frame[0] != '(') {
      result.note = "not a frame";
      return result;
    }
    // Handshake and login answers, at the fixed places of the 12-character id form.
    if (frame.size() >= 17) {
      std::string_view id = frame.substr(1, 12);
      std::string_view type = frame.substr(13, 4);
      if (type == "BP00" || type == "BP05") {
        if (!accept(session, id)) {
          result.note = "device not accepted";
          return result;
        }
        if (type == "BP00") {
          result.response = concat({"(", id, "AP01HSO)"});
          return result;  // a handshake carries nothing to store
        }
        result.response = concat({"(", id, "AP05)"});
      }
    }
    std::string_view s = frame.substr(1);
    if (!s.empty() && s.back() == ')') s.remove_suffix(1);
    Header h;
    if (!parseHeader(s, h)) {
      result.note = "unrecognised frame";
      return result;
    }
    if (!accept(session, h.id)) {
      result.note = "device not accepted";
      return result;
    }
    if (h.command == "ZC20") {
      decodeBattery(h, ctx);
    } else if (h.command == "BZ00") {
      decodeCells(h, ctx);
    } else if (h.command == "ZC03") {
      decodeCommandResult(h, ctx);
    } else if (h.command.substr(0, 3) == "DW5") {
      decodeLbsWifi(h, ctx);
    } else if (h.command == "BV00") {
      decodeVin(h, ctx);
    } else if (h.command == "BS51") {
      decodeBmsRegisters(h, ctx);
    } else if (h.command == "BS50") {
      decodeBmsBinary(h, ctx);
    } else if (!decodePosition(h, ctx) && h.command == "BP05" &&
               h.data.find('{') != std::string_view::npos) {
      decodeCells(h, ctx);  // a login with cell towers instead of a fix
    }
    if (result.positions.empty() && result.note == nullptr) result.note = "no data in frame";
    return result;
  }

  std::optional<std::string> encodeCommand(const Command& command,
                                           const SessionState& session) override {
    if (command.type == CommandType::kCustomHex) {
      auto bytes = fromHex(command.text);
      if (!bytes || bytes->empty()) return std::nullopt;
      return bytes;
    }
    const std::string& id = session.deviceId;
    if (id.empty()) return std::nullopt;
    switch (command.type) {
      case CommandType::kEngineStop:
        return concat({"(", id, "AV010)"});
      case CommandType::kEngineResume:
        return concat({"(", id, "AV011)"});
      case CommandType::kPositionSingle:
        return concat({"(", id, "AP00)"});
      case CommandType::kCustom:
        // A whole frame is sent as it is; otherwise "<command><data>" is framed for the device.
        if (command.text.empty()) return std::nullopt;
        if (command.text.front() == '(') return command.text;
        if (command.text.find_first_of("()") != std::string::npos) return std::nullopt;
        return concat({"(", id, command.text, ")"});
      default:
        return std::nullopt;
    }
  }

 private:
  std::size_t maxFrame_ = kDefaultMaxFrame;
};

}  // namespace

std::unique_ptr<ProtocolCodec> createTk103Codec() {
  return std::make_unique<Tk103Codec>();
}

}  // namespace tern::codec::trackers
