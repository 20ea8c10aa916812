// OsmAnd / Traccar Client parameters → one Position.
//   id | deviceid        device id (required)
//   lat, lon | location  degrees (required; location=lat,lon)
//   timestamp            epoch seconds, epoch ms, ISO 8601 or "yyyy-MM-dd HH:mm:ss" (UTC)
//   speed (knots), bearing | heading, altitude (m), accuracy (m), hdop, batt (%), charge,
//   driverUniqueId, valid; any other parameter becomes an attribute of its own name (number,
//   bool or short text, as Traccar stores it).
#include "codec/trackers/osmand/osmand.h"

#include <charconv>
#include <cmath>
#include <string_view>

#include "codec/trackers/util.h"

namespace tern::codec::trackers {

namespace {

constexpr std::int64_t kMicros = 1'000'000;
// Traccar's rule: a number below 2^31 is seconds, anything larger milliseconds.
constexpr std::int64_t kSecondsLimit = 2'147'483'647;
constexpr std::int64_t kMaxEpochMs = 253'402'300'799'999;  // 9999-12-31T23:59:59.999Z
constexpr std::size_t kMaxTextAttribute = 256;             // longer free text is not stored

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

bool allDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!isDigit(c)) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A finite decimal number ("12", "-0.5", "+3", "1e3"); nullopt for text, inf and nan.
std::optional<double> parseNumber(std::string_view s) {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  char first = s.front() == '-' && s.size() > 1 ? s[1] : s.front();
  if (!isDigit(first) && first != '.') return std::nullopt;  // rejects "inf", "nan"
  double value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

std::optional<bool> parseBool(std::string_view s) {
  if (s == "true" || s == "1") return true;
  if (s == "false" || s == "0") return false;
  return std::nullopt;
}

int digitsValue(std::string_view s) {
  int value = 0;
  for (char c : s) value = value * 10 + (c - '0');
  return value;
}

// "yyyy-MM-ddTHH:mm[:ss[.fff…]][Z|±HH[:mm]|±HHmm]" or the same with a space for 'T'; no zone
// means UTC. A '+' that arrived unescaped in a query string decodes to ' ' and is read as '+'.
std::optional<std::int64_t> parseDateTime(std::string_view s) {
  s = trim(s);
  if (s.size() < 16 || !allDigits(s.substr(0, 4)) || s[4] != '-' || !allDigits(s.substr(5, 2)) ||
      s[7] != '-' || !allDigits(s.substr(8, 2)) || (s[10] != 'T' && s[10] != ' ') ||
      !allDigits(s.substr(11, 2)) || s[13] != ':' || !allDigits(s.substr(14, 2))) {
    return std::nullopt;
  }
  int second = 0;
  std::int64_t micros = 0;
  std::size_t i = 16;
  if (i < s.size() && s[i] == ':') {
    if (i + 3 > s.size() || !allDigits(s.substr(i + 1, 2))) return std::nullopt;
    second = digitsValue(s.substr(i + 1, 2));
    i += 3;
    if (i < s.size() && (s[i] == '.' || s[i] == ',')) {
      ++i;
      std::size_t start = i;
      std::int64_t scale = 100'000;
      while (i < s.size() && isDigit(s[i])) {
        micros += (s[i] - '0') * scale;
        scale /= 10;
        ++i;
      }
      if (i == start) return std::nullopt;
    }
  }
  std::int64_t offsetSeconds = 0;
  if (i < s.size()) {
    char sign = s[i];
    std::string_view zone = s.substr(i + 1);
    if ((sign == 'Z' || sign == 'z') && zone.empty()) {
      // UTC
    } else if (sign == '+' || sign == '-' || sign == ' ') {
      int hours = 0;
      int minutes = 0;
      if (zone.size() == 2 && allDigits(zone)) {
        hours = digitsValue(zone);
      } else if (zone.size() == 4 && allDigits(zone)) {
        hours = digitsValue(zone.substr(0, 2));
        minutes = digitsValue(zone.substr(2, 2));
      } else if (zone.size() == 5 && zone[2] == ':' && allDigits(zone.substr(0, 2)) &&
                 allDigits(zone.substr(3, 2))) {
        hours = digitsValue(zone.substr(0, 2));
        minutes = digitsValue(zone.substr(3, 2));
      } else {
        return std::nullopt;
      }
      if (hours > 18 || minutes > 59) return std::nullopt;
      offsetSeconds = (hours * 3600 + minutes * 60) * (sign == '-' ? -1 : 1);
    } else {
      return std::nullopt;
    }
  }
  auto t = civilToMicros(digitsValue(s.substr(0, 4)), digitsValue(s.substr(5, 2)),
                         digitsValue(s.substr(8, 2)), digitsValue(s.substr(11, 2)),
                         digitsValue(s.substr(14, 2)), second);
  if (!t) return std::nullopt;
  return *t + micros - offsetSeconds * kMicros;
}

std::optional<std::int64_t> parseTimestamp(std::string_view s) {
  s = trim(s);
  if (allDigits(s)) {
    if (s.size() > 18) return std::nullopt;
    std::int64_t value = 0;
    std::from_chars(s.data(), s.data() + s.size(), value);
    std::int64_t ms = value < kSecondsLimit ? value * 1000 : value;
    if (ms > kMaxEpochMs) return std::nullopt;
    return ms * 1000;
  }
  if (s.find('-', 1) != std::string_view::npos) return parseDateTime(s);
  // Fractional epoch seconds, e.g. "1700000000.25".
  std::size_t dot = s.find('.');
  if (dot == std::string_view::npos || !allDigits(s.substr(0, dot)) ||
      !allDigits(s.substr(dot + 1))) {
    return std::nullopt;
  }
  auto seconds = parseNumber(s);
  if (!seconds || *seconds < 0 || *seconds >= static_cast<double>(kSecondsLimit)) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(std::llround(*seconds * static_cast<double>(kMicros)));
}

OsmandResult fail(std::string error) {
  return {std::nullopt, std::move(error)};
}

std::string invalid(std::string_view key) {
  return "invalid parameter '" + std::string(key) + "'";
}

}  // namespace

OsmandResult decodeOsmand(const std::map<std::string, std::string>& params,
                          std::int64_t serverTimeUs) {
  auto find = [&params](const char* key) -> const std::string* {
    auto it = params.find(key);
    return it == params.end() ? nullptr : &it->second;
  };

  Position p;
  p.protocol = "osmand";
  p.valid = true;  // the apps send fixes only
  p.deviceTimeUs = serverTimeUs;

  const std::string* id = find("id");
  if (id == nullptr || trim(*id).empty()) id = find("deviceid");
  if (id == nullptr || trim(*id).empty()) return fail("parameter 'id' is required");
  p.deviceId = std::string(trim(*id));

  const std::string* lat = find("lat");
  const std::string* lon = find("lon");
  if (lat != nullptr || lon != nullptr) {
    if (lat == nullptr) return fail("parameter 'lat' is required");
    if (lon == nullptr) return fail("parameter 'lon' is required");
    auto latitude = parseNumber(*lat);
    if (!latitude) return fail(invalid("lat"));
    auto longitude = parseNumber(*lon);
    if (!longitude) return fail(invalid("lon"));
    p.latitude = *latitude;
    p.longitude = *longitude;
  } else if (const std::string* location = find("location")) {
    std::string_view text = *location;
    std::size_t comma = text.find(',');
    if (comma == std::string_view::npos) return fail(invalid("location"));
    auto latitude = parseNumber(text.substr(0, comma));
    auto longitude = parseNumber(text.substr(comma + 1));
    if (!latitude || !longitude) return fail(invalid("location"));
    p.latitude = *latitude;
    p.longitude = *longitude;
  } else {
    return fail("parameter 'lat' is required");
  }
  if (std::fabs(p.latitude) > 90) return fail("parameter 'lat' out of range");
  if (std::fabs(p.longitude) > 180) return fail("parameter 'lon' out of range");

  for (const auto& [key, value] : params) {
    if (key == "id" || key == "deviceid" || key == "lat" || key == "lon" || key == "location" ||
        key == "cell" || key == "wifi" || key.empty()) {
      continue;  // handled above; cell towers and Wi-Fi are not modelled
    }
    if (key == "timestamp") {
      auto t = parseTimestamp(value);
      if (!t) return fail(invalid(key));
      p.deviceTimeUs = *t;
    } else if (key == "speed") {
      auto knots = parseNumber(value);
      if (!knots) return fail(invalid(key));
      if (*knots >= 0) p.speedKmh = *knots * kKnotsToKmh;  // negative: unknown
    } else if (key == "bearing" || key == "heading") {
      auto course = parseNumber(value);
      if (!course) return fail(invalid(key));
      if (*course >= 0 && *course <= 360) p.course = *course;
    } else if (key == "altitude") {
      auto altitude = parseNumber(value);
      if (!altitude) return fail(invalid(key));
      p.altitude = *altitude;
    } else if (key == "accuracy") {
      auto accuracy = parseNumber(value);
      if (!accuracy) return fail(invalid(key));
      p.set("accuracy", *accuracy);
    } else if (key == "hdop") {
      auto hdop = parseNumber(value);
      if (!hdop) return fail(invalid(key));
      p.hdop = *hdop;
    } else if (key == "batt") {
      auto level = parseNumber(value);
      if (!level) return fail(invalid(key));
      p.set(attr::kBatteryLevel, *level);
    } else if (key == "charge") {
      p.set(attr::kCharge, parseBool(value).value_or(false));
    } else if (key == "driverUniqueId") {
      if (!value.empty()) p.set("driverUniqueId", value);
    } else if (key == "valid") {
      p.valid = parseBool(value).value_or(false);
    } else if (auto number = parseNumber(value)) {
      p.set(key, *number);
    } else if (value == "true" || value == "false") {
      p.set(key, value == "true");
    } else if (!value.empty() && value.size() <= kMaxTextAttribute) {
      p.set(key, value);
    }
  }
  return {std::move(p), {}};
}

}  // namespace tern::codec::trackers
