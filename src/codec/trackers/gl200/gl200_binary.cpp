// Queclink binary messages. Two generations share the port with the text protocol:
//  * "+RSP"/"+EVT"/"+INF" (and their buffered twins "+BSP"/"+BVT"/"+BNF"): a message type byte,
//    a report mask, the length, device type, versions, the IMEI (8 bytes: seven two-digit decimal
//    bytes and a final digit), then per-type fields and location records;
//  * the newer format: '+', 0x00, length, flags, IMEI as 16 hex digits, then records made of
//    tag/length items (tag 0x52 is a GNSS fix).
// Nothing is acknowledged in either generation.
#include <algorithm>
#include <cstdio>
#include <string>

#include "codec/trackers/gl200/gl200_decoders.h"
#include "codec/trackers/util.h"

namespace tern::codec::trackers::gl200 {

namespace {

constexpr std::uint8_t kRspLocationByCall = 3;
constexpr std::uint8_t kRspGeofence = 8;
constexpr std::uint8_t kRspCompressed = 100;

constexpr std::uint8_t kEvtLowBattery = 6;
constexpr std::uint8_t kEvtFirmwareUpdate = 15;
constexpr std::uint8_t kEvtIdling = 17;
constexpr std::uint8_t kEvtGpsSignal = 21;
constexpr std::uint8_t kEvtCrash = 23;
constexpr std::uint8_t kEvtGeofenceState = 26;
constexpr std::uint8_t kEvtGpsJamming = 31;
constexpr std::uint8_t kEvtJamming = 33;
constexpr std::uint8_t kEvtCommandResult = 34;
constexpr std::uint8_t kEvtRoaming = 35;
constexpr std::uint8_t kEvtIgnitionOn = 45;
constexpr std::uint8_t kEvtIgnitionOff = 46;

constexpr std::uint8_t kInfVersion = 6;
constexpr std::uint8_t kInfBattery = 7;
constexpr std::uint8_t kInfSignal = 5;
constexpr std::uint8_t kInfCell = 10;

constexpr std::uint8_t kTagGnss = 0x52;

Position newPosition(const SessionState& session) {
  Position p;
  p.protocol = std::string(kProtocolName);
  p.deviceId = session.deviceId;
  return p;
}

bool inRange(double lat, double lon) {
  return lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180;
}

// Seven bytes of two decimal digits and a last digit (e.g. 56 32 54 03 00 03 43 05 →
// 865084030003675). Bytes outside that form (devices configured to send a name there) are
// read as one unsigned number, zero-padded to 15 digits.
std::string legacyImei(std::string_view raw) {
  bool pairs = raw.size() == 8 && static_cast<std::uint8_t>(raw[7]) <= 9;
  for (std::size_t i = 0; pairs && i < 7; ++i) pairs = static_cast<std::uint8_t>(raw[i]) <= 99;
  char text[32];
  if (pairs) {
    int len = 0;
    for (std::size_t i = 0; i < 7; ++i) {
      len += std::snprintf(text + len, sizeof(text) - static_cast<std::size_t>(len), "%02u",
                           static_cast<unsigned>(static_cast<std::uint8_t>(raw[i])));
    }
    std::snprintf(text + len, sizeof(text) - static_cast<std::size_t>(len), "%u",
                  static_cast<unsigned>(static_cast<std::uint8_t>(raw[7])));
    return text;
  }
  std::uint64_t value = 0;
  for (char c : raw) value = (value << 8) | static_cast<std::uint8_t>(c);
  std::snprintf(text, sizeof(text), "%015llu", static_cast<unsigned long long>(value));
  return text;
}

std::optional<std::int64_t> readDateTime(ByteReader& r) {
  int year = r.u16();
  int month = r.u8();
  int day = r.u8();
  int hour = r.u8();
  int minute = r.u8();
  int second = r.u8();
  if (r.failed()) return std::nullopt;
  return civilToMicros(year, month, day, hour, minute, second);
}

// A location record: accuracy, speed (integer km/h then tenths), course, altitude, lon/lat in
// millionths of a degree, GPS time, cell (mcc, mnc, lac, cell id), a reserved byte. False when
// the record is cut short; hasLocation stays false for impossible coordinates or dates.
bool readLocationRecord(ByteReader& r, Position& p) {
  int accuracy = r.u8();
  int speedWhole = r.u16();
  int speedTenths = r.u8();
  int course = r.u16();
  int altitude = r.i16();
  double lon = r.i32() / 1e6;
  double lat = r.i32() / 1e6;
  auto time = readDateTime(r);
  r.skip(9);  // mcc, mnc, lac, cell id, reserved
  if (r.failed()) return false;
  p.hdop = accuracy;
  p.valid = accuracy > 0;  // 0: no fix, the last known position is repeated
  p.speedKmh = speedWhole + speedTenths / 10.0;
  if (course <= 360) p.course = course;
  p.altitude = altitude;
  p.hasLocation = time.has_value() && inRange(lat, lon);
  if (p.hasLocation) {
    p.latitude = lat;
    p.longitude = lon;
    p.deviceTimeUs = *time;
  }
  return true;
}

bool identify(SessionState& session, const std::string& id, DecodeResult& result) {
  if (id.empty() || (session.deviceId != id && !session.identify(id))) {
    result.note = "not identified";
    return false;
  }
  return true;
}

// Reads bits most significant first (the compressed records pack fields across bytes).
class BitReader {
 public:
  explicit BitReader(std::string_view data) : data_(data) {}
  std::uint32_t take(unsigned count) {
    std::uint32_t value = 0;
    for (unsigned i = 0; i < count; ++i) {
      std::size_t byte = position_ / 8;
      unsigned shift = 7 - static_cast<unsigned>(position_ % 8);
      std::uint32_t b =
          byte < data_.size() ? (static_cast<std::uint8_t>(data_[byte]) >> shift) & 1U : 0U;
      value = (value << 1) | b;
      ++position_;
    }
    return value;
  }
  std::int32_t takeSigned(unsigned count) {
    std::uint32_t raw = take(count);
    std::uint32_t sign = 1U << (count - 1);
    return static_cast<std::int32_t>(raw ^ sign) - static_cast<std::int32_t>(sign);
  }

 private:
  std::string_view data_;
  std::size_t position_ = 0;
};

// "+RSP": one or more location records after a per-type header.
void decodeReport(std::string_view frame, SessionState& session, DecodeResult& result) {
  ByteReader r(frame);
  r.skip(4);
  std::uint8_t type = r.u8();
  r.skip(4 + 2 + 1 + 2 + 2);  // mask, length, device type, protocol version, firmware version
  std::string_view imei = r.bytes(8);
  if (r.failed() || !identify(session, legacyImei(imei), result)) return;
  int battery = r.u8();
  int powerMv = r.u16();
  if (type == kRspGeofence) r.skip(2);
  r.skip(1);  // motion status
  int satellites = r.u8();
  if (type != kRspCompressed) r.skip(1);  // index
  if (type == kRspLocationByCall) {
    r.skip(1);  // phone number length; the BCD number ends with an 0xF nibble
    for (int guard = 0; guard < 64 && !r.failed(); ++guard) {
      std::uint8_t b = r.u8();
      if ((b & 0x0F) == 0x0F || (b & 0xF0) == 0xF0) break;
    }
  }
  if (r.failed()) {
    result.note = "truncated message";
    return;
  }
  if (type == kRspCompressed) {
    // Differential track: a full point (attribute 01) then deltas (attribute 10), one second apart.
    int count = r.u16();
    std::int64_t speed = 0, heading = 0, latitude = 0, longitude = 0;
    std::int64_t time = 0;
    for (int i = 0; i < count && !r.failed() && r.remaining() > 0; ++i) {
      if (time > 0) time += 1;
      std::uint8_t first = r.u8();
      if (r.failed()) break;
      unsigned attribute = static_cast<unsigned>(first >> 6);
      if (attribute == 1) {
        r.seek(r.position() - 1);
        BitReader bits(r.bytes(3));
        bits.take(3);  // attribute, fix type
        speed = bits.take(12);
        heading = bits.take(9);
        longitude = r.i32();
        latitude = r.i32();
        if (time == 0) time = r.u32();
      } else if (attribute == 2) {
        r.seek(r.position() - 1);
        BitReader bits(r.bytes(5));
        bits.take(3);
        speed += bits.takeSigned(7);
        heading += bits.takeSigned(7);
        longitude += bits.takeSigned(12);
        latitude += bits.takeSigned(11);
      } else {
        continue;  // an invalid or repeated point: one byte
      }
      if (r.failed()) break;
      double lat = static_cast<double>(latitude) / 1e6;
      double lon = static_cast<double>(longitude) / 1e6;
      if (!inRange(lat, lon) || speed < 0) continue;
      Position p = newPosition(session);
      p.valid = true;
      p.latitude = lat;
      p.longitude = lon;
      p.deviceTimeUs = time * 1'000'000;
      p.speedKmh = static_cast<double>(speed) / 10.0;
      if (heading >= 0 && heading <= 360) p.course = static_cast<double>(heading);
      result.positions.push_back(std::move(p));
    }
    return;
  }
  int count = r.u8();
  for (int i = 0; i < count; ++i) {
    Position p = newPosition(session);
    p.set(attr::kBatteryLevel, std::int64_t{battery});
    p.set(attr::kPower, powerMv / 1000.0);
    p.satellites = satellites;
    if (!readLocationRecord(r, p)) break;
    if (p.hasLocation) result.positions.push_back(std::move(p));
  }
}

// "+EVT": an event with one location record.
void decodeEvent(std::string_view frame, SessionState& session, DecodeResult& result) {
  ByteReader r(frame);
  r.skip(4);
  std::uint8_t type = r.u8();
  r.skip(4 + 2 + 1 + 2);  // mask, length, device type, protocol version
  int firmware = r.u16();
  std::string_view imei = r.bytes(8);
  if (r.failed() || !identify(session, legacyImei(imei), result)) return;
  Position p = newPosition(session);
  p.set("versionFw", std::to_string(firmware));
  p.set(attr::kBatteryLevel, std::int64_t{r.u8()});
  p.set(attr::kPower, r.u16() / 1000.0);
  r.skip(1);  // motion status
  p.satellites = r.u8();
  p.set(attr::kEvent, std::int64_t{type});
  switch (type) {
    case kEvtLowBattery:
      p.addAlarm("lowBattery");
      r.skip(2);  // backup battery voltage
      break;
    case kEvtIgnitionOn:
    case kEvtIgnitionOff:
      p.set(attr::kIgnition, type == kEvtIgnitionOn);
      r.skip(2 + 1 + 4);  // reserved, report type, duration
      break;
    case kEvtFirmwareUpdate:
      r.skip(3);  // code, retry
      break;
    case kEvtIdling:
      r.skip(4);  // idling duration
      break;
    case kEvtGpsSignal:
      r.skip(5);  // signal state, reserved
      break;
    case kEvtGeofenceState:
      r.skip(12);  // geofence id, enable, mode, radius, check interval
      break;
    case kEvtGpsJamming:
      r.skip(2);
      break;
    case kEvtRoaming:
    case kEvtJamming:
    case kEvtCrash:
      r.skip(1);
      break;
    case kEvtCommandResult:
      r.skip(3);  // command id, result
      break;
    default:
      break;
  }
  r.skip(1);  // record count (always one)
  if (!readLocationRecord(r, p)) {
    result.note = "truncated message";
    return;
  }
  result.positions.push_back(std::move(p));
}

// "+INF": device information without a location.
void decodeInformation(std::string_view frame, SessionState& session, DecodeResult& result) {
  ByteReader r(frame);
  r.skip(4);
  std::uint8_t type = r.u8();
  r.skip(4 + 2);  // mask, length
  std::string_view imei = r.bytes(8);
  if (r.failed() || !identify(session, legacyImei(imei), result)) return;
  Position p = newPosition(session);
  p.hasLocation = false;
  r.skip(1 + 2);  // device type, protocol version
  p.set("versionFw", std::to_string(r.u16()));
  if (type == kInfVersion) r.skip(6);  // hardware, MCU versions, reserved
  r.skip(2);                           // motion status, reserved
  p.satellites = r.u8();
  r.skip(1 + 7 + 1 + 1 + 2 + 2 + 2 + 4 + 1);  // mode, last fix time, reserved, masks, intervals
  if (type == kInfBattery) {
    p.set(attr::kCharge, r.u8() != 0);
    p.set(attr::kPower, r.u16() / 1000.0);
    p.set(attr::kBattery, r.u16() / 1000.0);
    p.set(attr::kBatteryLevel, std::int64_t{r.u8()});
  }
  r.skip(10);  // ICCID
  if (type == kInfSignal) {
    p.set(attr::kRssi, std::int64_t{r.u8()});
    r.skip(1);
  }
  r.skip(3);                                // time zone
  if (type == kInfCell) r.skip(2 + 8 + 2);  // trigger, cell count, cell, ta, rx level
  auto time = readDateTime(r);
  if (r.failed()) {
    result.note = "truncated message";
    return;
  }
  p.deviceTimeUs = time.value_or(0);
  result.positions.push_back(std::move(p));
}

// Variable-length quantity of the newer format: one byte, or two when the top bit is set.
std::size_t readLength(ByteReader& r) {
  std::size_t value = r.u8();
  if ((value & 0x80) != 0) value = ((value & 0x7F) << 8) | r.u8();
  return value;
}

void decodeTagged(std::string_view frame, SessionState& session, DecodeResult& result) {
  ByteReader r(frame);
  r.skip(2);  // '+', 0x00
  std::size_t length = r.u16();
  if ((r.u8() & 0x80) != 0) r.skip(2);  // multi-packet: frame count and number
  std::string_view imeiRaw = r.bytes(8);
  if (r.failed()) {
    result.note = "truncated message";
    return;
  }
  std::string imei = toHex(imeiRaw).substr(1);
  if (!identify(session, imei, result)) return;
  r.skip(2 + 2 + 1);  // device type, protocol version, custom version
  r.skip(r.u8());     // reserved field
  // Records end before the count number, check byte and tail.
  std::size_t recordsEnd = std::min(length, frame.size());
  recordsEnd = recordsEnd >= 4 ? recordsEnd - 4 : 0;
  while (!r.failed() && r.position() < recordsEnd) {
    std::size_t recordStart = r.position();
    std::size_t recordEnd = recordStart + readLength(r);
    r.skip(4 + 2 + 1);  // generated time, record count number, record id
    std::int64_t event = r.u8();
    if (r.failed() || recordEnd <= r.position() || recordEnd > recordsEnd) break;
    while (!r.failed() && r.position() < recordEnd) {
      std::size_t id = readLength(r);
      std::size_t size = readLength(r);
      std::size_t dataEnd = r.position() + size;
      if (r.failed() || dataEnd > recordEnd) break;
      if (id == kTagGnss && size >= 22) {
        ByteReader g(frame.substr(r.position(), size));
        std::uint8_t status = g.u8();
        double lon = g.i32() / 1e6;
        double lat = g.i32() / 1e6;
        std::int64_t time = g.u32();
        double speed = g.u16() / 10.0;
        double hdop = g.u8() / 10.0;
        int course = g.u16();
        std::uint32_t altitude = static_cast<std::uint32_t>(g.u8()) << 16;
        altitude |= g.u16();
        int satellites = g.u8();
        if (!g.failed() && inRange(lat, lon)) {
          Position p = newPosition(session);
          p.valid = ((status >> 2) & 0x3) == 0x2;  // fix state bits: 2 = fix
          p.latitude = lat;
          p.longitude = lon;
          p.deviceTimeUs = time * 1'000'000;
          p.speedKmh = speed;
          p.hdop = hdop;
          if (course <= 360) p.course = course;
          p.altitude = altitude / 10.0;
          p.satellites = satellites;
          p.set(attr::kEvent, event);
          result.positions.push_back(std::move(p));
        }
      }
      r.seek(dataEnd);
    }
    if (r.failed()) break;
    r.seek(recordEnd);
  }
}

}  // namespace

DecodeResult decodeBinary(std::string_view frame, SessionState& session) {
  DecodeResult result;
  if (frame.size() >= 2 && frame[1] == '\0') {
    decodeTagged(frame, session, result);
  } else {
    std::string_view header = frame.substr(0, 4);
    if (header == "+RSP" || header == "+BSP") {
      decodeReport(frame, session, result);
    } else if (header == "+EVT" || header == "+BVT") {
      decodeEvent(frame, session, result);
    } else if (header == "+INF" || header == "+BNF") {
      decodeInformation(frame, session, result);
    } else {
      result.note = "binary message without a position";  // +ACK, +HBD, +CRD, ...
    }
  }
  if (result.positions.empty() && result.note == nullptr) result.note = "no position in message";
  return result;
}

}  // namespace tern::codec::trackers::gl200
