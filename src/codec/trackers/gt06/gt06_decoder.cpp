// GT06 / Concox message decoding. Behaviour follows Traccar's Gt06ProtocolDecoder as described
// in test/data/trackers/PROTOCOLS.md and gt06.json: the message type and, for the many clones,
// the (type, LEN) pair or the configured device model pick the layout.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string>
#include <vector>

#include "codec/trackers/gt06/gt06_internal.h"
#include "codec/trackers/util.h"

namespace tern::codec::trackers::gt06 {

namespace {

// Message types (Traccar's names).
enum : std::uint8_t {
  kLogin = 0x01,
  kGps = 0x10,
  kGpsLbs6 = 0x11,
  kGpsLbs1 = 0x12,
  kStatus = 0x13,
  kString = 0x15,
  kGpsLbsStatus1 = 0x16,
  kWifi = 0x17,  // also GPS_LBS_RFID
  kLbsExtend = 0x18,
  kLbsStatus = 0x19,
  kGpsPhone = 0x1A,
  kGpsLbsExtend = 0x1E,
  kStringInfo = 0x21,
  kGpsLbs2 = 0x22,
  kHeartbeat = 0x23,
  kLbsMultiple3 = 0x24,
  kGpsLbsDriver = 0x25,
  kGpsLbsStatus2 = 0x26,
  kGpsLbsStatus3 = 0x27,
  kLbsMultiple1 = 0x28,
  kAddressRequest = 0x2A,
  kLbsWifi = 0x2C,
  kGpsLbs4 = 0x2D,
  kLbsMultiple2 = 0x2E,
  kGpsLbs5 = 0x31,
  kGpsLbsStatus4 = 0x32,  // AZ735_GPS in the extended form
  kWifi5 = 0x33,          // AZ735_ALARM in the extended form
  kX1Gps = 0x34,          // LBS_3 for SL4X
  kX1PhotoInfo = 0x35,
  kStatus2 = 0x36,  // X1_PHOTO_DATA in the extended form
  kGpsLbs3 = 0x37,
  kGpsLbs8 = 0x38,
  kAlarmModule = 0x39,
  kBms = 0x40,
  kMultimedia = 0x41,
  kIButton = 0x61,
  kWifi2 = 0x69,
  kGpsModular = 0x70,
  kCommand0 = 0x80,
  kCommand1 = 0x81,
  kCommand2 = 0x82,
  kTimeRequest = 0x8A,
  kObd = 0x8C,
  kInfo = 0x94,
  kAlarm = 0x95,
  kAddressResponse = 0x97,
  kSerial = 0x9B,
  kGpsLbs7 = 0xA0,
  kLbs2 = 0xA1,
  kWifi3 = 0xA2,        // GPS_LBS_STATUS_5 for LW4G
  kFenceSingle = 0xA3,  // STATUS_3 for SEEWORLD
  kFenceMulti = 0xA4,
  kLbsAlarm = 0xA5,
  kLbsAddress = 0xA7,
  kWifiAlarm = 0xA9,
  kDeviceStatus = 0xF1,
  kPeripheral = 0xF2,
  kWifi4 = 0xF3,
};

// Clone families recognised from the (type, LEN) pair of a 78 78 frame.
enum class Variant : std::uint8_t {
  kStandard,
  kVxt01,
  kWanwayS20,
  kSr411Mini,
  kGt06eCard,
  kBenway,
  kS5,
  kSpace10x,
  kObd6,
  kWetrust,
  kJc400,
  kSl4x,
  kSeeworld,
  kRfid,
  kLw4g,
  kTrx16i,
  kStepStatus,  // 0xA3 with LEN 0x18: a status report carrying a step counter
};

Variant detectVariant(std::string_view f, bool extended, std::size_t length, std::uint8_t type) {
  if (extended) return Variant::kStandard;
  auto is = [&](std::uint8_t t, std::size_t len) { return type == t && length == len; };
  if (is(kGpsLbs1, 0x24) || is(kGpsLbsStatus1, 0x24)) return Variant::kVxt01;
  if (is(kLbsMultiple3, 0x31)) return Variant::kWanwayS20;
  if (is(kLbsMultiple3, 0x2E)) return Variant::kSr411Mini;
  if (type == kGpsLbs1 && length >= 0x71) return Variant::kGt06eCard;
  if (is(kGpsLbs1, 0x21)) return Variant::kBenway;
  if (is(kGpsLbs1, 0x2B)) return Variant::kS5;
  if (type == kLbsStatus && length >= 0x17) return Variant::kSpace10x;
  if (is(kStatus, 0x13)) return Variant::kObd6;
  if (is(kGpsLbs1, 0x29)) return Variant::kWetrust;
  if (type == kAlarm && f.size() >= 6 && f[4] == '\xFF' && f[5] == '\xFF') return Variant::kJc400;
  if (is(kX1Gps, 0x37) || is(kGpsLbs5, 0x2A) || is(kGpsLbsStatus4, 0x27) ||
      is(kGpsLbsStatus4, 0x29)) {
    return Variant::kSl4x;
  }
  if (is(kGpsLbs2, 0x2F) || is(kGpsLbsStatus1, 0x26) || is(kFenceSingle, 0x0C)) {
    return Variant::kSeeworld;
  }
  if (is(kWifi, 0x28)) return Variant::kRfid;
  if (is(kWifi3, 0x40)) return Variant::kLw4g;
  if (is(kStatus2, 0x35) || is(kGpsLbsStatus1, 0x2D)) return Variant::kTrx16i;
  if (is(kFenceSingle, 0x18)) return Variant::kStepStatus;
  return Variant::kStandard;
}

bool inList(std::string_view value, std::initializer_list<std::string_view> list) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// Java's Calendar is lenient (month 0 = December of the year before); so is this. Every field is
// one byte, so nothing here can overflow.
std::int64_t lenientMicros(int year, int month, int day, int hour, int minute, int second) {
  if (year < 100) year += 2000;
  const int monthIndex = month - 1;
  const int yearShift = monthIndex >= 0 ? monthIndex / 12 : -((11 - monthIndex) / 12);
  year += yearShift;
  const int normalizedMonth = monthIndex - yearShift * 12 + 1;
  const std::int64_t days =
      daysFromCivil(year, static_cast<unsigned>(normalizedMonth), 1) + (day - 1);
  const std::int64_t seconds =
      days * 86400 + std::int64_t{hour} * 3600 + std::int64_t{minute} * 60 + second;
  return seconds * 1'000'000;
}

// Civil date of a UTC time (for the time-request answer).
struct Civil {
  int year, month, day, hour, minute, second;
};

Civil civilFromMicros(std::int64_t us) {
  std::int64_t secs = us / 1'000'000;
  if (us % 1'000'000 < 0) --secs;
  std::int64_t days = secs / 86400;
  std::int64_t rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  // Inverse of daysFromCivil (Howard Hinnant's algorithm).
  const std::int64_t z = days + 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  return {
      static_cast<int>(year),       static_cast<int>(month),           static_cast<int>(day),
      static_cast<int>(rem / 3600), static_cast<int>(rem % 3600 / 60), static_cast<int>(rem % 60)};
}

// ASCII as Java decodes it: bytes above 0x7F become U+FFFD.
std::string asciiText(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (char c : bytes) {
    if (static_cast<std::uint8_t>(c) < 0x80) {
      out.push_back(c);
    } else {
      out.append("\xEF\xBF\xBD");
    }
  }
  return out;
}

void appendUtf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// UTF-16BE to UTF-8; unpaired surrogates and a trailing odd byte become U+FFFD.
std::string utf16beText(std::string_view bytes) {
  std::string out;
  std::size_t i = 0;
  auto unit = [&](std::size_t at) {
    return static_cast<std::uint32_t>((static_cast<std::uint8_t>(bytes[at]) << 8) |
                                      static_cast<std::uint8_t>(bytes[at + 1]));
  };
  while (i + 1 < bytes.size()) {
    std::uint32_t cp = unit(i);
    i += 2;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (i + 1 < bytes.size() && unit(i) >= 0xDC00 && unit(i) <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (unit(i) - 0xDC00);
        i += 2;
      } else {
        cp = 0xFFFD;
      }
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      cp = 0xFFFD;
    }
    appendUtf8(out, cp);
  }
  if (i < bytes.size()) appendUtf8(out, 0xFFFD);
  return out;
}

std::string_view trim(std::string_view s) {
  // Java's String.trim(): everything up to and including space counts as blank.
  while (!s.empty() && static_cast<std::uint8_t>(s.front()) <= 0x20) s.remove_prefix(1);
  while (!s.empty() && static_cast<std::uint8_t>(s.back()) <= 0x20) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t at = s.find(sep, start);
    if (at == std::string_view::npos) {
      parts.push_back(s.substr(start));
      break;
    }
    parts.push_back(s.substr(start, at - start));
    start = at + 1;
  }
  return parts;
}

std::optional<std::int64_t> parseHex(std::string_view s) {
  std::int64_t value = 0;
  if (s.empty() || s.size() > 15) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value, 16);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

// A tiny cursor for the text patterns below (regular-expression free).
class TextCursor {
 public:
  explicit TextCursor(std::string_view s) : s_(s) {}
  bool literal(std::string_view text) {
    if (s_.substr(pos_, text.size()) != text) return false;
    pos_ += text.size();
    return true;
  }
  std::optional<char> oneOf(std::string_view chars) {
    if (pos_ >= s_.size() || chars.find(s_[pos_]) == std::string_view::npos) return std::nullopt;
    return s_[pos_++];
  }
  // d+ (at least `min`, at most `max` digits)
  std::optional<std::string_view> digits(std::size_t min = 1, std::size_t max = 64) {
    std::size_t end = pos_;
    while (end < s_.size() && end - pos_ < max && s_[end] >= '0' && s_[end] <= '9') ++end;
    if (end - pos_ < min) return std::nullopt;
    auto out = s_.substr(pos_, end - pos_);
    pos_ = end;
    return out;
  }
  // d+.d+
  std::optional<double> decimal() {
    const std::size_t start = pos_;
    if (!digits() || !literal(".") || !digits()) return std::nullopt;
    double value = 0;
    auto text = s_.substr(start, pos_ - start);
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc()) return std::nullopt;
    return value;
  }
  int number(std::string_view d) {
    int v = 0;
    for (char c : d) v = v * 10 + (c - '0');
    return v;
  }
  bool skipUntilAfter(char c) {  // [^c]+c
    const std::size_t at = s_.find(c, pos_);
    if (at == std::string_view::npos || at == pos_) return false;
    pos_ = at + 1;
    return true;
  }
  bool atEnd() const { return pos_ == s_.size(); }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

struct LocationText {
  double latitude = 0, longitude = 0, course = 0, speed = 0;
  std::int64_t timeUs = 0;
};

// "Current position!Lat:N54.739332,Lon:E25.273270,Course:126.53,Speed:0.0000,
//  DateTime:2017-05-26  10:27:47" — the answer to WHERE#.
std::optional<LocationText> parseLocationText(std::string_view s) {
  TextCursor c(s);
  LocationText out;
  if (!c.literal("Current position!Lat:")) return std::nullopt;
  auto ns = c.oneOf("NS");
  auto lat = ns ? c.decimal() : std::nullopt;
  if (!lat || !c.literal(",Lon:")) return std::nullopt;
  auto ew = c.oneOf("EW");
  auto lon = ew ? c.decimal() : std::nullopt;
  if (!lon || !c.literal(",Course:")) return std::nullopt;
  auto course = c.decimal();
  if (!course || !c.literal(",Speed:")) return std::nullopt;
  auto speed = c.decimal();
  if (!speed || !c.literal(",DateTime:")) return std::nullopt;
  auto year = c.digits(4, 4);
  auto month = year && c.literal("-") ? c.digits(2, 2) : std::nullopt;
  auto day = month && c.literal("-") ? c.digits(2, 2) : std::nullopt;
  if (!day || !c.literal(" ")) return std::nullopt;
  while (c.literal(" ")) {
  }
  auto hour = c.digits(2, 2);
  auto minute = hour && c.literal(":") ? c.digits(2, 2) : std::nullopt;
  auto second = minute && c.literal(":") ? c.digits(2, 2) : std::nullopt;
  if (!second || !c.atEnd()) return std::nullopt;
  auto time = civilToMicros(c.number(*year), c.number(*month), c.number(*day), c.number(*hour),
                            c.number(*minute), c.number(*second));
  if (!time) return std::nullopt;
  out.latitude = *ns == 'S' ? -*lat : *lat;
  out.longitude = *ew == 'W' ? -*lon : *lon;
  out.course = *course;
  out.speed = *speed;
  out.timeUs = *time;
  return out;
}

// "!AIOIL,<addr>,<output>,<temperature>,<version>,<ddd>,<fuel>,<0|1>,<count>,<xx>" from a
// fuel-level sensor relayed in INFO 0x0D.
std::optional<std::pair<double, double>> parseFuelText(std::string_view s) {
  TextCursor c(s);
  if (!c.literal("!AIOIL,") || !c.digits() || !c.literal(",") || !c.decimal() || !c.literal(",")) {
    return std::nullopt;
  }
  auto temperature = c.decimal();
  if (!temperature || !c.literal(",") || !c.skipUntilAfter(',')) return std::nullopt;
  if (!c.digits(4, 4) || !c.literal(",")) return std::nullopt;
  auto fuel = c.decimal();
  if (!fuel || !c.literal(",") || !c.oneOf("01") || !c.literal(",") || !c.digits() ||
      !c.literal(",")) {
    return std::nullopt;
  }
  const std::string_view hex = "0123456789abcdefABCDEF";
  if (!c.oneOf(hex) || !c.oneOf(hex) || !c.atEnd()) return std::nullopt;
  return std::make_pair(*temperature, *fuel);
}

bool printable(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char ch) {
    auto b = static_cast<std::uint8_t>(ch);
    return (b >= 0x20 && b < 0x7F) || b == '\r' || b == '\n' || b == '\t';
  });
}

class Decoder {
 public:
  Decoder(std::string_view frame, SessionState& session, std::int64_t now)
      : frame_(frame), session_(session), now_(now), in_(frame) {}

  DecodeResult run();

 private:
  // --- reading helpers ---
  std::uint32_t u24() {
    auto raw = in_.bytes(3);
    if (raw.size() != 3) return 0;
    return (std::uint32_t{static_cast<std::uint8_t>(raw[0])} << 16) |
           (std::uint32_t{static_cast<std::uint8_t>(raw[1])} << 8) |
           static_cast<std::uint8_t>(raw[2]);
  }
  std::string hexOf(std::size_t n) { return toHex(in_.bytes(n)); }
  std::string asciiOf(std::size_t n) { return asciiText(in_.bytes(n)); }
  // Bytes left before serial, CRC and 0D 0A (Java's readableBytes() - 6), 0 if fewer.
  std::size_t payloadLeft() const { return in_.remaining() > 6 ? in_.remaining() - 6 : 0; }
  // Java reads a negative length as an error: so does this.
  std::size_t checkedLength(std::size_t have, std::size_t minus) {
    if (have < minus) {
      failRead();
      return 0;
    }
    return have - minus;
  }

  // The serial number every ACK echoes: the two bytes before CRC and 0D 0A.
  std::uint16_t serial() const {
    if (frame_.size() < 6) return 0;
    const std::size_t at = frame_.size() - 6;
    return static_cast<std::uint16_t>((static_cast<std::uint8_t>(frame_[at]) << 8) |
                                      static_cast<std::uint8_t>(frame_[at + 1]));
  }
  void ack(std::uint8_t type) { answerWith(false, type); }
  void ackExtended(std::uint8_t type) { answerWith(true, type); }
  void answerWith(bool extended, std::uint8_t type) {
    if (frame_.size() < 6) {
      failRead();  // no serial to echo (Traccar fails the message)
      return;
    }
    result_.response = buildPacket(extended, type, {}, serial());
  }
  void failRead() { in_.skip(in_.remaining() + 1); }

  Position newPosition() const {
    Position p;
    p.protocol = "gt06";
    p.deviceId = session_.deviceId;
    p.hasLocation = false;
    return p;
  }
  void emit(Position p) { result_.positions.push_back(std::move(p)); }

  // Device-local YY MM DD hh mm ss in the session's time zone, as UTC µs.
  std::int64_t readDate() {
    auto raw = in_.bytes(6);
    if (raw.size() != 6) return 0;
    auto b = [&](int i) {
      return static_cast<int>(static_cast<std::uint8_t>(raw[static_cast<std::size_t>(i)]));
    };
    const std::int64_t local = lenientMicros(b(0), b(1), b(2), b(3), b(4), b(5));
    return local - std::int64_t{session_.timeZoneOffsetSeconds.value_or(0)} * 1'000'000;
  }

  struct GpsLayout {
    bool hasLength = false;  // a length byte after the time; 0 means "no fix data"
    bool hasSatellites = true;
    bool hasSpeed = true;
    bool longSpeed = false;         // speed as uint16 (JC400)
    bool flagsBeforeSpeed = false;  // JC400 swaps course/status and speed
  };
  bool decodeGps(Position& p, GpsLayout layout);
  bool decodeGps(Position& p) { return decodeGps(p, GpsLayout{}); }
  bool decodeLbs(bool hasLength);
  void decodeStatus(Position& p);
  std::optional<std::string_view> alarmName(unsigned code) const;
  void addAlarm(Position& p, unsigned code) const {
    if (auto name = alarmName(code)) p.addAlarm(*name);
  }

  void decodeBasic();
  void decodeExtended();
  void decodeLogin();
  void decodeHeartbeat();
  void decodeTimeRequest();
  void decodeX1Gps();
  void decodeWifi();
  void decodeLbsMultiple();
  void decodeStringMessage();
  void decodeBms();
  void decodeLongStatus();
  void decodeIButton();
  void decodeTrx16iStatus();
  void decodeStepStatus();
  void decodeGeneric();
  void decodeAlarmMessage();
  void decodeStringInfo();
  void decodeInfo();
  void decodeAz735();
  void decodeObd();
  void decodeModular();
  void decodeMultimedia();
  void decodeSerialData();
  void decodeDeviceStatus();
  void decodeGpsLbs8();

  bool hasGps() const;
  bool hasLbs() const;
  bool hasStatus() const;

  void answer(Position& p, std::string text) {
    result_.commandAnswer = CommandAnswer{text};
    p.set(attr::kResult, std::move(text));
  }

  std::string_view frame_;
  SessionState& session_;
  std::int64_t now_;
  ByteReader in_;
  DecodeResult result_;
  bool extended_ = false;
  std::size_t length_ = 0;  // the LEN field
  std::uint8_t type_ = 0;
  Variant variant_ = Variant::kStandard;
  std::string model_;  // upper case, from session.extra "model"
  bool modelLw_ = false, modelSw_ = false, modelNt_ = false, modelVl_ = false;
};

bool Decoder::decodeGps(Position& p, GpsLayout layout) {
  p.deviceTimeUs = readDate();
  if (layout.hasLength && in_.u8() == 0) return false;
  if (layout.hasSatellites) p.satellites = in_.u8() & 0x0F;
  double latitude = in_.u32() / 1'800'000.0;
  double longitude = in_.u32() / 1'800'000.0;
  unsigned flags = 0;
  if (layout.flagsBeforeSpeed) flags = in_.u16();
  if (layout.hasSpeed) p.speedKmh = layout.longSpeed ? in_.u16() : in_.u8();
  if (!layout.flagsBeforeSpeed) flags = in_.u16();
  p.course = static_cast<double>(flags & 0x3FF);
  p.valid = (flags & (1u << 12)) != 0;
  if ((flags & (1u << 10)) == 0) latitude = -latitude;    // bit 10 set = north
  if ((flags & (1u << 11)) != 0) longitude = -longitude;  // bit 11 set = west
  p.latitude = latitude;
  p.longitude = longitude;
  // A uint32 of 1/1 800 000 degrees reaches far past ±90/±180: such a fix is garbage.
  p.hasLocation = std::fabs(latitude) <= 90 && std::fabs(longitude) <= 180;
  if (!p.hasLocation) {
    p.valid = false;
    result_.note = "coordinates out of range";
  }
  if ((flags & (1u << 14)) != 0) p.set(attr::kIgnition, (flags & (1u << 15)) != 0);
  return true;
}

// Cell tower block. Tern keeps no cell list, so this only walks the layout (which varies with
// the type, the variant and the MCC's top bit).
bool Decoder::decodeLbs(bool hasLength) {
  std::size_t length = 0;
  if (hasLength) {
    length = in_.u8();
    if (length == 0) {
      // An empty block may still be followed by 45 zero bytes of padding.
      const std::size_t at = in_.position();
      bool zeroed = true;
      for (std::size_t i = at + 9; i < at + 45 && i < frame_.size(); ++i) {
        if (frame_[i] != 0) {
          zeroed = false;
          break;
        }
      }
      if (zeroed) in_.skip(std::min<std::size_t>(in_.remaining(), 45));
      return false;
    }
  }
  const bool sl4x = variant_ == Variant::kSl4x;
  const unsigned cellType = type_ == kGpsLbs8 || type_ == kAlarmModule ? in_.u8() : 0;
  const unsigned mcc = in_.u16();
  if ((mcc & 0x8000) != 0 || type_ == kGpsLbs6 || sl4x) {
    in_.u16();  // mnc
  } else {
    in_.u8();
  }
  const bool wide = cellType >= 3 || type_ == kLbsAlarm || type_ == kGpsLbs7 || type_ == kWifi3;
  if (wide) {
    in_.u32();  // lac
  } else {
    in_.u16();
  }
  if (wide || sl4x) {
    in_.u64();  // cid
  } else if (type_ == kGpsLbs6 || type_ == kIButton || type_ == kGpsLbsDriver ||
             variant_ == Variant::kSeeworld) {
    in_.u32();
  } else {
    u24();
  }
  if (cellType >= 3) {
    in_.u16();  // rssi
  } else if (type_ == kGpsLbs8 || type_ == kAlarmModule) {
    in_.u8();
  }
  if (length > 9) in_.skip(length - 9);
  return true;
}

// Terminal information byte: ACC, charging, alarm bits 3-5, fuel/power cut.
void Decoder::decodeStatus(Position& p) {
  const unsigned status = in_.u8();
  p.set(attr::kStatus, std::int64_t{status});
  p.set(attr::kIgnition, (status & 0x02) != 0);
  p.set(attr::kCharge, (status & 0x04) != 0);
  p.set(attr::kBlocked, (status & 0x80) != 0);
  switch ((status >> 3) & 0x07) {
    case 1:
      p.addAlarm("vibration");
      break;
    case 2:
      p.addAlarm("powerCut");
      break;
    case 3:
      p.addAlarm("lowBattery");
      break;
    case 4:
      p.addAlarm("sos");
      break;
    case 6:
      p.addAlarm("geofence");
      break;
    case 7:
      p.addAlarm(variant_ == Variant::kVxt01 ? "overspeed" : "removing");
      break;
    default:
      break;
  }
}

// The alarm/extension code of status messages; some codes differ per device family.
std::optional<std::string_view> Decoder::alarmName(unsigned code) const {
  switch (code) {
    case 0x01:
      return "sos";
    case 0x02:
      return "powerCut";
    case 0x03:
      return "vibration";
    case 0x04:
      return "geofenceEnter";
    case 0x05:
      return "geofenceExit";
    case 0x06:
      return "overspeed";
    case 0x09:
      return modelVl_ ? "tow" : "vibration";
    case 0x0E:
    case 0x0F:
      return "lowBattery";
    case 0x11:
      return "powerOff";
    case 0x0C:
    case 0x13:
    case 0x25:
    case 0x32:
      return "tampering";
    case 0x14:
      return "door";
    case 0x18:
      return modelLw_ ? "accident" : "removing";
    case 0x19:
      return modelLw_ ? "hardAcceleration" : "lowBattery";
    case 0x1A:
    case 0x27:
      return "hardBraking";
    case 0x1B:
    case 0x2A:
    case 0x2B:
    case 0x2E:
      return "hardCornering";
    case 0x23:
      return "fallDown";
    case 0x26:
      return "hardAcceleration";
    case 0x28:
      return modelSw_ ? "hardCornering" : modelVl_ ? "powerOff" : "hardBraking";
    case 0x29:
      return modelSw_ ? "accident" : "hardAcceleration";
    case 0x2C:
      return "accident";
    case 0x30:
      return modelVl_ ? "hardBraking" : "jamming";
    case 0x33:
      return "lock";
    case 0x34:
      return "unlock";
    case 0x53:
      return "fuelLeak";
    case 0x5B:
    case 0x5C:
      return "temperature";
    case 0xC9:
      return "idle";
    case 0x0107:
    case 0x010B:
      return "jamming";
    default:
      return std::nullopt;
  }
}

bool Decoder::hasGps() const {
  switch (type_) {
    case kGps:
    case kGpsLbs1:
    case kGpsLbs2:
    case kGpsLbsDriver:
    case kGpsLbs3:
    case kGpsLbs4:
    case kGpsLbs5:
    case kGpsLbs6:
    case kGpsLbsStatus1:
    case kGpsLbsStatus2:
    case kGpsLbsStatus3:
    case kGpsLbsStatus4:
    case kWifi3:
    case kGpsPhone:
    case kGpsLbsExtend:
    case kGpsLbs7:
    case kWifi:
    case kFenceMulti:
    case kAlarmModule:
      return true;
    case kFenceSingle:
      return variant_ != Variant::kSeeworld;
    default:
      return false;
  }
}

bool Decoder::hasLbs() const {
  switch (type_) {
    case kLbsStatus:
    case kGpsLbs1:
    case kGpsLbs2:
    case kGpsLbsDriver:
    case kGpsLbs3:
    case kGpsLbs4:
    case kGpsLbs5:
    case kGpsLbs6:
    case kGpsLbsStatus1:
    case kGpsLbsStatus2:
    case kGpsLbsStatus3:
    case kGpsLbsStatus4:
    case kWifi3:
    case kGpsLbs7:
    case kWifi:
    case kFenceMulti:
    case kAlarmModule:
    case kLbsAlarm:
    case kLbsAddress:
      return true;
    case kFenceSingle:
      return variant_ != Variant::kSeeworld;
    default:
      return false;
  }
}

bool Decoder::hasStatus() const {
  switch (type_) {
    case kStatus:
    case kStatus2:
    case kLbsStatus:
    case kGpsLbsStatus1:
    case kGpsLbsStatus2:
    case kGpsLbsStatus3:
    case kGpsLbsStatus4:
    case kWifi3:
    case kFenceMulti:
    case kAlarmModule:
    case kLbsAlarm:
      return true;
    case kGpsLbs2:
    case kGpsLbsDriver:
      return modelNt_;
    case kFenceSingle:
      return variant_ == Variant::kSeeworld;
    default:
      return false;
  }
}

DecodeResult Decoder::run() {
  if (frame_.size() < 5 || frame_[0] != frame_[1] ||
      (static_cast<std::uint8_t>(frame_[0]) != kShortStart &&
       static_cast<std::uint8_t>(frame_[0]) != kLongStart)) {
    result_.badLength = true;
    result_.note = "not a gt06 frame";
    return result_;
  }
  extended_ = static_cast<std::uint8_t>(frame_[0]) == kLongStart;
  in_.skip(2);
  length_ = extended_ ? in_.u16() : in_.u8();
  type_ = in_.u8();
  if (in_.failed()) {
    result_.badLength = true;
    result_.note = "truncated frame";
    return result_;
  }
  const std::size_t headerSize = extended_ ? 4 : 3;
  result_.badLength =
      headerSize + length_ + 2 != frame_.size() || frame_.substr(frame_.size() - 2) != "\r\n";
  if (frame_.size() >= 10) {
    const std::size_t crcAt = frame_.size() - 4;
    const auto stored = static_cast<std::uint16_t>((static_cast<std::uint8_t>(frame_[crcAt]) << 8) |
                                                   static_cast<std::uint8_t>(frame_[crcAt + 1]));
    result_.badChecksum = crc16X25(frame_.substr(2, crcAt - 2)) != stored;
  } else {
    result_.badChecksum = true;
  }

  variant_ = detectVariant(frame_, extended_, length_, type_);
  if (const std::string* model = session_.getExtra("model")) {
    model_ = *model;
    for (char& c : model_) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  modelLw_ = model_.rfind("LW", 0) == 0;
  modelSw_ = model_ == "SEEWORLD";
  modelNt_ = inList(model_, {"NT11", "NT20", "NT26", "NT40", "NT46", "VL100", "XT40"});
  modelVl_ = inList(model_, {"VL103", "LL303", "VL512", "G18"});

  // Only a login may come before the device is known; anything else is dropped unanswered.
  if (extended_ || type_ != kLogin) {
    if (!session_.identified()) {
      result_.note = "not identified";
      return result_;
    }
  }

  if (extended_) {
    decodeExtended();
  } else {
    decodeBasic();
  }

  if (in_.failed()) {
    // Traccar aborts such a message (an exception): no position and no answer.
    DecodeResult failed;
    failed.badChecksum = result_.badChecksum;
    failed.badLength = result_.badLength;
    failed.note = "truncated message";
    return failed;
  }
  return result_;
}

void Decoder::decodeBasic() {
  switch (type_) {
    case kLogin:
      return decodeLogin();
    case kHeartbeat:
      return decodeHeartbeat();
    case kAddressRequest: {
      // No geocoding here: the "address unknown" answer Traccar gives.
      std::string_view text = "NA&&NA&&0##";
      std::string content;
      content.push_back(static_cast<char>(text.size()));
      content.append(4, '\0');
      content.append(text);
      result_.response = buildPacket(true, kAddressResponse, content, 0);
      return;
    }
    case kTimeRequest:
      return decodeTimeRequest();
    case kX1PhotoInfo:
      // Photo transfer (the server would request the picture's data): not supported.
      result_.note = "photo transfer not supported";
      return;
    case kString:
      return decodeStringMessage();
    case kBms:
      return decodeBms();
    case kIButton:
      return decodeIButton();
    case kAlarm:
      return decodeAlarmMessage();
    default:
      break;
  }
  if (type_ == kX1Gps && variant_ != Variant::kSl4x) return decodeX1Gps();
  if ((type_ == kWifi && variant_ != Variant::kRfid) || type_ == kWifi2 || type_ == kWifi4) {
    return decodeWifi();
  }
  if (type_ == kInfo) {
    Position p = newPosition();
    p.set(attr::kPower, in_.i16() * 0.01);
    return emit(std::move(p));
  }
  if (type_ == kLbsMultiple3 && variant_ == Variant::kSr411Mini) {
    Position p = newPosition();
    decodeGps(p);
    decodeLbs(false);
    p.set(attr::kIgnition, in_.u8() > 0);
    p.set(attr::kPower, in_.u16() * 0.01);
    p.set(attr::kBattery, in_.u16() * 0.01);
    return emit(std::move(p));
  }
  if (type_ == kLbsMultiple1 || type_ == kLbsMultiple2 || type_ == kLbsMultiple3 ||
      type_ == kLbsExtend || type_ == kLbsWifi || type_ == kLbs2 || type_ == kX1Gps ||
      (type_ == kWifi3 && variant_ != Variant::kLw4g) || type_ == kWifi5 || type_ == kWifiAlarm) {
    return decodeLbsMultiple();
  }
  if (type_ == kStatus && in_.remaining() == 22) return decodeLongStatus();
  if (variant_ == Variant::kTrx16i && type_ == kStatus2) return decodeTrx16iStatus();
  if (variant_ == Variant::kStepStatus) return decodeStepStatus();
  if (hasGps() || hasLbs() || hasStatus()) return decodeGeneric();

  // Anything else is acknowledged (except command replies) and otherwise ignored.
  if (length_ > 5) in_.skip(length_ - 5);
  if (type_ != kCommand0 && type_ != kCommand1 && type_ != kCommand2) ack(type_);
  result_.note = "unsupported message type";
}

void Decoder::decodeLogin() {
  auto imeiBytes = in_.bytes(8);
  in_.u16();  // device type
  if (in_.failed()) return;
  // 8 bytes of BCD with a leading 0 nibble.
  const std::string imei = toHex(imeiBytes).substr(1);
  if (!session_.identify(imei)) {
    result_.note = "device not accepted";
    return;
  }
  // Longer logins carry the device's time zone: hhmm in the top 12 bits, bit 3 = west.
  std::optional<std::int32_t> offset;
  if (length_ > 15) {
    const unsigned bits = in_.u16();
    const int hours = static_cast<int>((bits >> 4) / 100);
    const int minutes = static_cast<int>((bits >> 4) % 100);
    int seconds = (hours * 60 + minutes) * 60;
    if ((bits & 0x08) != 0) seconds = -seconds;
    offset = seconds;
  }
  session_.timeZoneOffsetSeconds = offset;
  ack(kLogin);
}

void Decoder::decodeHeartbeat() {
  Position p = newPosition();
  const unsigned status = in_.u8();
  p.set("armed", (status & 0x01) != 0);
  p.set(attr::kIgnition, (status & 0x02) != 0);
  p.set(attr::kCharge, (status & 0x04) != 0);
  if (in_.remaining() >= 2 + 6) p.set(attr::kBattery, in_.u16() * 0.01);
  if (in_.remaining() >= 1 + 6) p.set(attr::kRssi, std::int64_t{in_.u8()});
  ack(type_);
  emit(std::move(p));
}

void Decoder::decodeTimeRequest() {
  const Civil now = civilFromMicros(now_);
  std::string content;
  for (int v : {now.year - 2000, now.month, now.day, now.hour, now.minute, now.second}) {
    content.push_back(static_cast<char>(v & 0xFF));
  }
  result_.response = buildPacket(false, kTimeRequest, content, 0);
}

void Decoder::decodeX1Gps() {
  Position p = newPosition();
  in_.u32();  // data and alarm
  decodeGps(p);
  in_.u16();  // terminal info
  p.set(attr::kOdometer, std::int64_t{in_.u32()});
  in_.skip(2 + 1 + 2 + 4);  // cell: mcc, mnc, lac, cid
  const std::uint32_t driver = in_.u32();
  if (driver > 0) p.set("driverUniqueId", std::to_string(driver));
  p.set(attr::kBattery, in_.u16() * 0.01);
  p.set(attr::kPower, in_.u16() * 0.01);
  const std::uint32_t ports = in_.u32();
  p.set(attr::kInput, std::int64_t{in_.u8()});
  p.set(attr::kOutput, std::int64_t{in_.u8()});
  const unsigned adcCount = (ports >> 20) & 0x0F;
  for (unsigned i = 1; i <= adcCount; ++i) p.set("adc" + std::to_string(i), in_.u16() * 0.01);
  emit(std::move(p));  // no ACK for X1
}

void Decoder::decodeWifi() {
  Position p = newPosition();
  const std::string_view time = in_.bytes(6);
  if (time.size() == 6) {
    auto bcd = [&](std::size_t i) {
      auto b = static_cast<std::uint8_t>(time[i]);
      return (b >> 4) * 10 + (b & 0x0F);
    };
    p.deviceTimeUs = lenientMicros(bcd(0), bcd(1), bcd(2), bcd(3), bcd(4), bcd(5));
  }
  // The access-point count sits in the LEN byte for 0x17/0x69.
  const std::size_t wifiCount = type_ == kWifi4 ? in_.u8() : static_cast<std::uint8_t>(frame_[2]);
  for (std::size_t i = 0; i < wifiCount && !in_.failed(); ++i) {
    if (type_ == kWifi4) in_.skip(2);
    in_.skip(6);                    // MAC
    if (type_ != kWifi4) in_.u8();  // signal
  }
  if (type_ != kWifi4) {
    const std::size_t cellCount = in_.u8();
    in_.skip(3);              // mcc, mnc
    in_.skip(cellCount * 5);  // lac, cid, rssi
    // The answer echoes the BCD time instead of a serial, without CRC.
    std::string response = {static_cast<char>(kShortStart), static_cast<char>(kShortStart), '\0',
                            static_cast<char>(type_)};
    response.append(time);
    response.append("\r\n");
    result_.response = std::move(response);
  }
  emit(std::move(p));
}

// Multi-cell LBS (and Wi-Fi) reports: a time and cell towers, no GPS.
void Decoder::decodeLbsMultiple() {
  Position p = newPosition();
  p.deviceTimeUs = readDate();
  const bool wanway = variant_ == Variant::kWanwayS20;
  const bool sl4x = variant_ == Variant::kSl4x;
  if (wanway || sl4x) in_.u8();  // timing advance
  const unsigned mcc = in_.u16();
  if ((mcc & 0x8000) != 0 || sl4x) {
    in_.u16();
  } else {
    in_.u8();
  }
  const bool cell4g = type_ == kWifiAlarm && in_.u8() > 0;
  const std::size_t cellCount =
      wanway || type_ == kWifiAlarm ? in_.u8() : (type_ == kWifi5 ? 6 : 7);
  std::size_t cellSize = 2 + 3;
  if (type_ == kLbs2 || type_ == kWifi3 || cell4g) {
    cellSize = 4 + 8;
  } else if (type_ == kWifi5 || type_ == kX1Gps) {
    cellSize = 2 + 4;
  }
  in_.skip(cellCount * (cellSize + 1));  // + rssi
  if (!wanway && !sl4x) in_.u8();        // timing advance
  if (type_ != kLbsMultiple1 && type_ != kLbsMultiple2 && type_ != kLbsMultiple3 &&
      type_ != kLbs2 && type_ != kX1Gps) {
    const std::size_t wifiCount = in_.u8();
    in_.skip(wifiCount * 7);  // MAC + signal
  }
  if (type_ == kWifiAlarm) {
    const unsigned alarm = in_.u8();
    const unsigned language = in_.u8();
    addAlarm(p, ((language >> 4) << 8) | alarm);
  }
  ack(type_);
  emit(std::move(p));
}

// 0x15: a text answer to a command (or the ICCID).
void Decoder::decodeStringMessage() {
  Position p = newPosition();
  const std::size_t commandLength = in_.u8();
  if (commandLength > 0) {
    in_.u32();  // server flag
    const std::string data = asciiOf(checkedLength(commandLength, 4));
    if (data.rfind("<ICCID:", 0) == 0 && data.size() >= 27) {
      p.set("iccid", data.substr(7, 20));
      result_.commandAnswer = CommandAnswer{data};
    } else {
      answer(p, data);
    }
  } else if (payloadLeft() > 4) {
    // Some devices leave the length at 0 and send a NUL-padded text field (Traccar drops the
    // text); keep it when it reads as text.
    in_.u32();  // server flag
    const std::string_view rest = in_.bytes(payloadLeft());
    const std::string_view text = rest.substr(0, rest.find('\0'));
    if (!text.empty() && printable(text)) answer(p, std::string(text));
  }
  ack(type_);
  emit(std::move(p));
}

void Decoder::decodeBms() {
  in_.skip(8);  // serial number
  Position p = newPosition();
  p.deviceTimeUs = std::int64_t{in_.u32()} * 1'000'000;
  p.set("relativeCapacity", std::int64_t{in_.u8()});
  p.set("remainingCapacity", std::int64_t{in_.u16()});
  p.set("absoluteCapacity", std::int64_t{in_.u8()});
  p.set("fullCapacity", std::int64_t{in_.u16()});
  p.set("batteryHealth", std::int64_t{in_.u8()});
  p.set("batteryTemp", in_.u16() * 0.1 - 273.1);
  p.set("current", std::int64_t{in_.u16()});
  p.set(attr::kBattery, in_.u16() * 0.001);
  p.set("cycleIndex", std::int64_t{in_.u16()});
  for (int i = 1; i <= 14; ++i) p.set("batteryCell" + std::to_string(i), in_.u16() * 0.001);
  p.set("currentChargeInterval", std::int64_t{in_.u16()});
  p.set("maxChargeInterval", std::int64_t{in_.u16()});
  p.set("barcode", std::string(trim(asciiOf(16))));
  p.set("batteryVersion", std::int64_t{in_.u16()});
  p.set("manufacturer", std::string(trim(asciiOf(16))));
  p.set("batteryStatus", std::int64_t{in_.u32()});
  p.set("controllerStatus", std::int64_t{in_.u32()});
  p.set("controllerFault", std::int64_t{in_.u32()});
  ack(type_);
  emit(std::move(p));
}

// 0x13 with 22 bytes after the type: a status report with a temperature word.
void Decoder::decodeLongStatus() {
  Position p = newPosition();
  in_.skip(1 + 2 + 1 + 1);  // information content, satellites, alarm, language
  p.set(attr::kBatteryLevel, std::int64_t{in_.u8()});
  in_.skip(1 + 2 + 1 + 2 + 2);  // working mode, voltage, reserved, working times, working time
  const unsigned value = in_.u16();
  const double temperature = (value & 0x7FFF) * 0.1;
  p.set("temp1", (value & 0x8000) != 0 ? temperature : -temperature);
  ack(type_);
  emit(std::move(p));
}

void Decoder::decodeIButton() {
  Position p = newPosition();
  in_.skip(8);  // IMEI
  decodeGps(p);
  decodeLbs(false);
  const std::uint64_t high = in_.u32();
  const std::uint64_t driver = (high << 16) | in_.u16();
  p.set("driverUniqueId", std::to_string(driver));
  ack(type_);
  emit(std::move(p));
}

// 0x36 of TRX16I-type devices (LEN 0x35): GPS, one cell, then a status block whose only fields
// known here are the battery voltage (1/10 V) and the driver card at the end.
void Decoder::decodeTrx16iStatus() {
  Position p = newPosition();
  p.set(attr::kType, std::int64_t{type_});
  decodeGps(p);
  const unsigned mcc = in_.u16();
  if ((mcc & 0x8000) != 0) {
    in_.u16();
  } else {
    in_.u8();
  }
  in_.u16();  // lac
  in_.u32();  // cid
  in_.skip(9);
  p.set(attr::kBattery, in_.u8() / 10.0);
  in_.skip(3);
  const std::string_view driver = in_.bytes(8);
  if (std::any_of(driver.begin(), driver.end(), [](char c) { return c != 0; })) {
    p.set("driverUniqueId", toHex(driver));
  }
  ack(type_);
  emit(std::move(p));
}

// 0xA3 with LEN 0x18 (wearables): no fix; a step counter at a fixed offset.
void Decoder::decodeStepStatus() {
  Position p = newPosition();
  p.set(attr::kType, std::int64_t{type_});
  in_.skip(11);
  p.set("steps", std::int64_t{in_.u16()});
  ack(type_);
  emit(std::move(p));
}

// GPS / LBS / status reports in their many flavours.
void Decoder::decodeGeneric() {
  if (type_ == kLbsStatus && variant_ == Variant::kSpace10x) {
    result_.note = "multi-LBS report ignored";
    return;
  }
  Position p = newPosition();
  p.set(attr::kType, std::int64_t{type_});
  const bool ntReport = modelNt_ && (type_ == kGpsLbs2 || type_ == kGpsLbsDriver);

  if (type_ == kGpsLbs1 && model_ == "QH302R") in_.skip(8);  // IMEI
  if (ntReport) {
    in_.u8();     // location source
    in_.skip(8);  // IMEI
    readDate();   // device time; the GPS time below replaces it
  }

  if (hasGps()) decodeGps(p);

  if (hasLbs() && in_.remaining() > 6) {
    const bool hasLength =
        hasStatus() && type_ != kLbsStatus && type_ != kLbsAlarm && type_ != kAlarmModule &&
        (type_ != kGpsLbsStatus1 || variant_ != Variant::kVxt01) && type_ != kWifi3;
    decodeLbs(hasLength);
  }

  if (hasStatus()) {
    if (type_ == kWifi3) in_.u8();  // network indicator
    decodeStatus(p);
    if (variant_ == Variant::kObd6) {
      const unsigned signal = in_.u16();
      p.satellites = static_cast<int>(((signal >> 10) & 0x1F) + ((signal >> 5) & 0x1F));
      p.set(attr::kRssi, std::int64_t{signal & 0x1F});
      addAlarm(p, in_.u8());
      in_.u8();  // language
      p.set(attr::kBatteryLevel, std::int64_t{in_.u8()});
      const unsigned mode = in_.u8();
      p.set(attr::kPower, in_.u16() / 100.0);
      in_.u8();   // reserved
      in_.u16();  // working time
      if (mode == 4) p.set("temp1", in_.i16() / 10.0);
    } else {
      if (type_ == kWifi3 || ntReport) p.set(attr::kPower, in_.u16() / 100.0);
      if (type_ == kStatus && model_ == "R11") {
        p.set(attr::kPower, in_.u16() / 100.0);
      } else {
        const unsigned battery = in_.u8();
        if (ntReport) {
          p.set(attr::kBattery, battery / 10.0);
        } else if (battery <= 6) {
          p.set(attr::kBatteryLevel, std::int64_t{battery * 100 / 6});
        } else if (battery <= 100) {
          p.set(attr::kBatteryLevel, std::int64_t{battery});
        }
      }
      p.set(attr::kRssi, std::int64_t{in_.u8()});
      if (type_ == kStatus && modelLw_) {
        p.set(attr::kPower, (in_.u16() & 0x0FFF) / 10.0);
      } else {
        unsigned extension = in_.u8();
        if ((type_ == kGpsLbsStatus3 || type_ == kFenceMulti || type_ == kAlarmModule) &&
            in_.remaining() > 0) {
          // The language byte's high nibble extends the alarm code.
          extension +=
              (static_cast<unsigned>(static_cast<std::uint8_t>(frame_[in_.position()])) >> 4) << 8;
        }
        if (type_ == kStatus && modelSw_) {
          p.set(attr::kPower, static_cast<double>(extension));
        } else if (variant_ == Variant::kTrx16i) {
          p.set(attr::kEvent, std::int64_t{extension});
        } else if (variant_ != Variant::kVxt01) {
          addAlarm(p, extension);
        }
      }
    }
  }

  if (type_ == kStatus2 || type_ == kWifi3 || type_ == kGpsLbsStatus3 || type_ == kFenceMulti ||
      type_ == kAlarmModule || ntReport || variant_ == Variant::kTrx16i) {
    in_.u8();  // language
  }

  if (type_ == kStatus2 || type_ == kAlarmModule) {
    while (in_.remaining() > 6) {
      const unsigned module = in_.u16();
      const std::size_t moduleLength = in_.u8();
      switch (module) {
        case 0x0018:
          p.set(attr::kBattery, in_.u16() / 100.0);
          break;
        case 0x0032:
          p.set("startupStatus", std::int64_t{in_.u8()});
          break;
        case 0x006A:
          p.set(attr::kBatteryLevel, std::int64_t{in_.u8()});
          break;
        default:
          in_.skip(moduleLength);
          break;
      }
    }
  }

  if (type_ == kWifi3) {
    p.set(attr::kOdometer, std::int64_t{in_.u32()});
    p.set(attr::kHours, std::int64_t{in_.u32()} * 1000);
    in_.skip(8);  // terminal id
    p.set(attr::kInput, std::int64_t{in_.u16()});
  }

  if (type_ == kGpsLbsStatus1 && variant_ == Variant::kTrx16i) {
    const std::string_view driver = in_.bytes(8);
    p.set("driverUniqueId", toHex(driver));
  }

  if (type_ == kGpsLbs1) {
    switch (variant_) {
      case Variant::kGt06eCard: {
        p.set(attr::kOdometer, std::int64_t{in_.u32()});
        const std::string card = asciiOf(in_.u8());
        in_.u8();  // alarm
        in_.u8();  // swiped
        p.set("card", std::string(trim(card)));
        break;
      }
      case Variant::kBenway: {
        const unsigned mask = in_.u16();
        p.set(attr::kIgnition, (mask & (1u << 15)) != 0);
        p.set("in2", (mask & (1u << 14)) != 0);
        if ((mask & (1u << 12)) != 0) {
          std::int64_t value = mask & 0x1FF;
          if ((mask & (1u << 9)) != 0) value = -value;
          p.set("temp1", value);
        } else {
          const unsigned value = mask & 0x3FF;
          if ((mask & (1u << 13)) != 0) {
            p.set("adc1", std::int64_t{value});
          } else {
            p.set("adc1", value * 0.1);
          }
        }
        break;
      }
      case Variant::kVxt01:
        decodeStatus(p);
        p.set(attr::kPower, in_.u16() * 0.01);
        p.set(attr::kRssi, std::int64_t{in_.u8()});
        in_.u8();  // alarm extension
        break;
      case Variant::kS5: {
        decodeStatus(p);
        p.set(attr::kPower, in_.u16() * 0.01);
        p.set(attr::kRssi, std::int64_t{in_.u8()});
        addAlarm(p, in_.u8());
        p.set("oil", std::int64_t{in_.u16()});
        std::int64_t temperature = in_.u8();
        if ((temperature & 0x80) != 0) temperature = -(temperature & 0x7F);
        p.set("temp1", temperature);
        p.set(attr::kOdometer, std::int64_t{in_.u32()} * 10);
        break;
      }
      case Variant::kWetrust:
        p.set(attr::kOdometer, std::int64_t{in_.u32()});
        p.set("card", asciiOf(in_.u8()));
        if (in_.u8() > 0) p.addAlarm("general");
        p.set("cardStatus", std::int64_t{in_.u8()});
        p.set("drivingTime", std::int64_t{in_.u16()});
        break;
      default:
        break;
    }
  }

  if (type_ == kGpsLbs2 && variant_ == Variant::kSeeworld) {
    p.set(attr::kIgnition, in_.u8() > 0);
    in_.u8();  // reporting mode
    in_.u8();  // supplementary transmission
    p.set(attr::kOdometer, std::int64_t{in_.u32()});
    in_.u32();  // travel time
    std::int64_t temperature = in_.u16();
    if ((temperature & 0x8000) != 0) temperature = -(temperature & 0x7FFF);
    p.set("temp1", static_cast<double>(temperature) * 0.01);
    p.set("humidity", in_.u16() * 0.01);
  }

  if (type_ == kGpsLbsStatus4 && variant_ == Variant::kSl4x) p.altitude = in_.i16();

  if ((type_ == kGpsLbs2 || type_ == kGpsLbs3 || type_ == kGpsLbs4 || type_ == kGpsLbs5) &&
      in_.remaining() >= 3 + 6 && !modelNt_) {
    p.set(attr::kIgnition, in_.u8() > 0);
    p.set(attr::kEvent, std::int64_t{in_.u8()});  // report reason
    if (in_.u8() > 0) p.set(attr::kArchive, true);
    if (variant_ == Variant::kSl4x) {
      if (in_.remaining() > 2 + 6) p.set(attr::kOdometer, std::int64_t{in_.u32()});
      p.altitude = in_.i16();
    }
  }

  if (type_ == kGpsLbs3) {
    const unsigned module = in_.u16();
    const std::size_t subLength = in_.u8();
    switch (module) {
      case 0x0027:
        p.set(attr::kPower, in_.u16() * 0.01);
        break;
      case 0x002E:
        p.set(attr::kOdometer, std::int64_t{in_.u32()});
        break;
      case 0x003B:
        p.set("accuracy", in_.u16() * 0.01);
        break;
      default:
        in_.skip(subLength);
        break;
    }
  }

  if (type_ == kWifi) {  // GPS_LBS_RFID
    p.set("driverUniqueId", hexOf(8));
    in_.u8();  // validity
  }

  if (ntReport) {
    p.set(attr::kOdometer, std::int64_t{u24()});
    p.set(attr::kHours, std::int64_t{u24()} * 60 * 1000);
  }
  if (modelNt_ && type_ == kGpsLbsDriver) {
    const std::size_t driverLength = in_.u8();
    if (driverLength > 0) {
      in_.u8();  // identifier type
      p.set("driverUniqueId", hexOf(driverLength - 1));
    }
  }

  if (in_.remaining() == 3 + 6 || in_.remaining() == 3 + 4 + 6) {
    p.set(attr::kIgnition, in_.u8() > 0);
    in_.u8();  // upload mode
    if (in_.u8() > 0) p.set(attr::kArchive, true);
  }
  if (in_.remaining() == 4 + 6) p.set(attr::kOdometer, std::int64_t{in_.u32()});

  if (type_ == kGpsLbsStatus3 || type_ == kFenceMulti) {
    p.set("geofence", std::int64_t{in_.u8()});
  }

  ack(type_);
  emit(std::move(p));
}

void Decoder::decodeAlarmMessage() {
  Position p = newPosition();
  const bool jc400 = variant_ == Variant::kJc400;
  const bool withFix = length_ > 12;  // more data than a bare time and event
  if (withFix) {
    if (jc400) in_.skip(2 + 1);  // marker, version
    GpsLayout layout;
    layout.hasSatellites = jc400;
    layout.hasSpeed = jc400;
    layout.longSpeed = jc400;
    layout.flagsBeforeSpeed = jc400;
    decodeGps(p, layout);
  } else {
    p.deviceTimeUs = readDate();
  }
  if (jc400) p.set(attr::kPower, in_.u16() * 0.1);
  const unsigned event = in_.u8();
  p.set(attr::kEvent, std::int64_t{event});
  p.set("eventData", std::int64_t{in_.u16()});
  switch (event) {
    case 0x01:
      p.addAlarm(withFix ? "sos" : "general");
      break;
    case 0x0E:
      p.addAlarm("lowPower");
      break;
    case 0x76:
      p.addAlarm("temperature");
      break;
    case 0x80:
      p.addAlarm("vibration");
      break;
    case 0x87:
      p.addAlarm("overspeed");
      break;
    case 0x88:
      p.addAlarm("powerCut");
      break;
    case 0x90:
      p.addAlarm("hardAcceleration");
      break;
    case 0x91:
      p.addAlarm("hardBraking");
      break;
    case 0x92:
      p.addAlarm("hardCornering");
      break;
    case 0x93:
      p.addAlarm("accident");
      break;
    default:
      break;
  }
  if (in_.remaining() > 6) p.set("eventFiles", asciiOf(in_.remaining() - 6));
  ack(type_);
  emit(std::move(p));
}

void Decoder::decodeExtended() {
  switch (type_) {
    case kStringInfo:
      return decodeStringInfo();
    case kInfo:
      return decodeInfo();
    case kGpsLbsStatus4:
    case kWifi5:
      return decodeAz735();
    case kObd:
      return decodeObd();
    case kGpsModular:
      return decodeModular();
    case kMultimedia:
      return decodeMultimedia();
    case kSerial:
      return decodeSerialData();
    case kPeripheral:
    case kDeviceStatus:
      return decodeDeviceStatus();
    case kGpsLbs8:
      return decodeGpsLbs8();
    default:
      // Photo data and unknown extended types: no answer.
      result_.note = "unsupported message type";
      return;
  }
}

// 0x21: a command's answer as text (ASCII or UTF-16BE); WHERE# answers carry a location.
void Decoder::decodeStringInfo() {
  Position p = newPosition();
  in_.u32();  // server flag
  const unsigned encoding = in_.u8();
  const std::string_view raw = in_.bytes(checkedLength(in_.remaining(), 6));
  const std::string data = encoding == 1 ? asciiText(raw) : utf16beText(raw);
  result_.commandAnswer = CommandAnswer{data};
  if (auto location = parseLocationText(data)) {
    p.hasLocation = std::fabs(location->latitude) <= 90 && std::fabs(location->longitude) <= 180;
    p.valid = p.hasLocation;
    p.latitude = location->latitude;
    p.longitude = location->longitude;
    p.course = location->course;
    p.speedKmh = location->speed * kKnotsToKmh;  // Traccar stores the value as knots
    p.deviceTimeUs = location->timeUs;
  } else {
    p.set(attr::kResult, data);
  }
  emit(std::move(p));
}

void Decoder::decodeInfo() {
  Position p = newPosition();
  const unsigned subType = in_.u8();
  switch (subType) {
    case 0x00:
      p.set("adc1", in_.u16() * 0.01);
      break;
    case 0x04: {
      // "ALM1=C5;ALM2=CC;STA1=C0;DYD=01;..." with hex values.
      const std::string content = asciiOf(checkedLength(in_.remaining(), 6));
      for (std::string_view item : split(content, ';')) {
        auto pair = split(item, '=');
        if (pair.size() < 2) continue;
        auto value = parseHex(pair[1]);
        if (!value) continue;
        if (pair[0].size() == 4 && pair[0].substr(0, 3) == "ALM" && pair[0][3] >= '1' &&
            pair[0][3] <= '4') {
          p.set("alarm" + std::string(1, pair[0][3]) + "Status", *value);
        } else if (pair[0] == "STA1") {
          p.set("otherStatus", *value);
        } else if (pair[0] == "DYD") {
          p.set("engineStatus", *value);
        }
      }
      break;
    }
    case 0x05: {
      if (in_.remaining() >= 6 + 1 + 6) p.deviceTimeUs = readDate();
      const unsigned flags = in_.u8();
      p.set("door", (flags & 0x01) != 0);
      p.set("io1", (flags & 0x04) != 0);
      break;
    }
    case 0x0A: {
      in_.skip(8 + 8);  // IMEI, IMSI
      std::string iccid = hexOf(10);
      while (!iccid.empty() && iccid.back() == 'f') iccid.pop_back();  // padding
      p.set("iccid", std::move(iccid));
      break;
    }
    case 0x0B: {
      const std::size_t contentLength = length_ >= 6 ? length_ - 6 : 0;
      if (contentLength == 1) {
        p.set("networkTechnology",
              std::string(static_cast<std::int8_t>(in_.u8()) > 0 ? "4G" : "2G"));
      } else if (contentLength == 2) {
        p.set(attr::kPower, in_.u16() / 100.0);
      }
      break;
    }
    case 0x0D: {
      if (in_.remaining() > 0 && frame_[in_.position()] != '!') in_.skip(6);
      const std::string text = asciiOf(checkedLength(in_.remaining(), 6));
      auto fuel = parseFuelText(text);
      if (!fuel) {
        result_.note = "unrecognised fuel sensor text";
        return;
      }
      p.set("temp1", fuel->first);
      p.set(attr::kFuel, fuel->second);
      break;
    }
    case 0x1B: {
      const bool letter =
          in_.remaining() > 0 && std::isalpha(static_cast<unsigned char>(frame_[in_.position()]));
      if (letter) {
        p.set("serial", std::string(trim(asciiOf(checkedLength(in_.remaining(), 6)))));
      } else {
        in_.skip(2);  // header, type
        p.set("driverUniqueId", hexOf(4));
        in_.skip(2);  // checksum, footer
      }
      break;
    }
    case 0x1E:
      p.set("temp1", in_.i32() / 10.0);
      p.set("humidity", in_.i32() / 10.0);
      break;
    default:
      result_.note = "unsupported info type";
      return;
  }
  emit(std::move(p));  // INFO is not acknowledged
}

// AZ735 0x32/0x33 in the extended form: fix, cell, skipped extra cells and Wi-Fi, status.
void Decoder::decodeAz735() {
  Position p = newPosition();
  GpsLayout layout;
  layout.hasLength = true;
  if (!decodeGps(p, layout)) p.hasLocation = false;  // time only
  if (decodeLbs(true)) p.set(attr::kRssi, std::int64_t{in_.u8()});
  in_.skip(in_.u8());  // additional cell towers
  in_.skip(in_.u8());  // Wi-Fi access points
  const unsigned status = in_.u8();
  p.set(attr::kStatus, std::int64_t{status});
  if (type_ == kWifi5) {
    switch (status) {
      case 0xA0:
        p.set("armed", true);
        break;
      case 0xA1:
        p.set("armed", false);
        break;
      case 0xA2:
      case 0xA3:
        p.addAlarm("lowBattery");
        break;
      case 0xA4:
        p.addAlarm("general");
        break;
      case 0xA5:
        p.addAlarm("door");
        break;
      default:
        break;
    }
  }
  in_.skip(in_.u8());  // reserved extension
  ackExtended(type_);
  emit(std::move(p));
}

// 0x8C: OBD values as ASCII "pid=hex" pairs.
void Decoder::decodeObd() {
  Position p = newPosition();
  p.deviceTimeUs = readDate();
  p.set(attr::kIgnition, in_.u8() > 0);
  const std::string data = asciiOf(checkedLength(in_.remaining(), 18));
  for (std::string_view item : split(data, ',')) {
    auto values = split(item, '=');
    if (values.size() < 2 || values[0].size() < 2 || values[1].empty()) continue;
    auto pid = parseHex(values[0].substr(0, 2));
    if (!pid) continue;
    if (*pid == 0x74) {
      p.set(attr::kVin, std::string(values[1]));
      continue;
    }
    auto value = parseHex(values[1]);
    if (!value) continue;
    const double scaled = static_cast<double>(*value) * 0.01;
    switch (*pid) {
      case 0x40:
        p.set(attr::kOdometer, scaled);
        break;
      case 0x43:
        p.set(attr::kFuel, scaled);
        break;
      case 0x45:
        p.set(attr::kCoolantTemp, scaled);
        break;
      case 0x53:
        p.set(attr::kObdSpeed, scaled);
        break;
      case 0x54:
        p.set(attr::kRpm, scaled);
        break;
      case 0x71:
        p.set("fuelUsed", scaled);
        break;
      case 0x73:
        p.set(attr::kHours, scaled);
        break;
      default:
        break;
    }
  }
  emit(std::move(p));  // OBD is not acknowledged
}

// 0x70: a list of modules (type, length, value).
void Decoder::decodeModular() {
  Position p = newPosition();
  while (in_.remaining() > 6) {
    const unsigned module = in_.u16();
    const std::size_t moduleLength = in_.u16();
    switch (module) {
      case 0x03:
        p.set("iccid", hexOf(10));
        break;
      case 0x09:
        p.satellites = in_.u8();
        break;
      case 0x0A:
        p.set("satVisible", std::int64_t{in_.u8()});
        break;
      case 0x11:
        in_.skip(2 + 2 + 2 + 3 + 1);  // mcc, mnc, lac, cid, rssi
        break;
      case 0x18:
        p.set(attr::kBattery, in_.u16() / 100.0);
        break;
      case 0x28:
        p.hdop = in_.u8() / 10.0;
        break;
      case 0x29:
        p.set("index", std::int64_t{in_.u32()});
        break;
      case 0x2A: {
        const unsigned input = in_.u8();
        p.set("door", (input & 0x0F) > 0);
        p.set("tamper", (input >> 4) > 0);
        break;
      }
      case 0x2B:
        p.set("bootReason", std::int64_t{in_.u8()});
        break;
      case 0x2E:
        p.set(attr::kOdometer, std::int64_t{in_.u32le()});
        break;
      case 0x33: {
        p.deviceTimeUs = std::int64_t{in_.u32()} * 1'000'000;
        p.satellites = in_.u8();
        p.altitude = in_.i16();
        double latitude = in_.u32() / 1'800'000.0;
        double longitude = in_.u32() / 1'800'000.0;
        p.speedKmh = in_.u8();
        const unsigned flags = in_.u16();
        p.course = static_cast<double>(flags & 0x3FF);
        p.valid = (flags & (1u << 12)) != 0;
        if ((flags & (1u << 10)) == 0) latitude = -latitude;
        if ((flags & (1u << 11)) != 0) longitude = -longitude;
        p.latitude = latitude;
        p.longitude = longitude;
        p.hasLocation = std::fabs(latitude) <= 90 && std::fabs(longitude) <= 180;
        if (!p.hasLocation) p.valid = false;
        break;
      }
      case 0x34: {
        const unsigned event = in_.u8();
        switch (event) {
          case 0x10:
            p.addAlarm("door");
            break;
          case 0x12:
            p.addAlarm("removing");
            break;
          case 0x14:
            p.addAlarm("geofenceEnter");
            break;
          case 0x15:
            p.addAlarm("geofenceExit");
            break;
          case 0x16:
            p.addAlarm("temperature");
            break;
          case 0x1A:
            p.addAlarm("lowBattery");
            break;
          case 0x1B:
            p.addAlarm("overspeed");
            break;
          case 0x1C:
            p.addAlarm("powerOn");
            break;
          case 0x1D:
            p.addAlarm("powerOff");
            break;
          case 0x20:
            p.addAlarm("vibration");
            break;
          case 0x21:
            p.addAlarm("powerCut");
            break;
          case 0x23:
            p.addAlarm("tampering");
            break;
          default:
            break;
        }
        p.set(attr::kEvent, std::int64_t{event});
        in_.u32le();         // time
        in_.skip(in_.u8());  // content
        break;
      }
      case 0x7F:
        p.set("tag1Id", hexOf(6));
        p.set("tag1Battery", in_.u16() / 1000.0);
        p.set("tag1BatteryLevel", std::int64_t{in_.u8()});
        p.set("tag1Temp", in_.i16() / 10.0);
        p.set("tag1Humidity", std::int64_t{in_.i16()});
        p.set("tag1Status", std::int64_t{in_.u8()});
        break;
      default:
        in_.skip(moduleLength);
        break;
    }
  }
  // The serial follows the modules; acknowledged in the short form.
  result_.response = buildPacket(false, kGpsModular, {}, in_.u16());
  emit(std::move(p));
}

// 0x41 multimedia chunks: Tern stores no media, but the device expects each chunk ACKed.
void Decoder::decodeMultimedia() {
  in_.skip(8 + 4);                  // serial number, timestamp
  in_.skip(4 + 4 + 2 + 1 + 1 + 2);  // GPS
  in_.skip(2 + 2 + 2 + 2);          // cell
  in_.skip(4 + 4 + 1 + 1);          // media id, length, type, format
  ackExtended(type_);
  result_.note = "media not stored";
}

// 0x9B: data relayed from a serial peripheral, as text when printable, else hex.
void Decoder::decodeSerialData() {
  Position p = newPosition();
  in_.u8();  // external device type
  const std::string_view data = in_.bytes(checkedLength(in_.remaining(), 6));
  std::string value = printable(data) ? std::string(trim(data)) : toHex(data);
  answer(p, std::move(value));
  emit(std::move(p));  // not acknowledged
}

// 0xF1 device status / 0xF2 peripheral status: a UNIX time, then id/length/value items.
void Decoder::decodeDeviceStatus() {
  Position p = newPosition();
  p.deviceTimeUs = std::int64_t{in_.u32()} * 1'000'000;
  while (in_.remaining() > 6 && !in_.failed()) {
    const unsigned id = in_.u16();
    if (type_ == kPeripheral) {
      switch (id) {
        case 0x000A: {
          const std::size_t length = in_.u16();
          in_.u8();  // MAC address type
          p.set("mac", hexOf(6));
          const unsigned event = in_.u8();
          p.set(attr::kEvent, std::int64_t{event});
          const unsigned eventData = in_.u8();
          if (event > 0) p.set("eventData", std::int64_t{eventData});
          p.set("dataType", std::int64_t{in_.u8()});
          p.set("dataDetails", hexOf(checkedLength(length, 10)));
          break;
        }
        case 0x000C:
          in_.u8();  // length
          p.set("externalBatteryLevel", std::int64_t{in_.u8()});
          if (in_.u8() > 0) p.set("externalBatteryCharge", true);
          p.set("externalBatteryCycles", std::int64_t{in_.u16()});
          in_.skip(6);
          break;
        default: {
          const std::size_t length = in_.u8();
          in_.skip(length == 0 ? in_.u8() : length);
          break;
        }
      }
    } else {
      const std::size_t length = in_.u8();
      switch (id) {
        case 0x0001: {
          const unsigned motion = in_.u8();
          p.set(attr::kMotion, motion == 0x02 || motion == 0x04);
          break;
        }
        case 0x0002:
          p.set("armed", in_.u8() > 0);
          break;
        case 0x0004:
          p.set(attr::kIgnition, in_.u8() > 0);
          break;
        case 0x0005:
          p.set(attr::kPower, in_.u16() / 100.0);
          break;
        case 0x0007:
          p.set(attr::kCharge, in_.u8() > 0);
          break;
        case 0x000A:
          p.set("chargeVoltage", std::int64_t{in_.u16()});
          break;
        case 0x000B:
          p.set("batteryTemp", in_.u16() / 10.0);
          break;
        default:
          in_.skip(length);
          break;
      }
    }
  }
  ack(type_);  // short form although the request was extended
  emit(std::move(p));
}

void Decoder::decodeGpsLbs8() {
  Position p = newPosition();
  decodeGps(p);
  in_.u8();  // upload mode
  in_.u8();  // re-upload
  decodeLbs(false);
  emit(std::move(p));  // not acknowledged
}

}  // namespace

DecodeResult decodeFrame(std::string_view frame, SessionState& session, std::int64_t serverTimeUs) {
  return Decoder(frame, session, serverTimeUs).run();
}

}  // namespace tern::codec::trackers::gt06
