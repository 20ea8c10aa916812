// GPS103 / Coban "imei:" text protocol (GPS102/103/104, TK103A/B, TK303, GPS306 and clones).
//
// Frames are ASCII sentences ended by ';', '*', LF or CR LF (the delimiter stays in the frame).
//   ##,imei:<imei>,A;                     login → "LOAD"
//   <imei>;                               heartbeat → "ON"
//   imei:<imei>,<keyword>,<local yymmddhhmm>,<phone|rfid>,F,<hhmmss.sss UTC>,A,<ddmm.mmmm>,N,
//        <dddmm.mmmm>,E,<knots>,<course>[,<alt>,<acc>,<door>,<fuel1%>,<fuel2%>,<temp>];
//   imei:<imei>,<keyword>,<local time>,<phone>,L,,,<lac>,,<cid>,,,;   no GPS fix
//   imei:<imei>,OBD,<yymmddhhmmss>,<odometer>,...;                    OBD data
//   imei:<imei>,<name>,<event>,...,<hhmmss>,<ddmmyy>,...,*            alternative format
// The device sends its local time with the UTC fix time beside it; the difference is the device's
// time zone, learnt per session and applied to sentences that carry only local time.
#include "codec/trackers/gps103/gps103.h"

#include <charconv>
#include <cmath>
#include <vector>

#include "codec/trackers/util.h"

namespace tern::codec::trackers {

namespace {

constexpr std::size_t kMaxFrameSize = 8 * 1024;  // as registered in registry.cpp
constexpr std::string_view kImeiTag = "imei:";
constexpr std::size_t kLoginMaxLength = 30;  // a short sentence with "imei:" is a login
constexpr std::int64_t kMicros = 1'000'000;
constexpr std::int64_t kMsPerHour = 3'600'000;

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

bool isDelimiter(char c) {
  return c == ';' || c == '*' || c == '\n';
}

// Integer with an optional sign; nullopt for anything else (empty, letters, overflow).
std::optional<std::int64_t> parseInt(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

// Plain decimal number ("12", "-0.1", "+28.0"); no exponents, no inf/nan.
std::optional<double> parseDecimal(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  std::string_view digits = s;
  if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
  bool seenDigit = false;
  bool seenDot = false;
  for (char c : digits) {
    if (isDigit(c)) {
      seenDigit = true;
    } else if (c == '.' && !seenDot) {
      seenDot = true;
    } else {
      return std::nullopt;
    }
  }
  if (!seenDigit) return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

int digitsValue(std::string_view s) {
  int value = 0;
  for (char c : s) value = value * 10 + (c - '0');
  return value;
}

std::vector<std::string_view> splitFields(std::string_view s, char separator) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    std::size_t pos = s.find(separator, start);
    if (pos == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

// Comma-separated fields with bounds-checked access (a missing field reads as empty).
class Fields {
 public:
  explicit Fields(std::string_view s) : items_(splitFields(s, ',')) {}
  std::string_view at(std::size_t i) const {
    return i < items_.size() ? items_[i] : std::string_view();
  }
  std::size_t size() const { return items_.size(); }

 private:
  std::vector<std::string_view> items_;
};

struct LocalStamp {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
};

// "yymmddhhmm", "yymmddhhmmss" or "yy/mm/dd hh:mm" (the device's local time).
std::optional<LocalStamp> parseLocalStamp(std::string_view s) {
  std::string digits;
  for (char c : s) {
    if (isDigit(c)) {
      digits.push_back(c);
    } else if (c != '/' && c != ' ' && c != ':') {
      return std::nullopt;
    }
  }
  if (digits.size() != 10 && digits.size() != 12) return std::nullopt;
  std::string_view d = digits;
  LocalStamp t;
  t.year = 2000 + digitsValue(d.substr(0, 2));
  t.month = digitsValue(d.substr(2, 2));
  t.day = digitsValue(d.substr(4, 2));
  t.hour = digitsValue(d.substr(6, 2));
  t.minute = digitsValue(d.substr(8, 2));
  if (digits.size() == 12) t.second = digitsValue(d.substr(10, 2));
  if (!civilToMicros(t.year, t.month, t.day, t.hour, t.minute, t.second)) return std::nullopt;
  return t;
}

struct UtcTime {
  int hour = 0, minute = 0, second = 0, millis = 0;
};

// "hhmmss" or "hhmmss.sss" (UTC time of the fix).
std::optional<UtcTime> parseUtcTime(std::string_view s) {
  if (s.size() < 6 || !allDigits(s.substr(0, 6))) return std::nullopt;
  UtcTime t;
  t.hour = digitsValue(s.substr(0, 2));
  t.minute = digitsValue(s.substr(2, 2));
  t.second = digitsValue(s.substr(4, 2));
  if (s.size() > 6) {
    std::string_view fraction = s.substr(7);
    if (s[6] != '.' || !allDigits(fraction)) return std::nullopt;
    int scale = 100;
    for (std::size_t i = 0; i < fraction.size() && i < 3; ++i) {
      t.millis += (fraction[i] - '0') * scale;
      scale /= 10;
    }
  }
  if (t.hour > 23 || t.minute > 59 || t.second > 59) return std::nullopt;
  return t;
}

// NMEA-style "ddmm.mmmm" / "dddmm.mmmm" to degrees (unsigned).
std::optional<double> parseDegreesMinutes(std::string_view s) {
  std::size_t dot = s.find('.');
  if (dot == std::string_view::npos || dot < 3 || !allDigits(s.substr(0, dot)) ||
      !allDigits(s.substr(dot + 1))) {
    return std::nullopt;
  }
  auto degrees = parseInt(s.substr(0, dot - 2));
  auto minutes = parseDecimal(s.substr(dot - 2));
  if (!degrees || !minutes || *minutes >= 60) return std::nullopt;
  return static_cast<double>(*degrees) + *minutes / 60;
}

bool isHemisphere(std::string_view s, char positive, char negative) {
  return s.size() == 1 && (s[0] == positive || s[0] == negative);
}

// "10.5%", "0.0%" or "51.6"; a bare integer is something else (Traccar ignores it too).
std::optional<double> parseFuel(std::string_view s) {
  if (!s.empty() && s.back() == '%') {
    s.remove_suffix(1);
  } else if (s.find('.') == std::string_view::npos) {
    return std::nullopt;
  }
  return parseDecimal(s);
}

std::optional<bool> parseFlag(std::string_view s) {
  if (s == "0") return false;
  if (s == "1") return true;
  return std::nullopt;
}

bool isPlaceholder(std::string_view s) {
  if (s.empty()) return true;
  for (char c : s) {
    if (c != '-') return false;
  }
  return true;
}

// Keyword → Traccar alarm name, or empty.
std::string_view alarmFor(std::string_view keyword) {
  if (keyword.substr(0, 2) == "T:") return "temperature";
  if (keyword.substr(0, 3) == "oil") return "fuelLeak";
  struct Entry {
    std::string_view keyword, alarm;
  };
  static constexpr Entry kAlarms[] = {
      {"help me", "sos"},         {"low battery", "lowBattery"},    {"stockade", "geofence"},
      {"move", "movement"},       {"speed", "overspeed"},           {"door alarm", "door"},
      {"ac alarm", "powerCut"},   {"accident alarm", "accident"},   {"sensor alarm", "vibration"},
      {"bonnet alarm", "bonnet"}, {"footbrake alarm", "footBrake"}, {"DTC", "fault"},
  };
  for (const auto& entry : kAlarms) {
    if (entry.keyword == keyword) return entry.alarm;
  }
  return {};
}

std::int64_t minutesToMicros(std::int64_t minutes) {
  return minutes * 60 * kMicros;
}

// A time read in the device's local clock, shifted by the offset learnt on this session (UTC
// until one is learnt, as Traccar's default decoder time zone).
std::int64_t localToUtc(std::int64_t localMicros, const SessionState& session) {
  return localMicros - std::int64_t{session.timeZoneOffsetSeconds.value_or(0)} * kMicros;
}

class Gps103Codec final : public ProtocolCodec {
 public:
  FrameResult splitFrame(std::string_view buffer) override;
  DecodeResult decode(std::string_view frame, SessionState& session,
                      std::int64_t serverTimeUs) override;
  std::optional<std::string> encodeCommand(const Command& command,
                                           const SessionState& session) override;

 private:
  enum class Start : std::uint8_t { kYes, kNo, kMaybe };
  static Start frameStart(std::string_view buffer);
  static bool identify(SessionState& session, const std::string& imei);
  static Position newPosition(const std::string& imei);
  static void decodeRegular(const Fields& f, const std::string& imei, SessionState& session,
                            DecodeResult& result);
  static void decodeObd(const Fields& f, const std::string& imei, const SessionState& session,
                        DecodeResult& result);
  static void decodeAlternative(const Fields& f, const std::string& imei, DecodeResult& result);
};

// A sentence starts with "imei:", "##," (login) or a digit (heartbeat / IMEI-prefixed sentence).
Gps103Codec::Start Gps103Codec::frameStart(std::string_view buffer) {
  char c = buffer.front();
  if (isDigit(c)) return Start::kYes;
  std::string_view expected;
  if (c == '#') {
    expected = "##,";
  } else if (c == 'i') {
    expected = kImeiTag;
  } else {
    return Start::kNo;
  }
  std::size_t n = std::min(expected.size(), buffer.size());
  if (buffer.substr(0, n) != expected.substr(0, n)) return Start::kNo;
  return n == expected.size() ? Start::kYes : Start::kMaybe;
}

FrameResult Gps103Codec::splitFrame(std::string_view buffer) {
  if (buffer.empty()) return {FrameStatus::kNeedMore, 0};
  switch (frameStart(buffer)) {
    case Start::kMaybe:
      return {FrameStatus::kNeedMore, 0};
    case Start::kNo: {
      // Drop everything up to the next byte that could start a sentence.
      std::size_t skip = 1;
      while (skip < buffer.size()) {
        char c = buffer[skip];
        if (isDigit(c) || c == '#' || c == 'i') break;
        ++skip;
      }
      return {FrameStatus::kSkip, skip};
    }
    case Start::kYes:
      break;
  }
  // A sentence that lost its delimiter still ends where the next one visibly begins: a sentence
  // names "imei:" once (after "##," in a login, after the IMEI digits in a prefixed one), so a
  // second "imei:" or a "##," starts the next; a login is always "##,imei:<digits>,A".
  bool login = buffer.substr(0, 3) == "##,";
  bool ownTag = false;
  std::size_t limit = std::min(buffer.size(), kMaxFrameSize);
  for (std::size_t i = 0; i < limit; ++i) {
    char c = buffer[i];
    if (isDelimiter(c)) return {FrameStatus::kOk, i + 1};
    if (i > 0 && c == '#' && buffer.substr(i, 3) == "##,") return {FrameStatus::kOk, i};
    if (c == 'i' && buffer.substr(i, kImeiTag.size()) == kImeiTag) {
      if (ownTag) return {FrameStatus::kOk, i};
      ownTag = true;
      if (login) {
        std::size_t end = i + kImeiTag.size();
        while (end < buffer.size() && isDigit(buffer[end])) ++end;
        if (buffer.substr(end, 2) == ",A" && end + 2 < buffer.size() &&
            !isDelimiter(buffer[end + 2])) {
          return {FrameStatus::kOk, end + 2};
        }
      }
    }
  }
  if (buffer.size() >= kMaxFrameSize) return {FrameStatus::kTooLarge, 0};
  return {FrameStatus::kNeedMore, 0};
}

bool Gps103Codec::identify(SessionState& session, const std::string& imei) {
  if (session.deviceId == imei) return true;
  if (!session.identify(imei)) return false;
  // A time zone learnt from another device does not apply to this one.
  session.timeZoneOffsetSeconds.reset();
  return true;
}

Position Gps103Codec::newPosition(const std::string& imei) {
  Position p;
  p.protocol = "gps103";
  p.deviceId = imei;
  return p;
}

DecodeResult Gps103Codec::decode(std::string_view frame, SessionState& session,
                                 std::int64_t serverTimeUs) {
  (void)serverTimeUs;
  DecodeResult result;
  std::size_t tag = frame.find(kImeiTag);

  // Login: "##,imei:<imei>,A;" (Traccar: any short sentence naming an IMEI) → LOAD.
  if (tag != std::string_view::npos && frame.size() <= kLoginMaxLength) {
    result.response = "LOAD";
    std::string_view rest = frame.substr(tag + kImeiTag.size());
    std::size_t comma = rest.find(',');
    if (comma != std::string_view::npos && allDigits(rest.substr(0, comma))) {
      identify(session, std::string(rest.substr(0, comma)));
    }
    result.note = "login";
    return result;
  }

  std::string_view sentence = frame;
  if (!frame.empty() && isDigit(frame.front())) {
    // Heartbeat "<imei>;" → ON; some firmwares prefix a normal sentence with the IMEI.
    result.response = "ON";
    if (tag == std::string_view::npos) {
      result.note = "heartbeat";
      return result;
    }
    sentence = frame.substr(tag);
  }
  if (sentence.substr(0, kImeiTag.size()) != kImeiTag) {
    result.note = "unknown sentence";
    return result;
  }
  sentence.remove_prefix(kImeiTag.size());

  // Strip the delimiter; a trailing '*' marks the alternative format.
  while (!sentence.empty() &&
         (sentence.back() == '\n' || sentence.back() == '\r' || sentence.back() == ';')) {
    sentence.remove_suffix(1);
  }
  bool alternative = !sentence.empty() && sentence.back() == '*';
  if (alternative) sentence.remove_suffix(1);

  Fields f(sentence);
  if (!allDigits(f.at(0))) {
    result.note = "no imei";
    return result;
  }
  std::string imei(f.at(0));
  std::string_view keyword = f.at(1);

  if (!identify(session, imei)) {
    result.note = "device not accepted";
    return result;
  }
  if (keyword == "vr") {
    // Photo data packets: Tern does not assemble camera pictures.
    result.note = "photo not supported";
    return result;
  }
  if (keyword.find("OBD") != std::string_view::npos) {
    decodeObd(f, imei, session, result);
  } else if (alternative) {
    decodeAlternative(f, imei, result);
  } else {
    decodeRegular(f, imei, session, result);
  }
  return result;
}

void Gps103Codec::decodeRegular(const Fields& f, const std::string& imei, SessionState& session,
                                DecodeResult& result) {
  std::string_view keyword = f.at(1);
  std::string_view mode = f.at(4);
  if (f.size() < 5 || (mode != "F" && mode != "L")) {
    result.note = "unrecognized sentence";
    return;
  }
  Position p = newPosition(imei);

  std::string_view alarm = alarmFor(keyword);
  if (!alarm.empty()) p.addAlarm(alarm);
  if (keyword == "acc on") {
    p.set(attr::kIgnition, true);
  } else if (keyword == "acc off") {
    p.set(attr::kIgnition, false);
  } else if (keyword.substr(0, 2) == "T:") {
    if (auto t = parseDecimal(keyword.substr(2))) p.set("temp1", *t);
  } else if (keyword.substr(0, 4) == "oil ") {
    if (auto level = parseDecimal(keyword.substr(4))) p.set(attr::kFuel, *level);
  } else if (keyword == "rfid") {
    if (!f.at(3).empty()) p.set("driverUniqueId", std::string(f.at(3)));
  } else if (alarm.empty() && !keyword.empty() && keyword != "tracker" &&
             keyword.substr(0, 2) != "vt") {
    // Any other keyword is reported as the event (e.g. "001", "acc alarm").
    p.set(attr::kEvent, std::string(keyword));
  }
  // SOS is acknowledged once the sentence decoded (as Traccar, after its pattern matched).
  auto emit = [&](Position&& position) {
    if (keyword == "help me") result.response += "**,imei:" + imei + ",E;";
    result.positions.push_back(std::move(position));
  };

  std::optional<LocalStamp> local = parseLocalStamp(f.at(2));

  if (mode == "L") {
    // No fix: only cell data (LAC/CID, not modelled) and the local time.
    p.hasLocation = false;
    if (local) {
      auto t = civilToMicros(local->year, local->month, local->day, local->hour, local->minute,
                             local->second);
      if (t) p.deviceTimeUs = localToUtc(*t, session);
    }
    emit(std::move(p));
    return;
  }

  std::optional<UtcTime> utc = parseUtcTime(f.at(5));
  if (local && utc) {
    // The local hh:mm against the UTC hh:mm gives the device's offset; the date comes from the
    // local stamp, so the UTC time is the local hh:mm (+ UTC seconds) minus that offset.
    int delta = (local->hour - utc->hour) * 60 + (local->minute - utc->minute);
    if (delta <= -12 * 60) {
      delta += 24 * 60;
    } else if (delta > 12 * 60) {
      delta -= 24 * 60;
    }
    auto t = civilToMicros(local->year, local->month, local->day, local->hour, local->minute,
                           utc->second, utc->millis);
    if (t) p.deviceTimeUs = *t - minutesToMicros(delta);
    // Time zones are whole quarter hours; the two clocks can differ by a minute.
    session.timeZoneOffsetSeconds = static_cast<std::int32_t>(std::lround(delta / 15.0) * 15 * 60);
  } else if (local) {
    auto t = civilToMicros(local->year, local->month, local->day, local->hour, local->minute,
                           local->second);
    if (t) p.deviceTimeUs = localToUtc(*t, session);
  }

  std::string_view validity = f.at(6);
  if (validity != "A" && validity != "V") {
    result.note = "bad validity";
    return;
  }
  p.valid = validity == "A";

  // Hemispheres come after the number, sometimes before it, sometimes not at all.
  std::size_t i = 7;
  char latHemisphere = 'N';
  bool latBefore = isHemisphere(f.at(i), 'N', 'S');
  if (latBefore) latHemisphere = f.at(i++)[0];
  auto latitude = parseDegreesMinutes(f.at(i++));
  if (!latBefore && isHemisphere(f.at(i), 'N', 'S')) latHemisphere = f.at(i++)[0];
  char lonHemisphere = 'E';
  bool lonBefore = isHemisphere(f.at(i), 'E', 'W');
  if (lonBefore) lonHemisphere = f.at(i++)[0];
  auto longitude = parseDegreesMinutes(f.at(i++));
  if (!lonBefore) {
    if (isHemisphere(f.at(i), 'E', 'W')) {
      lonHemisphere = f.at(i++)[0];
    } else if (f.at(i).empty() && i < f.size()) {
      ++i;  // an empty hemisphere field
    }
  }
  if (!latitude || !longitude || *latitude > 90 || *longitude > 180) {
    result.note = "bad coordinates";
    return;
  }
  p.latitude = latHemisphere == 'S' ? -*latitude : *latitude;
  p.longitude = lonHemisphere == 'W' ? -*longitude : *longitude;

  if (auto knots = parseDecimal(f.at(i++)); knots && *knots >= 0) p.speedKmh = *knots * kKnotsToKmh;
  if (auto course = parseDecimal(f.at(i++)); course && *course >= 0 && *course <= 360) {
    p.course = *course;
  }
  if (auto altitude = parseDecimal(f.at(i++))) p.altitude = *altitude;
  if (auto acc = parseFlag(f.at(i++))) p.set(attr::kIgnition, *acc);
  if (auto door = parseFlag(f.at(i++))) p.set("door", *door);
  if (auto fuel = parseFuel(f.at(i++))) p.set("fuel1", *fuel);
  if (auto fuel = parseFuel(f.at(i++))) p.set("fuel2", *fuel);
  std::string_view temp = f.at(i);
  if (auto whole = parseInt(temp)) {
    p.set("temp1", *whole);
  } else if (auto fraction = parseDecimal(temp)) {
    p.set("temp1", *fraction);
  }
  emit(std::move(p));
}

// imei:<imei>,OBD,<yymmddhhmmss>,<odometer>,<fuel instant>,<fuel avg>,<hours>,<speed>,<load%>,
//   <coolant>,<throttle%>,<rpm>,<battery V>,<DTC>,...
void Gps103Codec::decodeObd(const Fields& f, const std::string& imei, const SessionState& session,
                            DecodeResult& result) {
  std::string_view stamp = f.at(2);
  std::string_view speed = f.at(7);
  std::string_view load = f.at(8);
  std::string_view throttle = f.at(10);
  std::string_view rpm = f.at(11);
  auto battery = parseDecimal(f.at(12));
  auto local = stamp.size() == 12 ? parseLocalStamp(stamp) : std::nullopt;
  // The fields Traccar requires; a sentence without them is dropped.
  if (!local || !allDigits(speed) || load.size() < 2 || load.back() != '%' ||
      !parseDecimal(load.substr(0, load.size() - 1)) || throttle.size() < 2 ||
      throttle.back() != '%' || !parseDecimal(throttle.substr(0, throttle.size() - 1)) ||
      !allDigits(rpm) || !battery || f.at(12).find('.') == std::string_view::npos) {
    result.note = "bad OBD sentence";
    return;
  }
  Position p = newPosition(imei);
  p.hasLocation = false;
  auto t = civilToMicros(local->year, local->month, local->day, local->hour, local->minute,
                         local->second);
  if (t) p.deviceTimeUs = localToUtc(*t, session);

  p.set(attr::kOdometer, parseInt(f.at(3)).value_or(0));
  p.set("fuelConsumption", parseDecimal(f.at(5)).value_or(0.0));
  if (auto hours = parseInt(f.at(6)); hours && *hours >= 0 && *hours < kMsPerHour) {
    p.set(attr::kHours, *hours * kMsPerHour);
  }
  p.set(attr::kObdSpeed, parseInt(speed).value_or(0));
  p.set(attr::kEngineLoad, std::string(load));  // Traccar keeps the "%" text
  if (auto coolant = parseInt(f.at(9))) p.set(attr::kCoolantTemp, *coolant);
  p.set(attr::kThrottle, std::string(throttle));
  p.set(attr::kRpm, parseInt(rpm).value_or(0));
  p.set(attr::kBattery, *battery);
  std::string dtcs;
  for (std::size_t i = 13; i < f.size(); ++i) {
    if (f.at(i).empty()) continue;
    if (!dtcs.empty()) dtcs += ',';
    dtcs += f.at(i);
  }
  if (!dtcs.empty()) p.set(attr::kDtcs, std::move(dtcs));
  result.positions.push_back(std::move(p));
}

// imei:<imei>,<name>,<event>,<sensor id>,<sensor V>,<hhmmss>,<ddmmyy>,<rssi>,<gps 0/1>,<lat>,<lon>,
//   <speed km/h>,<course>,<alt>,<hdop>,<sats>,<acc>,<charge>,<error>,*
void Gps103Codec::decodeAlternative(const Fields& f, const std::string& imei,
                                    DecodeResult& result) {
  std::string_view time = f.at(5);
  std::string_view date = f.at(6);
  auto latitude = parseDecimal(f.at(9));
  auto longitude = parseDecimal(f.at(10));
  if (time.size() != 6 || !allDigits(time) || date.size() != 6 || !allDigits(date) || !latitude ||
      !longitude || std::fabs(*latitude) > 90 || std::fabs(*longitude) > 180) {
    result.note = "bad alternative sentence";
    return;
  }
  auto t = civilToMicros(2000 + digitsValue(date.substr(4, 2)), digitsValue(date.substr(2, 2)),
                         digitsValue(date.substr(0, 2)), digitsValue(time.substr(0, 2)),
                         digitsValue(time.substr(2, 2)), digitsValue(time.substr(4, 2)));
  Position p = newPosition(imei);
  if (t) p.deviceTimeUs = *t;  // this format is UTC
  if (!isPlaceholder(f.at(2))) p.set(attr::kEvent, std::string(f.at(2)));
  if (!isPlaceholder(f.at(3))) p.set("sensorId", std::string(f.at(3)));
  if (auto volts = parseDecimal(f.at(4))) p.set("sensorVoltage", *volts);
  if (auto rssi = parseInt(f.at(7))) p.set(attr::kRssi, *rssi);
  if (auto fix = parseInt(f.at(8))) p.valid = *fix > 0;
  p.latitude = *latitude;
  p.longitude = *longitude;
  if (auto speed = parseDecimal(f.at(11)); speed && *speed >= 0) p.speedKmh = *speed;
  if (auto course = parseDecimal(f.at(12)); course && *course >= 0 && *course <= 360) {
    p.course = *course;
  }
  if (auto altitude = parseDecimal(f.at(13))) p.altitude = *altitude;
  if (auto hdop = parseDecimal(f.at(14))) p.hdop = *hdop;
  if (auto sats = parseInt(f.at(15)); sats && *sats >= 0 && *sats < 1000) {
    p.satellites = static_cast<int>(*sats);
  }
  if (auto acc = parseFlag(f.at(16))) p.set(attr::kIgnition, *acc);
  if (auto charge = parseFlag(f.at(17))) p.set(attr::kCharge, *charge);
  if (!isPlaceholder(f.at(18))) p.set("error", std::string(f.at(18)));
  result.positions.push_back(std::move(p));
}

// Server → device: "**,imei:<imei>,<letter>;" (J engine stop, K resume, B one position).
std::optional<std::string> Gps103Codec::encodeCommand(const Command& command,
                                                      const SessionState& session) {
  if (session.deviceId.empty()) return std::nullopt;
  std::string body;
  switch (command.type) {
    case CommandType::kEngineStop:
      body = "J";
      break;
    case CommandType::kEngineResume:
      body = "K";
      break;
    case CommandType::kPositionSingle:
      body = "B";
      break;
    case CommandType::kCustom: {
      // The text after the IMEI, e.g. "C,30s" or "G"; one trailing ';' is tolerated.
      std::string_view text = command.text;
      if (!text.empty() && text.back() == ';') text.remove_suffix(1);
      if (text.empty()) return std::nullopt;
      for (char c : text) {
        // A delimiter or control byte would end or corrupt the sentence on the device.
        if (c == ';' || c == '*' || static_cast<unsigned char>(c) < 0x20 ||
            static_cast<unsigned char>(c) > 0x7e) {
          return std::nullopt;
        }
      }
      body = text;
      break;
    }
    case CommandType::kCustomHex:
      return std::nullopt;  // a text protocol
  }
  return "**,imei:" + session.deviceId + "," + body + ";";
}

}  // namespace

std::unique_ptr<ProtocolCodec> createGps103Codec() {
  return std::make_unique<Gps103Codec>();
}

}  // namespace tern::codec::trackers
