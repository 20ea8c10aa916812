// Queclink text messages: "+RESP:GTxxx,<protocol version>,<imei>,<device name>,...,<send time>,
// <count>$". The layout after the IMEI depends on the message type, on the device model (taken
// from the protocol version's prefix) and on optional fields the firmware adds, so each message
// type has its own reader; a message whose layout is not recognised falls back to a generic reader
// that finds the location block by its shape (two 6-decimal coordinates) and the send time.
#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "codec/trackers/gl200/gl200_decoders.h"
#include "codec/trackers/gl200/gl200_fields.h"
#include "codec/trackers/util.h"

namespace tern::codec::trackers::gl200 {

namespace {

using Positions = std::vector<Position>;
// nullopt: the message is not in this layout (the generic reader gets a try).
using Decoded = std::optional<Positions>;

// Model by protocol-version prefix (first two characters, or six for ten-character versions).
struct ModelPrefix {
  std::string_view prefix;
  std::string_view model;
};
constexpr std::array kModels = {
    ModelPrefix{"02", "GL200"},        ModelPrefix{"04", "GV200"},
    ModelPrefix{"06", "GV300"},        ModelPrefix{"08", "GMT100"},
    ModelPrefix{"09", "GV50P"},        ModelPrefix{"0F", "GV55"},
    ModelPrefix{"10", "GV55 LITE"},    ModelPrefix{"11", "GL500"},
    ModelPrefix{"1A", "GL300"},        ModelPrefix{"1F", "GV500"},
    ModelPrefix{"21", "GL200"},        ModelPrefix{"25", "GV300"},
    ModelPrefix{"27", "GV300W"},       ModelPrefix{"28", "GL300VC"},
    ModelPrefix{"2C", "GL300W"},       ModelPrefix{"2D", "GV500VC"},
    ModelPrefix{"2F", "GV55"},         ModelPrefix{"4F", "GV56"},
    ModelPrefix{"30", "GL300"},        ModelPrefix{"31", "GV65"},
    ModelPrefix{"35", "GV200"},        ModelPrefix{"36", "GV500"},
    ModelPrefix{"3F", "GMT100"},       ModelPrefix{"40", "GL500"},
    ModelPrefix{"41", "GV75W"},        ModelPrefix{"42", "GT501"},
    ModelPrefix{"44", "GL530"},        ModelPrefix{"45", "GB100"},
    ModelPrefix{"50", "GV55W"},        ModelPrefix{"52", "GL50"},
    ModelPrefix{"55", "GL50B"},        ModelPrefix{"5E", "GV500MAP"},
    ModelPrefix{"6E", "GV310LAU"},     ModelPrefix{"74", "GV350CEU"},
    ModelPrefix{"BD", "CV200"},        ModelPrefix{"C2", "GV600M"},
    ModelPrefix{"C3", "GL320M"},       ModelPrefix{"DC", "GV600MG"},
    ModelPrefix{"DE", "GL500M"},       ModelPrefix{"DF", "CV100LG"},
    ModelPrefix{"F1", "GV350M"},       ModelPrefix{"F8", "GV800W"},
    ModelPrefix{"FC", "GV600W"},       ModelPrefix{"802004", "GV58LAU"},
    ModelPrefix{"802005", "GV355CEU"}, ModelPrefix{"80201E", "GV30CEU"},
};

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}
bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
// GV350CEU, GV355CEU, ...: the CEU models share a CAN layout.
bool isGv35xCeu(std::string_view model) {
  return model.size() == 8 && startsWith(model, "GV35") && endsWith(model, "CEU");
}

bool isImei(std::string_view s) {
  return isDigits(s, 15, 15) || isHex(s, 14, 14);
}
bool isVin(std::string_view s) {
  if (s.size() != 17) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'); });
}
bool isOneOf01(std::string_view s) {
  return s == "0" || s == "1";
}
bool isNegativeDigits(std::string_view s) {
  return s.size() >= 2 && s[0] == '-' && isDigits(s.substr(1), 1, 10);
}

struct Message {
  const Fields& f;
  std::string_view header;  // "+RESP:GTFRI"
  std::string_view type;    // "FRI"
  std::string model;
  std::string deviceId;

  std::size_t size() const { return f.size(); }
  std::string_view at(std::size_t i) const { return i < f.size() ? f[i] : std::string_view(); }
  Position base() const {
    Position p;
    p.protocol = std::string(kProtocolName);
    p.deviceId = deviceId;
    return p;
  }
};

void setInt(Position& p, std::string_view key, std::optional<std::int64_t> v) {
  if (v) p.set(key, *v);
}
void setDouble(Position& p, std::string_view key, std::optional<double> v) {
  if (v) p.set(key, *v);
}
void setText(Position& p, std::string_view key, std::string_view v) {
  if (!v.empty()) p.set(key, std::string(v));
}
// Rounds to an integer; values beyond ±9e18 (only garbage gets there) become 0.
std::int64_t roundToInt(double v) {
  return std::fabs(v) < 9e18 ? static_cast<std::int64_t>(std::llround(v)) : 0;
}
// v × factor, nullopt on overflow (a garbage field must not overflow).
std::optional<std::int64_t> scaled(std::optional<std::int64_t> v, std::int64_t factor) {
  std::int64_t out = 0;
  if (!v || __builtin_mul_overflow(*v, factor, &out)) return std::nullopt;
  return out;
}
// Kilometres with one decimal → metres.
void setOdometerKm(Position& p, std::string_view km, std::string_view key = "odometer") {
  if (auto v = toDouble(km)) p.set(key, roundToInt(*v * 1000));
}

// ---------------------------------------------------------------------------------------------
// Location block: <hdop>,<speed km/h>,<azimuth>,<altitude>,<lon>,<lat>,<GPS UTC time>
// [,<wifi count>(,<mac>,<rssi>,,,)*],<mcc>,<mnc>,<lac>,<cell id>,<odometer|rssi|append mask>

struct Block {
  std::string_view hdop, speed, course, altitude, longitude, latitude, time;
  std::string_view extra;  // the field after the cell id
  std::size_t next = 0;    // index of the first field after the block
};

// Applies a block's GPS part. Fields that are present but do not parse fail the message.
bool applyBlock(Position& p, const Block& b) {
  std::optional<double> hdop;
  if (!b.hdop.empty()) {
    hdop = toDouble(b.hdop);
    if (!hdop) return false;
    p.hdop = *hdop;
  }
  if (!b.speed.empty()) {
    auto v = toDouble(b.speed);
    if (!v || *v < 0) return false;
    p.speedKmh = *v;
  }
  if (!b.course.empty()) {
    auto v = toDouble(b.course);
    if (!v) return false;
    if (*v >= 0 && *v <= 360) p.course = *v;
  }
  if (!b.altitude.empty()) {
    auto v = toDouble(b.altitude);
    if (!v) return false;
    p.altitude = *v;
  }
  p.hasLocation = false;
  if (!b.longitude.empty() && !b.latitude.empty() && !b.time.empty()) {
    auto lon = toDouble(b.longitude);
    auto lat = toDouble(b.latitude);
    auto time = toTime(b.time);
    if (!lon || !lat) return false;
    // Out-of-range coordinates or an impossible date are not a fix (kept as "no location").
    if (time && *lat >= -90 && *lat <= 90 && *lon >= -180 && *lon <= 180) {
      p.hasLocation = true;
      p.latitude = *lat;
      p.longitude = *lon;
      p.deviceTimeUs = *time;
      // GPS accuracy 0 means the fix failed and the last known position is repeated.
      p.valid = !hdop || *hdop > 0;
    }
  }
  return true;
}

// A block in a layout whose fields are recognised by shape (FRI, LSW, IDA, OBD, ...).
std::optional<Block> strictBlock(const Fields& f, std::size_t i) {
  std::size_t n = f.size();
  if (i + 12 > n) return std::nullopt;
  Block b{f[i], f[i + 1], f[i + 2], f[i + 3], f[i + 4], f[i + 5], f[i + 6], {}, 0};
  if (!emptyOr(b.hdop, shape::kHdop) || !emptyOr(b.speed, shape::kSpeed) ||
      !emptyOr(b.course, shape::kCourse) || !emptyOr(b.altitude, shape::kAltitude) ||
      !emptyOr(b.longitude, shape::kLongitude) || !emptyOr(b.latitude, shape::kLatitude) ||
      !(b.time.empty() || isDigits(b.time, 14, 14))) {
    return std::nullopt;
  }
  std::size_t j = i + 7;
  // Optional Wi-Fi list: <count>, then 5 fields per access point.
  if (isDigits(f[j], 1, 3) && j + 1 < n && isHex(f[j + 1], 12, 12)) {
    std::size_t k = j + 1;
    while (k + 5 <= n && isHex(f[k], 12, 12) && isNegativeDigits(f[k + 1]) && f[k + 2].empty() &&
           f[k + 3].empty() && f[k + 4].empty()) {
      k += 5;
    }
    if (k > j + 1) j = k;
  }
  if (j + 5 > n) return std::nullopt;
  if (!(f[j].empty() || isDigits(f[j], 1, 10)) ||
      !(f[j + 1].empty() || isDigits(f[j + 1], 1, 10)) ||
      !(f[j + 2].empty() || isHex(f[j + 2], 1, 16)) ||
      !(f[j + 3].empty() || isHex(f[j + 3], 1, 16)) ||
      !emptyOr(f[j + 4], shape::kDigitsOrDecimal)) {
    return std::nullopt;
  }
  b.extra = f[j + 4];
  b.next = j + 5;
  return b;
}

// Applies a strict block: GPS part plus the odometer when the last field is a decimal.
bool applyStrictBlock(Position& p, const Block& b) {
  if (!applyBlock(p, b)) return false;
  if (b.extra.find('.') != std::string_view::npos) setOdometerKm(p, b.extra);
  return true;
}

// A block in the fixed layouts (ERI, IGN, DAT, ...), read field by field; the fields after the
// cell depend on the model.
void readLocation(Cursor& c, const std::string& model, Position& p) {
  Block b;
  b.hdop = c.next();
  b.speed = c.next();
  b.course = c.next();
  b.altitude = c.next();
  if (!c.peek(0).empty() && !c.peek(1).empty() && !c.peek(2).empty()) {
    b.longitude = c.peek(0);
    b.latitude = c.peek(1);
    b.time = c.peek(2);
  }
  c.skip(3);
  if (c.peek(1).size() == 12) {
    auto count = c.nextInt();
    if (!count || *count < 0 || *count > 64) {
      c.fail();
      return;
    }
    c.skip(static_cast<std::size_t>(*count) * 5);  // mac, rssi, 3 reserved
  }
  c.skip(4);                                // mcc, mnc, lac, cell id
  if (startsWith(model, "GL5")) c.skip(2);  // csq rssi, csq ber
  if (model == "GT500MA" || model == "GT501") {
    c.skip(1);  // csq rssi
  } else if (model != "GL320M") {
    std::string_view value = c.next();
    if (!value.empty()) {
      if (value.find('.') != std::string_view::npos) {
        auto km = toDouble(value);
        if (!km) c.fail();
        setOdometerKm(p, value);
      } else {
        // An append mask saying which optional fields follow.
        auto mask = toHex(value);
        if (!mask) {
          c.fail();
        } else {
          if (bit(*mask, 0)) {
            auto sat = c.nextInt();
            if (sat && *sat >= 0 && *sat < 100) p.satellites = static_cast<int>(*sat);
          }
          if (bit(*mask, 1)) c.skip(1);  // trigger type
          if (bit(*mask, 4)) c.skip(1);  // GNSS jamming state
        }
      }
    }
  }
  if (!applyBlock(p, b)) c.fail();
}

// <device status>: ignition in the third byte, digital inputs in the second, outputs in the first.
void decodeStatus(Position& p, std::uint64_t value) {
  std::uint64_t ignition = (value >> 16) & 0xFF;
  if (bit(ignition, 4)) {
    p.set(attr::kIgnition, false);
  } else if (bit(ignition, 5)) {
    p.set(attr::kIgnition, true);
  }
  auto input = static_cast<std::int64_t>((value >> 8) & 0xFF);
  auto output = static_cast<std::int64_t>(value & 0xFF);
  p.set(attr::kInput, input);
  p.set("in1", bit(static_cast<std::uint64_t>(input), 1));
  p.set("in2", bit(static_cast<std::uint64_t>(input), 2));
  p.set(attr::kOutput, output);
  p.set("out1", bit(static_cast<std::uint64_t>(output), 0));
  p.set("out2", bit(static_cast<std::uint64_t>(output), 1));
}

// Analog input: "F<n>" is a fuel percentage, otherwise millivolts.
bool decodeAnalog(Position& p, int index, std::string_view value) {
  if (value.empty()) return true;
  if (value.front() == 'F') {
    auto v = toInt(value.substr(1));
    if (!v) return false;
    p.set("fuel" + std::to_string(index), *v);
    return true;
  }
  auto v = toInt(value);
  if (!v) return false;
  p.set("adc" + std::to_string(index), static_cast<double>(*v) / 1000.0);
  return true;
}

// "+RESP:GTxxx" or "+BUFF:GTxxx", a protocol version of 0, 6 or 10 characters, an IMEI.
bool standardHead(const Message& m) {
  std::string_view h = m.header;
  if (!(startsWith(h, "+RESP:GT") || startsWith(h, "+BUFF:GT")) || h.size() != 11) return false;
  std::size_t v = m.at(1).size();
  return m.size() >= 3 && (v == 0 || v == 6 || v == 10) && isImei(m.at(2));
}

// "<time or empty>,<count>" ending the message at index i.
bool endsAt(const Message& m, std::size_t i) {
  return i + 2 == m.size() && (m.f[i].empty() || isDigits(m.f[i], 14, 14)) &&
         isHex(m.f[i + 1], 4, 4);
}
// Any fields, then "<count>": the layouts that allow extra fields before the end.
bool endsAfter(const Message& m, std::size_t i) {
  return i + 2 <= m.size() && isHex(m.f.back(), 4, 4);
}

// ---------------------------------------------------------------------------------------------
// Fixed report (FRI) and its relatives (GEO, RTL, DOG): one or more location blocks between a
// header whose optional fields vary by model and a tail whose layout varies by model.

struct Tail {
  int layout = 0;
  std::string_view batteryMv, batteryLevel, temperature;            // 1: GL5xx
  std::string_view odometer, hours, adc1, adc2, status, rpm, fuel;  // 2: vehicle trackers
  std::string_view rssi;                                            // 3: personal trackers
  std::size_t end = 0;
};

bool matchTail(const Message& m, std::size_t t, Tail& tail) {
  auto at = [&](std::size_t i) { return m.at(i); };
  auto fits = [&](std::size_t end) { return end + 2 <= m.size(); };
  // 1: <reserved>,<battery mV>,<battery %>,<mode>,<motion>,<temperature>
  if (isDigits(at(t), 1, 2) && (at(t + 1).empty() || isDigits(at(t + 1), 1, 5)) &&
      isDigits(at(t + 2), 1, 3) && isOneOf01(at(t + 3)) &&
      (at(t + 4).empty() || isOneOf01(at(t + 4))) && emptyOr(at(t + 5), shape::kTemperature) &&
      fits(t + 6)) {
    tail = Tail{};
    tail.layout = 1;
    tail.batteryMv = at(t + 1);
    tail.batteryLevel = at(t + 2);
    tail.temperature = at(t + 5);
    tail.end = t + 6;
    return true;
  }
  // 2: <mileage>,<hour meter>,<adc1>,<adc2>[,<reserved>],<battery %>,<status>,<rpm>,
  //    <fuel consumption>,<fuel level>
  if (emptyOr(at(t), shape::kMileage)) {
    std::string_view hours = at(t + 1);
    bool hoursOk = hours.empty() || (hours.size() == 11 && isDigits(hours.substr(0, 5), 5, 5) &&
                                     hours[5] == ':' && isDigits(hours.substr(6, 2), 2, 2) &&
                                     hours[8] == ':' && isDigits(hours.substr(9, 2), 2, 2));
    if (hoursOk && (at(t + 2).empty() || isHex(at(t + 2), 1, 16)) &&
        (at(t + 3).empty() || isHex(at(t + 3), 1, 16))) {
      for (std::size_t reserved = 1; reserved != static_cast<std::size_t>(-1); --reserved) {
        std::size_t u = t + 4;
        if (reserved == 1 && !(at(u).empty() || isDigits(at(u), 1, 30))) continue;
        u += reserved;
        std::string_view consumption = at(u + 3);
        bool consumptionOk =
            consumption.empty() || consumption == "Inf" || consumption == "NaN" ||
            hasShape(consumption, NumberShape{false, 1, 30, NumberShape::Dot::kOptional, 0, 30});
        if ((at(u).empty() || isDigits(at(u), 1, 3)) &&
            (at(u + 1).empty() || isHex(at(u + 1), 6, 6)) &&
            (at(u + 2).empty() || isDigits(at(u + 2), 1, 30)) && consumptionOk &&
            (at(u + 4).empty() || isDigits(at(u + 4), 1, 30)) && fits(u + 5)) {
          tail = Tail{};
          tail.layout = 2;
          tail.odometer = at(t);
          tail.hours = hours;
          tail.adc1 = at(t + 2);
          tail.adc2 = at(t + 3);
          tail.batteryLevel = at(u);
          tail.status = at(u + 1);
          tail.rpm = at(u + 2);
          tail.fuel = at(u + 4);
          tail.end = u + 5;
          return true;
        }
      }
    }
  }
  // 3: <rssi>,<battery %>
  if (hasShape(at(t), NumberShape{true, 1, 1}) && isDigits(at(t + 1), 1, 3) && fits(t + 2)) {
    tail = Tail{};
    tail.layout = 3;
    tail.rssi = at(t);
    tail.batteryLevel = at(t + 1);
    tail.end = t + 2;
    return true;
  }
  // 4: [<mileage>,]<battery %>
  for (std::size_t mileage = 1; mileage != static_cast<std::size_t>(-1); --mileage) {
    if (mileage == 1 && !emptyOr(at(t), shape::kMileage)) continue;
    std::size_t u = t + mileage;
    if ((at(u).empty() || isDigits(at(u), 1, 3)) && fits(u + 1)) {
      tail = Tail{};
      tail.layout = 4;
      tail.odometer = mileage == 1 ? at(t) : std::string_view();
      tail.batteryLevel = at(u);
      tail.end = u + 1;
      return true;
    }
  }
  // 5: <mileage> alone (GL200 GTRTL/GTDOG), directly before the send time.
  if (hasShape(at(t), shape::kMileage) && fits(t + 1)) {
    tail = Tail{};
    tail.layout = 4;
    tail.odometer = at(t);
    tail.end = t + 1;
    return true;
  }
  return false;
}

Decoded decodeFri(const Message& m) {
  if (!standardHead(m) || !isHex(m.f.back(), 4, 4)) return std::nullopt;
  std::size_t n = m.size();
  bool vinPossible = isVin(m.at(3));
  for (int withVin = vinPossible ? 1 : 0; withVin >= 0; --withVin) {
    std::size_t i = 3 + static_cast<std::size_t>(withVin);
    std::string_view vin = withVin != 0 ? m.at(3) : std::string_view();
    std::string_view power = m.at(i + 1);  // after the device name
    if (i + 2 > n || !(power.empty() || isDigits(power, 1, 18))) continue;
    i += 2;
    // Optional header fields <report type>,<count>,<reserved>,<battery %>: present is tried
    // before absent, element by element, so the longest reading that fits wins.
    for (unsigned absent = 0; absent < 16; ++absent) {
      std::size_t j = i;
      std::string_view reportType, battery;
      if ((absent & 8U) == 0) {
        if (!isDigits(m.at(j), 1, 2)) continue;
        reportType = m.at(j++);
      }
      if ((absent & 4U) == 0) {
        if (!isDigits(m.at(j), 1, 2)) continue;
        ++j;
      }
      if ((absent & 2U) == 0) {
        if (j >= n || !(m.at(j).empty() || isDigits(m.at(j), 1, 30))) continue;
        ++j;
      }
      if ((absent & 1U) == 0) {
        if (!isDigits(m.at(j), 1, 30)) continue;
        battery = m.at(j++);
      }
      std::vector<Block> blocks;
      for (std::size_t s = j; blocks.size() < n;) {
        auto b = strictBlock(m.f, s);
        if (!b) break;
        blocks.push_back(*b);
        s = b->next;
      }
      for (std::size_t k = blocks.size(); k > 0; --k) {
        Tail tail;
        if (!matchTail(m, blocks[k - 1].next, tail)) continue;
        Positions positions;
        for (std::size_t b = 0; b < k; ++b) {
          Position p = m.base();
          setText(p, attr::kVin, vin);
          if (!applyStrictBlock(p, blocks[b])) return std::nullopt;
          positions.push_back(std::move(p));
        }
        Position& last = positions.back();
        if (auto v = toInt(power); v && *v > 10)
          last.set(attr::kPower, static_cast<double>(*v) / 1000.0);
        setInt(last, attr::kBatteryLevel, toInt(battery));
        switch (tail.layout) {
          case 1:
            if (auto mv = toInt(tail.batteryMv))
              last.set(attr::kBattery, static_cast<double>(*mv) / 1000.0);
            setInt(last, attr::kBatteryLevel, toInt(tail.batteryLevel));
            setDouble(last, "temp1", toDouble(tail.temperature));
            break;
          case 2:
            setOdometerKm(last, tail.odometer);
            setInt(last, attr::kHours, toHoursMs(tail.hours));
            setText(last, "adc1", tail.adc1);
            setText(last, "adc2", tail.adc2);
            setInt(last, attr::kBatteryLevel, toInt(tail.batteryLevel));
            if (auto status = toHex(tail.status)) decodeStatus(last, *status);
            setInt(last, attr::kRpm, toInt(tail.rpm));
            setInt(last, attr::kFuel, toInt(tail.fuel));
            break;
          case 3:
            if (auto type = toInt(reportType)) {
              last.set(attr::kMotion, bit(static_cast<std::uint64_t>(*type), 0));
              last.set(attr::kCharge, bit(static_cast<std::uint64_t>(*type), 1));
            }
            setInt(last, attr::kRssi, toInt(tail.rssi));
            setInt(last, attr::kBatteryLevel, toInt(tail.batteryLevel));
            break;
          default:
            setOdometerKm(last, tail.odometer);
            setInt(last, attr::kBatteryLevel, toInt(tail.batteryLevel));
            break;
        }
        return positions;
      }
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Extended fixed report (ERI): FRI plus a mask of attached accessories (fuel sensors, 1-wire
// temperature probes, BLE tags, ...), fixed layout per model.

Decoded decodeEri(const Message& m) {
  const std::string& model = m.model;
  Cursor c(m.f, 3);
  std::string_view vin = model == "GV500" ? c.next() : std::string_view();
  c.skip(1);  // device name
  std::uint64_t mask = c.nextHex().value_or(0);
  auto power = c.nextInt();
  c.skip(1);  // report type
  auto count = c.nextInt();
  if (c.failed() || !count || *count < 1 || *count > 100) return std::nullopt;
  Positions positions;
  for (std::int64_t i = 0; i < *count; ++i) {
    Position p = m.base();
    setText(p, attr::kVin, vin);
    readLocation(c, model, p);
    if (c.failed()) return std::nullopt;
    positions.push_back(std::move(p));
  }
  Position& p = positions.back();
  if (power) p.set(attr::kPower, static_cast<double>(*power) / 1000.0);
  bool gl5 = startsWith(model, "GL5");
  if (!gl5) setOdometerKm(p, c.next());
  if (!gl5 && model != "GL320M") {
    std::string_view hours = c.next();
    if (!hours.empty()) {
      auto ms = toHoursMs(hours);
      if (!ms) return std::nullopt;
      p.set(attr::kHours, *ms);
    }
    if (!decodeAnalog(p, 1, c.next())) return std::nullopt;
  }
  if (startsWith(model, "GV") && !startsWith(model, "GV6") && model != "GV350M") {
    if (!decodeAnalog(p, 2, c.next())) return std::nullopt;
  }
  if (model == "GV200" || model == "GV310LAU" || model == "GV350CEU") {
    if (!decodeAnalog(p, 3, c.next())) return std::nullopt;
  } else if ((startsWith(model, "GV3") && endsWith(model, "CEU")) || startsWith(model, "GV600M")) {
    c.skip(1);  // reserved
  }
  if (gl5) {
    setInt(p, attr::kBatteryLevel, c.nextInt());
    c.skip(1);  // mode selection
    if (auto motion = c.nextInt()) p.set(attr::kMotion, *motion > 0);
  } else if (model == "GV200") {
    if (auto v = c.nextHex()) p.set(attr::kInput, static_cast<std::int64_t>(*v & 0xFFFFFFFF));
    if (auto v = c.nextHex()) p.set(attr::kOutput, static_cast<std::int64_t>(*v & 0xFFFFFFFF));
    c.skip(1);  // uart device type
  } else if (model == "GL320M") {
    setInt(p, attr::kBatteryLevel, c.nextInt());
    if (bit(mask, 7)) setInt(p, "externalBattery", c.nextInt());
  } else {
    setInt(p, attr::kBatteryLevel, c.nextInt());
    if (auto status = c.nextHex()) decodeStatus(p, *status);
    c.skip(1);  // reserved / uart device type
  }
  if (bit(mask, 0) && model != "GV350M") {
    if (auto v = c.nextHex()) p.set(attr::kFuel, static_cast<std::int64_t>(*v & 0xFFFFFFFF));
  }
  if (bit(mask, 29)) {
    c.skip(2);  // reserved
    std::uint64_t dataMask = c.nextHex().value_or(0);
    if (bit(dataMask, 0)) {
      if (auto v = c.nextHex())
        p.set(attr::kFuel, static_cast<std::int64_t>(*v & 0x7FFFFFFFFFFFFFFF));
    }
    if (bit(dataMask, 1)) c.skip(1);  // fuel height
  }
  if (bit(mask, 1)) {  // 1-wire temperature sensors: id, type, 1/16 °C as int16 hex
    auto devices = c.nextInt().value_or(0);
    for (std::int64_t i = 1; i <= devices && !c.failed(); ++i) {
      c.skip(2);
      if (auto raw = c.nextHex()) {
        auto value = static_cast<std::int16_t>(static_cast<std::uint16_t>(*raw & 0xFFFF));
        p.set("temp" + std::to_string(i), value * 0.0625);
      }
    }
  }
  if (c.failed()) return std::nullopt;
  if (bit(mask, 2)) return positions;  // CAN data follows: not decoded here
  bool fuelSensors = bit(mask, 3) || bit(mask, 4) || (bit(mask, 0) && model == "GV350M");
  if (fuelSensors && c.index() + 2 < m.size()) {
    auto devices = c.nextInt().value_or(0);
    for (std::int64_t i = 1; i <= devices && !c.failed(); ++i) {
      c.skip(1);  // type
      if (model == "GV350M") {
        c.skip(1);  // uart id
        if (bit(mask, 0)) {
          if (auto v = c.nextHex()) p.set(attr::kFuel, static_cast<std::int64_t>(*v & 0xFFFFFFFF));
        }
      }
      if (bit(mask, 3)) setDouble(p, attr::kFuel, c.nextDouble());
      if (bit(mask, 4)) c.skip(1);   // volume
      if (bit(mask, 10)) c.skip(1);  // fuel temperature
    }
  }
  if (bit(mask, 7) && model != "GL320M") {  // temperature/humidity sensors
    auto devices = c.nextInt().value_or(0);
    for (std::int64_t i = 1; i <= devices && !c.failed(); ++i) {
      c.skip(1);  // serial number
      auto type = c.nextInt().value_or(0);
      c.skip(type == 2 ? 2 : 1);  // temperature [, humidity]
    }
  }
  if (bit(mask, 8) && model != "GL320M") {  // BLE accessories
    auto devices = c.nextInt().value_or(0);
    for (std::int64_t i = 1; i <= devices && !c.failed(); ++i) {
      std::string tag = "tag" + std::to_string(i);
      c.skip(startsWith(model, "GV600M") ? 5 : 4);  // index, type, model, [raw length], raw data
      std::uint64_t deviceMask = c.nextHex().value_or(0);
      if (bit(deviceMask, 0)) c.skip(1);  // name
      if (bit(deviceMask, 1)) setText(p, tag + "Id", c.next());
      if (bit(deviceMask, 2)) c.skip(1);  // status
      if (bit(deviceMask, 3)) c.skip(1);  // battery level
      if (bit(deviceMask, 4)) setDouble(p, tag + "Temp", c.nextDouble());
      if (bit(deviceMask, 5)) setInt(p, tag + "Humidity", c.nextInt());
      for (unsigned b = 7; b <= 12; ++b) {
        if (bit(deviceMask, b)) c.skip(1);  // i/o, event, tyre pressure, time, temperature, magnet
      }
      if (bit(deviceMask, 13)) setInt(p, tag + "Battery", c.nextInt());
      if (bit(deviceMask, 14)) c.skip(1);  // relay
    }
  }
  if (c.failed()) return std::nullopt;
  return positions;
}

// ---------------------------------------------------------------------------------------------
// Ignition on/off (IGN, IGF, VGN, VGF): <duration>, one location block, <hour meter>, <mileage>.

Decoded decodeIgnition(const Message& m) {
  Cursor c(m.f, 3);
  c.skip(1);                          // device name
  if (m.model == "CV200") c.skip(2);  // reserved, report type
  c.skip(1);                          // duration of the previous ignition state
  Position p = m.base();
  readLocation(c, m.model, p);
  p.set(attr::kIgnition, m.type.find("GN") != std::string_view::npos);
  std::string_view hours = c.next();
  if (!hours.empty()) {
    auto ms = toHoursMs(hours);
    if (!ms) return std::nullopt;
    p.set(attr::kHours, *ms);
  }
  std::string_view km = c.next();
  if (!km.empty() && !toDouble(km)) return std::nullopt;
  setOdometerKm(p, km);
  if (c.failed()) return std::nullopt;
  return Positions{std::move(p)};
}

// ---------------------------------------------------------------------------------------------
// Device information (INF): state, ICCID, signal, power and battery; no location.

Decoded decodeInf(const Message& m) {
  if (m.at(1).size() > 10) return std::nullopt;  // a GT300-style message without a version
  const std::string& model = m.model;
  Position p = m.base();
  p.hasLocation = false;
  Cursor c(m.f, 4);  // after the device name
  if (auto state = c.nextHex()) {
    switch (*state) {
      case 0x16:
      case 0x1A:
      case 0x12:
        p.set(attr::kIgnition, false);
        p.set(attr::kMotion, true);
        break;
      case 0x11:
        p.set(attr::kIgnition, false);
        p.set(attr::kMotion, false);
        break;
      case 0x21:
        p.set(attr::kIgnition, true);
        p.set(attr::kMotion, false);
        break;
      case 0x22:
        p.set(attr::kIgnition, true);
        p.set(attr::kMotion, true);
        break;
      case 0x41:
        p.set(attr::kMotion, false);
        break;
      case 0x42:
        p.set(attr::kMotion, true);
        break;
      default:
        break;
    }
  }
  setText(p, "iccid", c.next());
  setInt(p, attr::kRssi, c.nextInt());
  c.skip(2);                     // signal quality, external power supply
  if (c.peek(1).size() >= 12) {  // a BLE sensor: mac, temperature, humidity
    c.skip(1);
    setInt(p, "deviceTemp", c.nextInt());
    setInt(p, "humidity", c.nextInt());
  }
  std::string_view value = c.next();
  if (!value.empty()) {
    if (value.find('.') != std::string_view::npos) {
      setOdometerKm(p, value);
    } else if (auto mv = toInt(value)) {
      p.set(attr::kPower, static_cast<double>(*mv) / 1000.0);
    }
  }
  if (model != "GV500VC") {
    if (model == "GV350M" || model == "GV310LAU") {
      c.skip(1);  // expand mask or network type
    } else if (auto mv = c.nextInt()) {
      p.set("power2", static_cast<double>(*mv) / 1000.0);
    }
  }
  setDouble(p, attr::kBattery, c.nextDouble());
  if (auto charge = c.nextInt(); charge && *charge == 1) p.set(attr::kCharge, true);
  if (model == "GV310LAU") {
    c.skip(5);  // led state, power saving mode, external antenna, last fix time, pin mask
    for (int i = 1; i <= 3; ++i) setInt(p, "adc" + std::to_string(i), c.nextInt());
  }
  if (c.failed()) return std::nullopt;
  return Positions{std::move(p)};
}

// ---------------------------------------------------------------------------------------------
// CAN bus report (CAN): a 32-bit mask says which vehicle values follow, with two extension
// masks; the location block comes last (bit 30).

Decoded decodeCan(const Message& m) {
  const std::string& model = m.model;
  bool ceu = isGv35xCeu(model);
  Position p = m.base();
  p.hasLocation = false;
  Cursor c(m.f, 4);
  c.skip(2);  // report type, CAN bus state
  auto maskValue = c.nextHex();
  if (!maskValue) return std::nullopt;
  std::uint64_t mask = *maskValue;
  // The next field when the mask bit is set (empty when absent).
  auto field = [&](std::uint64_t value, unsigned b) -> std::string_view {
    return bit(value, b) ? c.next() : std::string_view();
  };
  auto stripPrefix = [](std::string_view v, std::string_view prefix) {
    return startsWith(v, prefix) ? v.substr(prefix.size()) : v;
  };
  setText(p, attr::kVin, field(mask, 0));
  if (auto v = field(mask, 1); !v.empty()) {
    if (auto i = toInt(v)) p.set(attr::kIgnition, *i > 0);
  }
  if (auto v = field(mask, 2); startsWith(v, "H")) {
    setInt(p, "obdOdometer", scaled(toInt(v.substr(1)), 100));  // hectometres
  }
  if (auto v = field(mask, 3); !v.empty() && !startsWith(v, "K")) {
    setDouble(p, "fuelUsed", toDouble(stripPrefix(v, "L")));
  }
  setInt(p, attr::kRpm, toInt(field(mask, 5)));  // rpm comes before speed on the wire
  setInt(p, attr::kObdSpeed, toInt(field(mask, 4)));
  setInt(p, attr::kCoolantTemp, toInt(field(mask, 6)));
  if (auto v = field(mask, 7); startsWith(v, "L/H"))
    setDouble(p, "fuelConsumption", toDouble(v.substr(3)));
  if (auto v = field(mask, 8); v.size() > 1) setDouble(p, attr::kFuel, toDouble(v.substr(1)));
  setInt(p, "range", scaled(toInt(field(mask, 9)), 100));
  setInt(p, attr::kThrottle, toInt(field(mask, 10)));
  if (auto v = toDouble(field(mask, 11))) p.set(attr::kHours, roundToInt(*v * 3600000.0));
  setDouble(p, "drivingTime", toDouble(field(mask, 12)));
  setDouble(p, "idleHours", toDouble(field(mask, 13)));
  if (auto v = field(mask, 14); !v.empty() && !startsWith(v, "K")) {
    setDouble(p, "idleFuelConsumption", toDouble(stripPrefix(v, "L")));
  }
  setInt(p, "axleWeight", toInt(field(mask, 15)));
  if (auto v = toHex(field(mask, 16)))
    p.set("tachographInfo", static_cast<std::int64_t>(*v & 0xFFFFFFFF));
  if (auto v = toHex(field(mask, 17)))
    p.set("indicators", static_cast<std::int64_t>(*v & 0xFFFFFFFF));
  if (auto v = toHex(field(mask, 18))) p.set("lights", static_cast<std::int64_t>(*v & 0xFFFFFFFF));
  if (auto v = toHex(field(mask, 19))) p.set("doors", static_cast<std::int64_t>(*v & 0xFFFFFFFF));
  setDouble(p, "vehicleOverspeed", toDouble(field(mask, 20)));
  setDouble(p, "engineOverspeed", toDouble(field(mask, 21)));
  if (model == "GV350M") {
    for (unsigned b = 22; b <= 24; ++b) field(mask, b);  // impulse distance, weight, catalyst
  } else if (ceu) {
    for (unsigned b = 23; b <= 27; ++b) field(mask, b);  // engine starts, cold running, handbrake
  }
  std::uint64_t ext = 0;
  if (auto v = field(mask, 29); !v.empty()) ext = toHex(v).value_or(0);
  if (auto v = field(ext, 0); !v.empty()) {
    setDouble(p, "adBlueLevel",
              toDouble(startsWith(v, "L") || startsWith(v, "P") ? v.substr(1) : v));
  }
  setInt(p, "axleWeight1", toInt(field(ext, 1)));
  setInt(p, "axleWeight3", toInt(field(ext, 2)));
  setInt(p, "axleWeight4", toInt(field(ext, 3)));
  for (unsigned b = 4; b <= 6; ++b) field(ext, b);  // tachograph overspeed, motion, direction
  if (auto v = toInt(field(ext, 7))) p.set("adc1", static_cast<double>(*v) / 1000.0);
  for (unsigned b = 8; b <= 14; ++b) field(ext, b);  // braking factors, kick-downs, cruise, brakes
  setText(p, "driver1Card", field(ext, 15));
  setText(p, "driver2Card", field(ext, 16));
  setText(p, "driver1Name", field(ext, 17));
  setText(p, "driver2Name", field(ext, 18));
  setText(p, "registration", field(ext, 19));
  for (unsigned b = 20; b <= 25; ++b) field(ext, b);  // expansion, rapid brakes/accels, torque, ...
  if (!ceu) {
    field(ext, 26);  // tachograph driver working time masks
    field(ext, 27);
  }
  // A list with its length in the first field: skips the list.
  auto skipCounted = [&](std::size_t perItem) {
    std::string_view countField = c.peek(0);
    auto count = countField.empty() ? std::optional<std::int64_t>(0) : toInt(countField);
    if (!count || *count < 0 || *count > 1000) {
      c.fail();
      return;
    }
    c.skip(1 + static_cast<std::size_t>(*count) * perItem);
  };
  // A value mask in the first field followed by one field per set bit.
  auto skipMasked = [&]() {
    std::string_view maskField = c.peek(0);
    std::uint64_t bits = maskField.empty() ? 0 : toHex(maskField).value_or(0);
    c.skip(1 + static_cast<std::size_t>(std::popcount(bits)));
  };
  if (bit(ext, 28)) {  // DTC codes (counted only on the CEU models)
    if (ceu) {
      skipCounted(1);
    } else {
      c.skip(1);
    }
  }
  field(ext, 29);  // gaseous fuel level
  field(ext, 30);  // tachograph information expand
  std::uint64_t can = 0;
  if (auto v = field(ext, 31); !v.empty()) can = toHex(v).value_or(0);
  field(can, 0);                           // retarder usage
  field(can, 1);                           // power mode
  if (model != "GV350CEU") field(can, 2);  // tachograph timestamp
  if (ceu) {
    for (unsigned b = 4; b <= 12; ++b) field(can, b);
    field(can, 14);                    // gross vehicle weight
    if (bit(can, 15)) skipCounted(5);  // axle, wheel, pressure, temperature, status
    for (unsigned b = 16; b <= 19; ++b) field(can, b);
    if (bit(can, 3)) skipMasked();    // e-genset data
    if (bit(mask, 28)) skipMasked();  // electric vehicle data
  }
  if (model == "GV355CEU") {
    for (unsigned b = 26; b <= 27; ++b) {
      if (bit(ext, b)) skipMasked();  // tachograph working time
    }
  }
  if (c.failed()) return std::nullopt;
  if (model != "GV355CEU" && bit(mask, 30)) {
    // <GPS accuracy> (after any empty fields), then speed .. GPS time unless there is no fix.
    while (c.index() < m.size() && c.peek(0).empty()) c.skip(1);
    std::string_view accuracy = c.next();
    if (c.failed() || !toInt(accuracy)) return std::nullopt;
    if (!c.peek(0).empty()) {
      Block b;
      b.hdop = accuracy;
      b.speed = c.next();
      b.course = c.next();
      b.altitude = c.next();
      b.longitude = c.next();
      b.latitude = c.next();
      b.time = c.next();
      if (c.failed() || !applyBlock(p, b)) return std::nullopt;
    }
  }
  return Positions{std::move(p)};
}

// ---------------------------------------------------------------------------------------------
// OBD report (OBD): engine values then one location block.

Decoded decodeObd(const Message& m) {
  if (!standardHead(m)) return std::nullopt;
  auto at = [&](std::size_t i) { return m.at(i); };
  auto optDigits = [&](std::size_t i, std::size_t max) {
    return at(i).empty() || isDigits(at(i), 1, max);
  };
  std::string_view consumption = at(14);
  bool consumptionOk =
      consumption.empty() || consumption == "Inf" || consumption == "NaN" ||
      hasShape(consumption, NumberShape{false, 1, 30, NumberShape::Dot::kOptional, 0, 30});
  if (!(at(3).empty() || isVin(at(3))) || at(4).size() > 20 || !isOneOf01(at(5)) ||
      !isHex(at(6), 1, 8) || !(at(7).empty() || isVin(at(7))) || !isOneOf01(at(8)) ||
      !optDigits(9, 5) || !(at(10).empty() || isHex(at(10), 8, 8)) || !optDigits(11, 5) ||
      !optDigits(12, 3) || !(at(13).empty() || hasShape(at(13), NumberShape{true, 1, 3})) ||
      !consumptionOk || !optDigits(15, 5) || !optDigits(16, 5) ||
      !(at(17).empty() || isOneOf01(at(17))) || !optDigits(18, 3) ||
      !(at(19).empty() || isHex(at(19), 1, 200)) || !optDigits(20, 3) || !optDigits(21, 3) ||
      !optDigits(22, 3)) {
    return std::nullopt;
  }
  for (std::size_t protocolField = 1; protocolField != static_cast<std::size_t>(-1);
       --protocolField) {
    std::string_view proto = at(23);
    if (protocolField == 1 &&
        !(proto.size() == 1 &&
          (std::isdigit(static_cast<unsigned char>(proto[0])) != 0 || proto[0] == 'A'))) {
      continue;
    }
    std::size_t odometerIndex = 23 + protocolField;
    if (!isDigits(at(odometerIndex), 1, 18)) continue;
    auto block = strictBlock(m.f, odometerIndex + 1);
    if (!block || !emptyOr(at(block->next), shape::kMileage) || !endsAt(m, block->next + 1))
      continue;
    Position p = m.base();
    if (!applyStrictBlock(p, *block)) return std::nullopt;
    setInt(p, attr::kRpm, toInt(at(11)));
    setInt(p, attr::kObdSpeed, toInt(at(12)));
    setInt(p, attr::kCoolantTemp, toInt(at(13)));
    setDouble(p, "fuelConsumption", toDouble(consumption));
    setInt(p, "dtcsClearedDistance", toInt(at(15)));
    if (!at(17).empty()) p.set("odbConnect", at(17) == "1");  // Traccar's spelling of the key
    setInt(p, "dtcsNumber", toInt(at(18)));
    setText(p, "dtcsCodes", at(19));
    setInt(p, attr::kThrottle, toInt(at(20)));
    setInt(p, attr::kFuel, toInt(at(22)));
    setInt(p, "obdOdometer", scaled(toInt(at(odometerIndex)), 1000));
    if (auto km = toDouble(at(block->next))) p.set("obdOdometer", roundToInt(*km * 1000));
    return Positions{std::move(p)};
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Messages with one location block at a fixed place.

// LSW/TSW: a digital input changed: <type>,<state>, location.
Decoded decodeSwitch(const Message& m) {
  if (!standardHead(m) || !isOneOf01(m.at(4)) || !isOneOf01(m.at(5))) return std::nullopt;
  auto block = strictBlock(m.f, 6);
  if (!block || !endsAt(m, block->next)) return std::nullopt;
  Position p = m.base();
  if (!applyStrictBlock(p, *block)) return std::nullopt;
  p.set(m.type == "LSW" ? "in1" : "in2", m.at(5) == "1");
  return Positions{std::move(p)};
}

// IDA: driver identification: <rfid>, location, <mileage>.
Decoded decodeIda(const Message& m) {
  if (!standardHead(m) || !m.at(4).empty() || m.at(5).empty() || !isOneOf01(m.at(6)) ||
      m.at(7) != "1") {
    return std::nullopt;
  }
  auto block = strictBlock(m.f, 8);
  if (!block) return std::nullopt;
  // <mileage>, four reserved empty fields, <send time>, <count>.
  std::size_t i = block->next;
  if (!hasShape(m.at(i), NumberShape{false, 1, 30, NumberShape::Dot::kRequired, 1, 1}) ||
      !m.at(i + 1).empty() || !m.at(i + 2).empty() || !m.at(i + 3).empty() ||
      !m.at(i + 4).empty() || !endsAt(m, i + 5)) {
    return std::nullopt;
  }
  Position p = m.base();
  if (!applyStrictBlock(p, *block)) return std::nullopt;
  p.set("driverUniqueId", std::string(m.at(5)));
  setOdometerKm(p, m.at(i));
  return Positions{std::move(p)};
}

// DAR: driver attention warning: <warning type>,<fatigue degree>,,, location.
Decoded decodeDar(const Message& m) {
  if (!standardHead(m) || !isDigits(m.at(4), 1, 1) || !isDigits(m.at(5), 1, 2) ||
      !m.at(6).empty() || !m.at(7).empty()) {
    return std::nullopt;
  }
  auto block = strictBlock(m.f, 8);
  if (!block || !endsAfter(m, block->next)) return std::nullopt;
  Position p = m.base();
  if (!applyStrictBlock(p, *block)) return std::nullopt;
  auto warning = toInt(m.at(4)).value_or(0);
  if (warning == 1) {
    p.addAlarm("fatigueDriving");
    setInt(p, "fatigueDegree", toInt(m.at(5)));
  } else {
    p.set("warningType", warning);
  }
  return Positions{std::move(p)};
}

// BAA / BID: a Bluetooth accessory alarm: <append mask> says which optional fields precede the
// location block (their number is found by where a location block fits).
Decoded decodeAccessory(const Message& m, bool alarm) {
  if (!standardHead(m)) return std::nullopt;
  std::size_t i = 4;
  if (alarm) {
    if (!isHex(m.at(4), 1, 16) || !isDigits(m.at(5), 1, 1) || !isDigits(m.at(6), 1, 1) ||
        !isHex(m.at(7), 1, 16)) {
      return std::nullopt;
    }
    i = 8;
  } else {
    if (!isDigits(m.at(4), 1, 1) || !isDigits(m.at(5), 1, 1)) return std::nullopt;
    i = 6;
  }
  auto mask = isHex(m.at(i), 4, 4) ? toHex(m.at(i)) : std::nullopt;
  if (!mask) return std::nullopt;
  ++i;
  std::size_t available = 0;
  while (available < (alarm ? 6U : 2U) && !m.at(i + available).empty()) ++available;
  for (std::size_t optional = available + 1; optional-- > 0;) {
    auto block = strictBlock(m.f, i + optional);
    if (!block || !endsAfter(m, block->next)) continue;
    Position p = m.base();
    if (!applyStrictBlock(p, *block)) return std::nullopt;
    std::size_t k = i;
    auto nextValue = [&]() { return k < i + optional ? m.at(k++) : std::string_view(); };
    if (alarm) {
      if (bit(*mask, 0)) setText(p, "accessoryName", nextValue());
      if (bit(*mask, 1)) setText(p, "accessoryMac", nextValue());
      if (bit(*mask, 2)) setInt(p, "accessoryStatus", toInt(nextValue()));
      if (bit(*mask, 3)) {
        if (auto mv = toInt(nextValue()))
          p.set("accessoryVoltage", static_cast<double>(*mv) / 1000.0);
      }
      if (bit(*mask, 4)) setInt(p, "accessoryTemp", toInt(nextValue()));
      if (bit(*mask, 5)) setInt(p, "accessoryHumidity", toInt(nextValue()));
    } else {
      if (bit(*mask, 1)) setText(p, "accessoryMac", nextValue());
      if (bit(*mask, 3)) {
        if (auto mv = toInt(nextValue()))
          p.set("accessoryVoltage", static_cast<double>(*mv) / 1000.0);
      }
    }
    return Positions{std::move(p)};
  }
  return std::nullopt;
}

// LSA: light sensor: location, <ber>,<light level>,<battery %>,<mode>,<motion>,<temperature>.
Decoded decodeLightSensor(const Message& m) {
  if (!standardHead(m) || !isDigits(m.at(4), 1, 1) || !isDigits(m.at(5), 1, 1) ||
      !isDigits(m.at(6), 1, 10)) {
    return std::nullopt;
  }
  auto block = strictBlock(m.f, 7);
  if (!block) return std::nullopt;
  std::size_t i = block->next;
  if (!isDigits(m.at(i), 1, 10) || !isDigits(m.at(i + 1), 1, 1) || !isDigits(m.at(i + 2), 1, 3) ||
      !isOneOf01(m.at(i + 3)) || !(m.at(i + 4).empty() || isOneOf01(m.at(i + 4))) ||
      !emptyOr(m.at(i + 5), NumberShape{true, 1, 10, NumberShape::Dot::kRequired, 1, 1}) ||
      !endsAt(m, i + 6)) {
    return std::nullopt;
  }
  Position p = m.base();
  if (!applyStrictBlock(p, *block)) return std::nullopt;
  setInt(p, "lightLevel", toInt(m.at(i + 1)));
  setInt(p, attr::kBatteryLevel, toInt(m.at(i + 2)));
  setDouble(p, "temp1", toDouble(m.at(i + 5)));
  return Positions{std::move(p)};
}

// DAT: transparent data from a serial accessory, then a location block.
Decoded decodeData(const Message& m) {
  Cursor c(m.f, 4);
  c.skip(3);  // report type, 2 reserved
  Position p = m.base();
  setText(p, "data", c.next());
  readLocation(c, m.model, p);
  if (c.failed()) return std::nullopt;
  return Positions{std::move(p)};
}

// ---------------------------------------------------------------------------------------------
// Messages without a location block.

// PNA/PFA: power on/off.
Decoded decodePower(const Message& m) {
  if (!standardHead(m) || m.size() != 6 || !isDigits(m.at(4), 14, 14) || !isHex(m.at(5), 4, 4)) {
    return std::nullopt;
  }
  Position p = m.base();
  p.hasLocation = false;
  p.addAlarm(m.type == "PNA" ? "powerOn" : "powerOff");
  return Positions{std::move(p)};
}

// VER: <device type>,<firmware>,<hardware>.
Decoded decodeVersion(const Message& m) {
  if (!standardHead(m) || m.size() != 9 || !isHex(m.at(5), 4, 4) || !isHex(m.at(6), 4, 4) ||
      !isDigits(m.at(7), 14, 14) || !isHex(m.at(8), 4, 4)) {
    return std::nullopt;
  }
  Position p = m.base();
  p.hasLocation = false;
  setText(p, "deviceType", m.at(4));
  p.set("versionFw", static_cast<std::int64_t>(*toHex(m.at(5))));
  p.set("versionHw", static_cast<std::int64_t>(*toHex(m.at(6))));
  return Positions{std::move(p)};
}

// WIF: Wi-Fi access points instead of GPS: <count>,(<mac>,<rssi>,,,)*,,,,<battery %>.
Decoded decodeWifi(const Message& m) {
  if (!standardHead(m) || !isDigits(m.at(4), 1, 3)) return std::nullopt;
  std::size_t i = 5;
  while (isHex(m.at(i), 12, 12) && hasShape(m.at(i + 1), NumberShape{true, 1, 10}) &&
         m.at(i + 2).empty() && m.at(i + 3).empty() && m.at(i + 4).empty()) {
    i += 5;
  }
  if (i == 5 || !m.at(i).empty() || !m.at(i + 1).empty() || !m.at(i + 2).empty() ||
      !m.at(i + 3).empty() || !isDigits(m.at(i + 4), 1, 3) || !endsAt(m, i + 5)) {
    return std::nullopt;
  }
  Position p = m.base();
  p.hasLocation = false;
  setInt(p, attr::kBatteryLevel, toInt(m.at(i + 4)));
  return Positions{std::move(p)};
}

// GSM: neighbouring cells instead of GPS.
Decoded decodeCells(const Message& m) {
  std::string_view fix = m.at(3);
  if (!standardHead(m) || !(fix == "STR" || fix == "CTN" || fix == "NMR" || fix == "RTL") ||
      !endsAfter(m, 4)) {
    return std::nullopt;
  }
  Position p = m.base();
  p.hasLocation = false;
  return Positions{std::move(p)};
}

// DTT: transparent data (hex); a fuel sensor's "COMB,<id>,<fuel>,..." line gives the fuel.
Decoded decodeTransparent(const Message& m) {
  if (!standardHead(m) || m.size() != 11 || !m.at(4).empty() || !m.at(5).empty() ||
      !isDigits(m.at(6), 1, 1) || !isDigits(m.at(7), 1, 10) || !isHex(m.at(8), 1, 100000) ||
      !endsAt(m, 9)) {
    return std::nullopt;
  }
  auto data = fromHex(m.at(8));
  if (!data) return std::nullopt;
  Position p = m.base();
  p.hasLocation = false;
  if (data->find("COMB") != std::string::npos) {
    Fields parts = splitFields(*data);
    if (parts.size() < 3) return std::nullopt;
    setDouble(p, attr::kFuel, toDouble(parts[2]));
  } else {
    p.set(attr::kResult, *data);
  }
  return Positions{std::move(p)};
}

// LBS: cell towers only, with the battery level.
Decoded decodeLbs(const Message& m) {
  if (m.size() < 8) return std::nullopt;
  auto battery = toInt(m.at(6));
  if (!battery) return std::nullopt;
  Position p = m.base();
  p.hasLocation = false;
  p.set(attr::kBatteryLevel, *battery);
  return Positions{std::move(p)};
}

// ---------------------------------------------------------------------------------------------
// Generic reader for every other event (SOS, SPD, STT, BPL, ...) and for layouts the readers
// above do not recognise: finds a location block by its two 6-decimal coordinates.

bool isCoordinate(std::string_view s) {
  return hasShape(s, NumberShape{true, 1, 3, NumberShape::Dot::kRequired, 6, 6});
}

std::optional<Position> decodeGeneric(const Message& m) {
  const Fields& f = m.f;
  std::size_t n = f.size();
  Position p = m.base();
  p.hasLocation = false;
  if (auto reportType = isHex(m.at(5), 1, 2) ? toHex(m.at(5)) : std::nullopt) {
    std::uint64_t type = *reportType;
    std::string_view t = m.type;
    if (t == "STR" || t == "CTN") {
      if ((m.model == "GL500" || m.model == "GL530") && !m.at(8).empty()) {
        setInt(p, attr::kBatteryLevel, toInt(m.at(8)));
      }
    } else if (t == "NMR") {
      p.set(attr::kMotion, type == 1);
    } else if (t == "DIS") {
      p.set("in" + std::to_string(type / 0x10), type % 0x10 == 1);
    } else if (t == "IGL") {
      p.set(attr::kIgnition, type % 0x10 == 1);
    } else if (t == "HBM") {
      switch (type % 0x10) {
        case 0:
        case 3:
          p.addAlarm("hardBraking");
          break;
        case 1:
        case 4:
          p.addAlarm("hardAcceleration");
          break;
        case 2:
          p.addAlarm("hardCornering");
          break;
        default:
          break;
      }
    }
  }
  bool located = false;
  for (std::size_t i = 7; i + 2 < n && !located; ++i) {
    if (!isCoordinate(f[i]) || !isCoordinate(f[i + 1])) continue;
    // <hdop>,<speed>,<azimuth>,<altitude> precede the coordinates, the GPS time follows.
    Block b{f[i - 4], f[i - 3], f[i - 2], f[i - 1], f[i], f[i + 1], f[i + 2], {}, 0};
    Position candidate = p;
    if (applyBlock(candidate, b) && candidate.hasLocation) {
      p = std::move(candidate);
      located = true;
    }
  }
  // A cell tower <mcc>,<mnc>,<lac>,<cell id> counts as content even without a fix.
  bool cell = false;
  for (std::size_t i = 2; i + 3 < n && !cell; ++i) {
    cell = isDigits(f[i], 4, 4) && isDigits(f[i + 1], 4, 4) && isHex(f[i + 2], 4, 4) &&
           isHex(f[i + 3], 4, 8);
  }
  if (located && n >= 3 && isDigits(f[n - 3], 1, 3) && isDigits(f[n - 2], 14, 14)) {
    setInt(p, attr::kBatteryLevel, toInt(f[n - 3]));
  }
  std::string_view t = m.type;
  if (t == "SOS") p.addAlarm("sos");
  if (t == "SPD") p.addAlarm("overspeed");
  if (t == "TOW") p.addAlarm("tow");
  if (t == "IDL") p.addAlarm("idle");
  if (t == "PNA") p.addAlarm("powerOn");
  if (t == "PFA") p.addAlarm("powerOff");
  if (t == "EPN" || t == "MPN") p.addAlarm("powerRestored");
  if (t == "EPF" || t == "MPF") p.addAlarm("powerCut");
  if (t == "BPL") p.addAlarm("lowBattery");
  if (t == "STT") p.addAlarm("movement");
  if (t == "SWG") p.addAlarm("geofence");
  if (t == "TMP" || t == "TEM") p.addAlarm("temperature");
  if (t == "JDR" || t == "JDS") p.addAlarm("jamming");
  if (p.attributes.empty() && !located && !cell) return std::nullopt;
  return p;
}

Decoded decodeByType(const Message& m) {
  std::string_view t = m.type;
  if (t == "FRI" || t == "GEO" || t == "RTL" || t == "DOG") return decodeFri(m);
  if (t == "ERI") return decodeEri(m);
  if (t == "IGN" || t == "IGF" || t == "VGN" || t == "VGF") return decodeIgnition(m);
  if (t == "INF") return decodeInf(m);
  if (t == "CAN") return decodeCan(m);
  if (t == "OBD") return decodeObd(m);
  if (t == "LSW" || t == "TSW") return decodeSwitch(m);
  if (t == "IDA") return decodeIda(m);
  if (t == "WIF") return decodeWifi(m);
  if (t == "GSM") return decodeCells(m);
  if (t == "VER") return decodeVersion(m);
  if (t == "PNA" || t == "PFA") return decodePower(m);
  if (t == "DAR") return decodeDar(m);
  if (t == "DTT") return decodeTransparent(m);
  if (t == "BAA") return decodeAccessory(m, true);
  if (t == "BID") return decodeAccessory(m, false);
  if (t == "LSA") return decodeLightSensor(m);
  if (t == "LBS") return decodeLbs(m);
  if (t == "DAT") return decodeData(m);
  return std::nullopt;
}

// The device id: the IMEI field, or the field before it in the few messages without a version.
std::string textDeviceId(const Fields& f) {
  if (f.size() > 2 && isImei(f[2])) return std::string(f[2]);
  if (f.size() > 1 && isImei(f[1])) return std::string(f[1]);
  return f.size() > 2 ? std::string(f[2]) : std::string();
}

}  // namespace

std::string deviceModel(const SessionState& session, std::string_view protocolVersion) {
  if (const std::string* declared = session.getExtra("model");
      declared != nullptr && !declared->empty()) {
    std::string upper = *declared;
    for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return upper;
  }
  std::string_view prefix =
      protocolVersion.size() > 6 ? protocolVersion.substr(0, 6) : protocolVersion.substr(0, 2);
  for (const auto& entry : kModels) {
    if (entry.prefix == prefix) return std::string(entry.model);
  }
  return {};
}

DecodeResult decodeText(std::string_view frame, SessionState& session) {
  DecodeResult result;
  while (!frame.empty() && (frame.back() == '$' || frame.back() == '\0')) frame.remove_suffix(1);
  std::size_t typeIndex = frame.find(":GT");
  if (typeIndex == std::string_view::npos || typeIndex + 6 > frame.size()) {
    result.note = "not a Queclink message";
    return result;
  }
  Fields f = splitFields(frame);
  std::string id = textDeviceId(f);
  if (id.empty()) {
    result.note = "no device id";
    return result;
  }
  if (session.deviceId != id && !session.identify(id)) {
    result.note = "not identified";
    return result;
  }
  std::string_view type = frame.substr(typeIndex + 3, 3);
  Message m{f, f[0], type, deviceModel(session, f.size() > 1 ? f[1] : std::string_view()), id};
  // The send time (second-to-last field); 0 when absent.
  std::int64_t sendTime = f.size() >= 2 ? toTime(f[f.size() - 2]).value_or(0) : 0;

  if (startsWith(frame, "+ACK")) {
    if (startsWith(frame, "+ACK:GTHBD")) {
      // Heartbeat: echo the protocol version and count number.
      result.response = "+SACK:GTHBD," + std::string(m.at(1)) + "," + std::string(f.back()) + "$";
    } else {
      // A command acknowledgement: "+ACK:GTOUT,<version>,<imei>,<name>,<id>,<send time>,<count>".
      Position p = m.base();
      p.hasLocation = false;
      p.set(attr::kResult, std::string(f[0]));
      p.deviceTimeUs = sendTime;
      result.positions.push_back(std::move(p));
      result.commandAnswer = CommandAnswer{std::string(frame)};
    }
  } else {
    Decoded decoded = decodeByType(m);
    if (!decoded) {
      if (auto p = decodeGeneric(m)) decoded = Positions{std::move(*p)};
    }
    if (decoded) {
      for (Position& p : *decoded) {
        p.set(attr::kType, std::string(type));
        if (p.deviceTimeUs == 0) p.deviceTimeUs = sendTime;
        result.positions.push_back(std::move(p));
      }
    }
    if (result.positions.empty()) result.note = "no position in message";
  }
  // Optional blanket acknowledgement (session extra "ack" = "true", Traccar's gl200.ack).
  if (const std::string* ack = session.getExtra("ack"); ack != nullptr && *ack == "true") {
    result.response += "+SACK:" + std::string(f.back()) + "$";
  }
  return result;
}

}  // namespace tern::codec::trackers::gl200
