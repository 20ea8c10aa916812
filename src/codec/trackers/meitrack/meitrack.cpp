// Meitrack GPRS protocol (MVT/T1/T3/T333/T366/P88L/TC68 ...).
//
// Frame: "$$" <flag> <length decimal> "," <IMEI> "," <command 3 chars> "," <data> "*" <XX> CR LF
//   length  = bytes from the first ',' through CR LF;
//   XX      = sum of the bytes from "$$" through "*" mod 256, two upper-case hex digits.
// AAA (and AFF/A10 answers) carry a text position; CCC carries 0x34-byte binary records (answered
// with the record count); CCE carries TLV records (not answered); AAC is answered with AAC,1.
// Server → device uses the same shape with "@@".
// Neither the checksum nor the length is trusted for decoding (Traccar checks neither; test
// frames break both): a mismatch is only flagged.
#include "codec/trackers/meitrack/meitrack.h"

#include <charconv>
#include <cmath>
#include <vector>

#include "codec/trackers/util.h"

namespace tern::codec::trackers {

namespace {

constexpr std::size_t kMaxFrameSize = 64 * 1024;  // as registered in registry.cpp
constexpr std::size_t kMaxLengthDigits = 5;
constexpr std::size_t kMinLength = 8;  // ",I,CMD*XX\r\n" is already longer
// How far past the length field a text frame's real end may be looked for.
constexpr std::size_t kLengthSlack = 32;
constexpr std::size_t kCccRecordSize = 0x34;
constexpr std::size_t kCccHeaderSize = 8;
constexpr std::int64_t kMicros = 1'000'000;
constexpr std::int64_t kEpoch2000 = 946'684'800;  // 2000-01-01 in Unix seconds

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool isHex(char c) {
  return hexValue(c) >= 0;
}
bool isPrintable(char c) {
  return c >= 0x20 && c <= 0x7e;
}

bool allDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!isDigit(c)) return false;
  }
  return true;
}

std::optional<std::int64_t> parseInt(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

std::optional<std::int64_t> parseHex(std::string_view s) {
  if (s.empty() || s.size() > 8) return std::nullopt;
  std::int64_t value = 0;
  for (char c : s) {
    int v = hexValue(c);
    if (v < 0) return std::nullopt;
    value = value * 16 + v;
  }
  return value;
}

// Plain decimal number; no exponents, no inf/nan.
std::optional<double> parseDecimal(std::string_view s) {
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

std::vector<std::string_view> split(std::string_view s, char separator) {
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

std::string_view at(const std::vector<std::string_view>& v, std::size_t i) {
  return i < v.size() ? v[i] : std::string_view();
}

std::uint8_t byteSum(std::string_view bytes) {
  unsigned sum = 0;
  for (char c : bytes) sum += static_cast<std::uint8_t>(c);
  return static_cast<std::uint8_t>(sum & 0xFF);
}

// "@@<flag><len>,<imei>,<content>*XX\r\n" with the length and checksum the device checks.
std::string buildMessage(char flag, std::string_view imei, std::string_view content) {
  std::size_t length = 1 + imei.size() + 1 + content.size() + 5;  // ',' imei ',' content *XX CRLF
  std::string out = "@@";
  out.push_back(flag);
  if (length < 10) out.push_back('0');
  out += std::to_string(length);
  out += ',';
  out += imei;
  out += ',';
  out += content;
  out += '*';
  out += toHex(std::string(1, static_cast<char>(byteSum(out))), true);
  out += "\r\n";
  return out;
}

// Event code → Traccar alarm name, or empty.
std::string_view alarmFor(std::int64_t event) {
  switch (event) {
    case 1:
      return "sos";
    case 17:
      return "lowBattery";
    case 18:
      return "lowPower";
    case 19:
      return "overspeed";
    case 20:
      return "geofenceEnter";
    case 21:
      return "geofenceExit";
    case 22:
      return "powerRestored";
    case 23:
      return "powerCut";
    case 36:
      return "tow";
    case 44:
      return "jamming";
    case 78:
      return "accident";
    case 90:
    case 91:
      return "hardCornering";
    case 129:
      return "hardBraking";
    case 130:
      return "hardAcceleration";
    case 135:
      return "fatigueDriving";
    default:
      return {};
  }
}

bool inRange(double latitude, double longitude) {
  return std::fabs(latitude) <= 90 && std::fabs(longitude) <= 180;
}

// The parts of a frame every command shares.
struct Header {
  char flag = 0;
  std::size_t lengthField = 0;
  std::string imei;
  std::string_view command;
  std::string_view data;  // after "<command>," up to the '*' of the checksum
};

class MeitrackCodec final : public ProtocolCodec {
 public:
  FrameResult splitFrame(std::string_view buffer) override;
  DecodeResult decode(std::string_view frame, SessionState& session,
                      std::int64_t serverTimeUs) override;
  std::optional<std::string> encodeCommand(const Command& command,
                                           const SessionState& session) override;

 private:
  static Position newPosition(const std::string& imei);
  static std::optional<Position> decodeText(const Header& h, const SessionState& session);
  static void decodeCcc(const Header& h, DecodeResult& result);
  static void decodeCce(const Header& h, DecodeResult& result);
};

// A complete frame header at `at`: "$$" flag length "," digits "," command ("," or "*").
// Used to notice a new frame inside one that was cut short.
bool isHeaderAt(std::string_view buffer, std::size_t at) {
  std::size_t i = at;
  if (buffer.substr(i, 2) != "$$" || i + 3 > buffer.size() || !isPrintable(buffer[i + 2])) {
    return false;
  }
  i += 3;
  auto run = [&](std::size_t maxLength) {
    std::size_t start = i;
    while (i < buffer.size() && isDigit(buffer[i]) && i - start < maxLength) ++i;
    return i - start;
  };
  if (run(kMaxLengthDigits) == 0 || i >= buffer.size() || buffer[i++] != ',') return false;
  if (run(20) == 0 || i >= buffer.size() || buffer[i++] != ',') return false;
  if (i + 4 > buffer.size()) return false;
  for (std::size_t k = i; k < i + 3; ++k) {
    char c = buffer[k];
    if (!isDigit(c) && !(c >= 'A' && c <= 'Z') && !(c >= 'a' && c <= 'z')) return false;
  }
  return buffer[i + 3] == ',' || buffer[i + 3] == '*';
}

// Where a text frame really ends when its length field disagrees: "*XX" followed by CR LF, or
// "*XX" followed by the next frame's "$$" (a device that omits CR LF), or the next header.
struct TextEnd {
  enum Kind : std::uint8_t { kFound, kNeedMore, kNone } kind = kNone;
  std::size_t end = 0;
};

TextEnd findTextEnd(std::string_view buffer, std::size_t from, std::size_t limit) {
  limit = std::min(limit, buffer.size());
  for (std::size_t j = from; j < limit; ++j) {
    char c = buffer[j];
    if (c == '*') {
      if (j + 3 > buffer.size()) return {TextEnd::kNeedMore, 0};
      if (isHex(buffer[j + 1]) && isHex(buffer[j + 2])) {
        if (j + 5 > buffer.size()) return {TextEnd::kNeedMore, 0};
        std::string_view after = buffer.substr(j + 3, 2);
        if (after == "\r\n") return {TextEnd::kFound, j + 5};
        if (after == "$$") return {TextEnd::kFound, j + 3};
      }
    } else if (c == '$' && isHeaderAt(buffer, j)) {
      return {TextEnd::kFound, j};  // cut short: a new frame starts here
    } else if (!isPrintable(c)) {
      return {TextEnd::kNone, 0};  // binary data: only the length field can tell
    }
  }
  return {limit == buffer.size() ? TextEnd::kNeedMore : TextEnd::kNone, 0};
}

FrameResult MeitrackCodec::splitFrame(std::string_view buffer) {
  if (buffer.empty()) return {FrameStatus::kNeedMore, 0};
  auto skipToNextStart = [&](std::size_t from) -> FrameResult {
    std::size_t next = buffer.find('$', from);
    return {FrameStatus::kSkip, next == std::string_view::npos ? buffer.size() : next};
  };
  if (buffer[0] != '$') return skipToNextStart(1);
  if (buffer.size() < 2) return {FrameStatus::kNeedMore, 0};
  if (buffer[1] != '$') return skipToNextStart(1);
  if (buffer.size() < 3) return {FrameStatus::kNeedMore, 0};
  if (!isPrintable(buffer[2])) return skipToNextStart(1);

  // "$$" flag, then the decimal length up to the first comma.
  std::size_t comma = 3;
  while (comma < buffer.size() && isDigit(buffer[comma])) ++comma;
  std::size_t digits = comma - 3;
  if (digits > kMaxLengthDigits) return skipToNextStart(1);
  if (comma == buffer.size()) return {FrameStatus::kNeedMore, 0};
  if (buffer[comma] != ',' || digits == 0) return skipToNextStart(1);
  std::size_t length = 0;
  for (std::size_t i = 3; i < comma; ++i) {
    length = length * 10 + static_cast<std::size_t>(buffer[i] - '0');
  }
  if (length < kMinLength) return skipToNextStart(1);
  std::size_t total = comma + length;
  if (total > kMaxFrameSize) return {FrameStatus::kTooLarge, 0};

  // A text frame ends at its checksum; that wins over a length field that is off by a byte or
  // two (test devices get it wrong, and a wrong length would swallow or cut the next frame).
  TextEnd text = findTextEnd(buffer, comma + 1, total + kLengthSlack);
  if (text.kind == TextEnd::kFound) return {FrameStatus::kOk, text.end};
  if (text.kind == TextEnd::kNeedMore && buffer.size() < total + kLengthSlack) {
    return {FrameStatus::kNeedMore, 0};
  }
  // Binary data (CCC, CCE, photos): only the length can tell, unless the frame was cut short
  // and a new one already started (a full header inside binary data is practically impossible).
  std::size_t searchEnd = std::min(buffer.size(), total);
  for (std::size_t at = buffer.find("$$", comma + 1); at < searchEnd;
       at = buffer.find("$$", at + 1)) {
    if (isHeaderAt(buffer, at)) return {FrameStatus::kOk, at};
  }
  if (buffer.size() < total) return {FrameStatus::kNeedMore, 0};
  // Without CR LF the next frame's "$$" sits where the length expects CR LF.
  if (buffer.substr(total - 2, 2) == "$$") return {FrameStatus::kOk, total - 2};
  return {FrameStatus::kOk, total};
}

Position MeitrackCodec::newPosition(const std::string& imei) {
  Position p;
  p.protocol = "meitrack";
  p.deviceId = imei;
  return p;
}

DecodeResult MeitrackCodec::decode(std::string_view frame, SessionState& session,
                                   std::int64_t serverTimeUs) {
  (void)serverTimeUs;
  DecodeResult result;
  Header h;
  // Header: "$$" flag digits ',' imei ',' command
  if (frame.size() < 4 || frame.substr(0, 2) != "$$") {
    result.note = "not a meitrack frame";
    return result;
  }
  h.flag = frame[2];
  std::size_t comma1 = frame.find(',', 3);
  if (comma1 == std::string_view::npos || comma1 > 3 + kMaxLengthDigits) {
    result.note = "bad header";
    return result;
  }
  std::size_t comma2 = frame.find(',', comma1 + 1);
  if (comma2 == std::string_view::npos) {
    result.note = "bad header";
    return result;
  }
  std::string_view imei = frame.substr(comma1 + 1, comma2 - comma1 - 1);
  if (!allDigits(imei) || imei.size() > 20) {
    result.note = "bad imei";
    return result;
  }
  h.imei = std::string(imei);
  auto lengthField = parseInt(frame.substr(3, comma1 - 3));
  h.lengthField = lengthField ? static_cast<std::size_t>(*lengthField) : 0;

  // Trailer: "*XX" with or without CR LF.
  std::string_view body = frame;
  bool crlf = body.size() >= 2 && body.substr(body.size() - 2) == "\r\n";
  if (crlf) body.remove_suffix(2);
  std::size_t star = std::string_view::npos;
  if (body.size() >= 3 && body[body.size() - 3] == '*') star = body.size() - 3;
  if (star == std::string_view::npos || star <= comma2) {
    result.badChecksum = true;
    star = body.size();
  } else {
    auto sum = parseHex(body.substr(star + 1, 2));
    result.badChecksum = !sum || *sum != byteSum(frame.substr(0, star + 1));
  }
  // The length counts through CR LF, also when a frame arrives without it.
  result.badLength = !lengthField || h.lengthField != body.size() + 2 - comma1;

  std::size_t commandStart = comma2 + 1;
  if (star < commandStart + 3) {
    result.note = "no command";
    return result;
  }
  h.command = frame.substr(commandStart, 3);
  std::size_t dataStart = commandStart + 3;
  if (dataStart < star && frame[dataStart] == ',') ++dataStart;
  h.data = frame.substr(dataStart, star - dataStart);

  if (h.command == "AAC") {
    // Traccar answers before (and without) a device session.
    result.response = buildMessage('z', h.imei, "AAC,1");
    if (session.deviceId != h.imei) session.identify(h.imei);
    return result;
  }
  if (session.deviceId != h.imei && !session.identify(h.imei)) {
    result.note = "device not accepted";
    return result;
  }
  if (h.command == "CCC") {
    decodeCcc(h, result);
    return result;
  }
  if (h.command == "CCE") {
    decodeCce(h, result);
    return result;
  }
  if (h.command == "D00" || h.command == "D03") {
    result.note = "photo not supported";  // camera transfers are not assembled
    return result;
  }
  // "<command>,<data>" as the device sent it; binary data as hex.
  bool printable = true;
  for (char c : h.data) printable = printable && isPrintable(c);
  std::string answer(h.command);
  if (!h.data.empty()) answer += "," + (printable ? std::string(h.data) : toHex(h.data, true));
  if (h.command == "D82") {
    // A command result Traccar stores as a position without a fix.
    Position p = newPosition(h.imei);
    p.hasLocation = false;
    p.set(attr::kResult, answer);
    result.positions.push_back(std::move(p));
    result.commandAnswer = CommandAnswer{answer};
    return result;
  }
  if (auto p = decodeText(h, session)) {
    result.positions.push_back(std::move(*p));
    return result;
  }
  if (h.command == "AAA" || h.command == "AFF") {
    result.note = "bad position report";
    return result;
  }
  // Anything else is the device answering a command (e.g. "C01,OK").
  result.commandAnswer = CommandAnswer{answer};
  result.note = "command answer";
  return result;
}

// <event>,<lat>,<lon>,<yymmddhhmmss>,<A|V>,<sats>,<gsm>,<km/h>,<course>,<hdop>,<alt>,<odometer>,
// <runtime>,<mcc|mnc|lac|cid>,<io>,<adc…|battery|power>,<event data>,<reserved>,<protocol>,
// <fuel>,<temps>,<count>,<data…>
std::optional<Position> MeitrackCodec::decodeText(const Header& h, const SessionState& session) {
  auto v = split(h.data, ',');
  std::size_t i = 0;
  // AFF (and some firmwares) put a sequence number before the event code.
  if (v.size() > 2 && allDigits(v[0]) && allDigits(v[1])) i = 1;
  auto event = parseInt(at(v, i));
  auto latitude = parseDecimal(at(v, i + 1));
  auto longitude = parseDecimal(at(v, i + 2));
  std::string_view stamp = at(v, i + 3);
  std::string_view validity = at(v, i + 4);
  if (!event || !allDigits(at(v, i)) || !latitude || !longitude || stamp.size() != 12 ||
      !allDigits(stamp) || (validity != "A" && validity != "V")) {
    return std::nullopt;
  }
  auto two = [&](std::size_t pos) { return (stamp[pos] - '0') * 10 + (stamp[pos + 1] - '0'); };
  auto time = civilToMicros(2000 + two(0), two(2), two(4), two(6), two(8), two(10));
  if (!time || !inRange(*latitude, *longitude)) return std::nullopt;

  Position p = newPosition(h.imei);
  p.deviceTimeUs = *time;
  p.latitude = *latitude;
  p.longitude = *longitude;
  p.valid = validity == "A";
  p.set(attr::kEvent, *event);
  if (auto alarm = alarmFor(*event); !alarm.empty()) p.addAlarm(alarm);

  if (auto sats = parseInt(at(v, i + 5)); sats && *sats < 1000)
    p.satellites = static_cast<int>(*sats);
  if (auto rssi = parseInt(at(v, i + 6))) p.set(attr::kRssi, *rssi);
  if (auto speed = parseDecimal(at(v, i + 7)); speed && *speed >= 0) p.speedKmh = *speed;
  if (auto course = parseDecimal(at(v, i + 8)); course && *course >= 0 && *course <= 360) {
    p.course = *course;
  }
  if (auto hdop = parseDecimal(at(v, i + 9)); hdop && *hdop >= 0) p.hdop = *hdop;
  if (auto altitude = parseDecimal(at(v, i + 10))) p.altitude = *altitude;
  if (auto odometer = parseInt(at(v, i + 11))) p.set(attr::kOdometer, *odometer);
  if (!at(v, i + 12).empty()) p.set("runtime", std::string(at(v, i + 12)));
  // i + 13: mcc|mnc|lac|cid (cell towers are not modelled)
  std::string_view io = at(v, i + 14);
  if (io.size() == 4) {
    auto input = parseHex(io.substr(0, 2));
    auto output = parseHex(io.substr(2, 2));
    if (input && output) {
      p.set(attr::kInput, *input);
      p.set(attr::kOutput, *output);
    }
  }

  auto adc = split(at(v, i + 15), '|');
  if (at(v, i + 15).find('.') != std::string_view::npos) {
    // Newer firmware: voltages battery|power|rtc|mcu|gps.
    if (auto battery = parseDecimal(at(adc, 0))) p.set(attr::kBattery, *battery);
    if (auto power = parseDecimal(at(adc, 1))) p.set(attr::kPower, *power);
  } else if (adc.size() >= 4) {
    for (std::size_t k = 0; k < 3; ++k) {
      if (auto value = parseHex(at(adc, k))) p.set("adc" + std::to_string(k + 1), *value);
    }
    // Battery and power scaling depends on the model (Traccar's table); default: 1/100 V.
    const std::string* model = session.getExtra("model");
    std::string m = model ? *model : "";
    for (char& c : m) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    auto battery = parseHex(at(adc, 3));
    auto power = parseHex(at(adc, 4));
    double b = battery ? static_cast<double>(*battery) : 0;
    double w = power ? static_cast<double>(*power) : 0;
    if (m == "MVT340" || m == "MVT380") {
      b = b * 3.0 * 2.0 / 1024.0;
      w = w * 3.0 * 16.0 / 1024.0;
    } else if (m == "MT90") {
      b = b * 3.3 * 2.0 / 4096.0;
    } else if (m == "T1" || m == "T3" || m == "MVT100" || m == "MVT600" || m == "MVT800" ||
               m == "TC68" || m == "TC68S") {
      b = b * 3.3 * 2.0 / 4096.0;
      w = w * 3.3 * 16.0 / 4096.0;
    } else {
      b /= 100.0;
      w /= 100.0;
    }
    if (battery) p.set(attr::kBattery, b);
    if (power) {
      if (m == "MT90") {
        p.set(attr::kPower, *power);
      } else {
        p.set(attr::kPower, w);
      }
    }
  }

  std::string_view eventData = at(v, i + 16);
  if (!eventData.empty()) {
    p.set(*event == 37 ? "driverUniqueId" : "eventData", std::string(eventData));
  }
  std::int64_t protocol = parseInt(at(v, i + 18)).value_or(0);
  std::string_view fuel = at(v, i + 19);
  if (fuel.size() == 4) {
    auto whole = parseHex(fuel.substr(0, 2));
    auto hundredths = parseHex(fuel.substr(2, 2));
    if (whole && hundredths) {
      p.set(attr::kFuelLevel,
            static_cast<double>(*whole) + static_cast<double>(*hundredths) * 0.01);
    }
  }
  std::string_view temps = at(v, i + 20);
  if (!temps.empty()) {
    for (std::string_view t : split(temps, '|')) {
      if (t.size() != 6) continue;
      auto index = parseHex(t.substr(0, 2));
      if (!index) continue;
      double value = 0;
      if (protocol >= 3) {
        auto raw = parseHex(t.substr(2, 4));
        if (!raw) continue;
        value = static_cast<std::int16_t>(static_cast<std::uint16_t>(*raw)) * 0.01;
      } else {
        auto whole = parseHex(t.substr(2, 2));
        auto hundredths = parseHex(t.substr(4, 2));
        if (!whole || !hundredths) continue;
        double degrees = static_cast<std::int8_t>(static_cast<std::uint8_t>(*whole));
        value = degrees + (degrees < 0 ? -0.01 : 0.01) * static_cast<double>(*hundredths);
      }
      p.set("temp" + std::to_string(*index), value);
    }
  }
  // <count>,<data…>: the data fields keep their commas.
  if (v.size() > i + 22) {
    std::vector<std::string_view> values(v.begin() + static_cast<std::ptrdiff_t>(i + 22), v.end());
    if (!at(values, 1).empty()) p.set("tempData", std::string(at(values, 1)));
    std::string_view taximeter = at(values, 5);
    if (!taximeter.empty()) {
      auto parts = split(taximeter, '|');
      if (parts[0].size() >= 2 && parts.size() >= 2) {
        p.set("taximeterOn", parts[0][1] == '0');
        p.set("taximeterStart", std::string(parts[1]));
        if (parts.size() >= 7) {
          p.set("taximeterEnd", std::string(parts[2]));
          if (auto distance = parseInt(parts[3])) p.set("taximeterDistance", *distance);
          if (auto fare = parseInt(parts[4])) p.set("taximeterFare", *fare);
          p.set("taximeterTrip", std::string(parts[5]));
          p.set("taximeterWait", std::string(parts[6]));
        }
      }
    }
  }
  return p;
}

// CCC: 8 header bytes, then 0x34-byte little-endian records; answered with the record count.
void MeitrackCodec::decodeCcc(const Header& h, DecodeResult& result) {
  ByteReader r(h.data);
  r.skip(kCccHeaderSize);
  std::size_t count = 0;
  while (!r.failed() && r.remaining() >= kCccRecordSize) {
    Position p = newPosition(h.imei);
    std::int64_t event = r.u8();
    double latitude = static_cast<std::int32_t>(r.u32le()) * 1e-6;
    double longitude = static_cast<std::int32_t>(r.u32le()) * 1e-6;
    std::int64_t seconds = kEpoch2000 + std::int64_t{r.u32le()};
    p.valid = r.u8() == 1;
    p.satellites = r.u8();
    std::int64_t rssi = r.u8();
    p.speedKmh = r.u16le();
    std::uint16_t course = r.u16le();
    p.hdop = r.u16le() * 0.1;
    p.altitude = r.u16le();
    std::int64_t odometer = r.u32le();
    std::int64_t runtime = r.u32le();
    r.skip(8);  // mcc, mnc, lac, cid
    std::int64_t status = r.u16le();
    std::int64_t adc1 = r.u16le();
    double battery = r.u16le() * 0.01;
    std::int64_t power = r.u16le();
    r.skip(4);  // geofence
    p.deviceTimeUs = seconds * kMicros;
    if (inRange(latitude, longitude)) {
      p.latitude = latitude;
      p.longitude = longitude;
    } else {
      p.hasLocation = false;
    }
    if (course <= 360) p.course = course;
    p.set(attr::kEvent, event);
    if (auto alarm = alarmFor(event); !alarm.empty()) p.addAlarm(alarm);
    p.set(attr::kRssi, rssi);
    p.set(attr::kOdometer, odometer);
    p.set("runtime", runtime);
    p.set(attr::kStatus, status);
    p.set("adc1", adc1);
    p.set(attr::kBattery, battery);
    p.set(attr::kPower, power);
    result.positions.push_back(std::move(p));
    ++count;
  }
  // The device deletes this many records from its buffer.
  result.response = buildMessage(h.flag, h.imei, "CCC," + std::to_string(count));
}

// One CCE record: four TLV groups (1-, 2-, 4-byte values, then length-prefixed values).
// Ids starting with 0xFE are two bytes.
void decodeCceRecord(ByteReader& r, Position& p) {
  auto readId = [&r]() -> std::uint32_t {
    std::uint32_t id = r.u8();
    if (id == 0xFE) id = (id << 8) | r.u8();
    return id;
  };
  std::optional<double> latitude;
  std::optional<double> longitude;

  std::uint8_t count = r.u8();
  for (unsigned j = 0; j < count && !r.failed(); ++j) {
    std::uint32_t id = readId();
    std::int64_t value = r.u8();
    switch (id) {
      case 0x01:
        p.set(attr::kEvent, value);
        if (auto alarm = alarmFor(value); !alarm.empty()) p.addAlarm(alarm);
        break;
      case 0x05:
        p.valid = value > 0;
        break;
      case 0x06:
        p.satellites = static_cast<int>(value);
        break;
      case 0x07:
        p.set(attr::kRssi, value);
        break;
      case 0x14:
        p.set(attr::kOutput, value);
        break;
      case 0x15:
        p.set(attr::kInput, value);
        break;
      case 0x47:
        if (value > 0) p.set("lock", value == 2);
        break;
      case 0x97:
        p.set(attr::kThrottle, value);
        break;
      case 0x9D:
        p.set(attr::kFuelLevel, value);
        break;
      case 0xFE69:
        p.set(attr::kBatteryLevel, value);
        break;
      default:
        break;
    }
  }
  count = r.u8();
  for (unsigned j = 0; j < count && !r.failed(); ++j) {
    std::uint32_t id = readId();
    std::uint16_t raw = r.u16le();
    std::int64_t value = raw;
    switch (id) {
      case 0x08:
        p.speedKmh = raw;
        break;
      case 0x09:
        if (raw <= 360) p.course = raw;
        break;
      case 0x0A:
        p.hdop = raw * 0.1;
        break;
      case 0x0B:
        p.altitude = static_cast<std::int16_t>(raw);
        break;
      case 0x16:
        p.set("adc1", raw * 0.01);
        break;
      case 0x17:
        p.set("adc2", raw * 0.01);
        break;
      case 0x19:
        p.set(attr::kBattery, raw * 0.01);
        break;
      case 0x1A:
        p.set(attr::kPower, raw * 0.01);
        break;
      case 0x29:
        p.set(attr::kFuelLevel, raw * 0.01);
        break;
      case 0x40:
        p.set(attr::kEvent, value);
        if (auto alarm = alarmFor(value); !alarm.empty()) p.addAlarm(alarm);
        break;
      case 0x91:
      case 0x92:
        p.set(attr::kObdSpeed, value);
        break;
      case 0x98:
        p.set("fuelUsed", value);
        break;
      case 0x99:
        p.set(attr::kRpm, value);
        break;
      case 0x9C:
        p.set(attr::kCoolantTemp, value);
        break;
      case 0x9F:
        p.set("temp1", value);
        break;
      case 0xC9:
        p.set("fuelConsumption", value);
        break;
      default:
        break;
    }
  }
  count = r.u8();
  for (unsigned j = 0; j < count && !r.failed(); ++j) {
    std::uint32_t id = readId();
    std::uint32_t raw = r.u32le();
    std::int64_t value = raw;
    switch (id) {
      case 0x02:
        latitude = static_cast<std::int32_t>(raw) * 1e-6;
        break;
      case 0x03:
        longitude = static_cast<std::int32_t>(raw) * 1e-6;
        break;
      case 0x04:
        p.deviceTimeUs = (kEpoch2000 + value) * kMicros;
        break;
      case 0x0C:
        p.set(attr::kOdometer, value);
        break;
      case 0x0D:
        p.set("runtime", value);
        break;
      case 0x25:
        p.set("driverUniqueId", std::to_string(raw));
        break;
      case 0x9B:
        p.set("obdOdometer", value);
        break;
      case 0xA0:
        p.set("fuelUsed", raw * 0.001);
        break;
      case 0xA2:
        p.set("fuelConsumption", raw * 0.01);
        break;
      case 0xFEF4:
        p.set(attr::kHours, value * 60'000);
        break;  // minutes → ms
      default:
        break;
    }
  }
  count = r.u8();
  for (unsigned j = 0; j < count && !r.failed(); ++j) {
    std::uint32_t id = readId();
    std::uint8_t length = r.u8();
    ByteReader v(r.bytes(length));
    if (r.failed()) break;
    if (id >= 0x2A && id <= 0x31) {
      v.u8();  // label
      auto raw = static_cast<std::int16_t>(v.u16le());
      if (!v.failed()) p.set("temp" + std::to_string(id - 0x2A), raw * 0.01);
    } else if (id == 0xFE31) {
      // Alarm with a camera file: protocol 2 carries the picture's file name.
      std::uint8_t alarmProtocol = v.u8();
      v.u8();  // alarm type
      if (alarmProtocol == 0x02 && length > 3 && !v.failed()) {
        std::string file(v.bytes(v.remaining()));
        std::string folder = file.substr(0, 8);
        if (folder.size() == 8 && allDigits(folder)) {
          folder = folder.substr(0, 4) + "-" + folder.substr(4, 2) + "-" + folder.substr(6, 2);
        }
        p.set("image", folder + "/" + file);
      }
    } else if (id == 0xFE73) {
      // BLE tag: version, name, MAC, battery, temperature and humidity in 1/256.
      v.u8();
      std::uint8_t nameLength = v.u8();
      std::string name(v.bytes(nameLength));
      v.skip(6);
      std::int64_t battery = v.u8();
      auto temp = static_cast<std::int16_t>(v.u16le());
      auto humidity = static_cast<std::int16_t>(v.u16le());
      if (!v.failed()) {
        p.set("tagName", std::move(name));
        p.set("tagBattery", battery);
        p.set("tagTemp", temp / 256.0);
        p.set("tagHumidity", humidity / 256.0);
      }
    } else if (id == 0xFEA8) {
      // Up to three batteries: present flag, level.
      for (int k = 1; k <= 3; ++k) {
        std::uint8_t present = v.u8();
        std::int64_t level = v.u8();
        if (v.failed()) break;
        if (present > 0) {
          p.set(k == 1 ? std::string(attr::kBatteryLevel) : "battery" + std::to_string(k) + "Level",
                level);
        }
      }
    }
  }
  if (latitude && longitude && inRange(*latitude, *longitude)) {
    p.latitude = *latitude;
    p.longitude = *longitude;
  } else {
    p.hasLocation = false;
  }
}

// CCE: remaining cache (4), record count (2), then records: length (2, counts what follows),
// index (2), TLV groups. Not answered.
void MeitrackCodec::decodeCce(const Header& h, DecodeResult& result) {
  ByteReader r(h.data);
  r.u32le();  // records still cached on the device
  std::uint16_t count = r.u16le();
  for (unsigned i = 0; i < count && !r.failed(); ++i) {
    std::uint16_t length = r.u16le();
    std::string_view record = r.bytes(length);
    if (r.failed()) {
      // The last record is cut short (a truncated frame): decode what there is.
      record = h.data.substr(std::min(h.data.size(), r.position()));
    }
    ByteReader rr(record);
    Position p = newPosition(h.imei);
    p.set("index", std::int64_t{rr.u16le()});
    decodeCceRecord(rr, p);
    if (rr.failed() && record.size() < 4) break;
    result.positions.push_back(std::move(p));
  }
}

// "@@<flag><len>,<imei>,<content>*XX\r\n". Flags as Traccar sends them: 'M' for output control,
// 'Q' for position requests and free text.
std::optional<std::string> MeitrackCodec::encodeCommand(const Command& command,
                                                        const SessionState& session) {
  if (session.deviceId.empty()) return std::nullopt;
  switch (command.type) {
    case CommandType::kEngineStop:
      return buildMessage('M', session.deviceId, "C01,0,12222");  // output 1 on, others kept
    case CommandType::kEngineResume:
      return buildMessage('M', session.deviceId, "C01,0,02222");  // output 1 off
    case CommandType::kPositionSingle:
      return buildMessage('Q', session.deviceId, "A10");
    case CommandType::kCustom: {
      // "<command>[,<params>]", e.g. "A11,30" or "C01,0,22122".
      if (command.text.empty()) return std::nullopt;
      for (char c : command.text) {
        if (!isPrintable(c) || c == '*') return std::nullopt;
      }
      return buildMessage('Q', session.deviceId, command.text);
    }
    case CommandType::kCustomHex:
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

std::unique_ptr<ProtocolCodec> createMeitrackCodec() {
  return std::make_unique<MeitrackCodec>();
}

}  // namespace tern::codec::trackers
