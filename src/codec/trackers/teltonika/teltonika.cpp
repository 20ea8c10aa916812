// Teltonika FMxxx over TCP: an IMEI packet `00 0F <15 digits>` answered 01/00, then AVL packets
// `00000000 | DATA_LEN(4) | CODEC | N1 | records | N2 | CRC(4)` answered with N1 as 4 bytes.
// Codecs: 8, 8 Extended (0x8E), 16 (0x10) and GH3000 codec 7 carry positions; codec 12 (0x0C)
// and 13 (0x0D) carry command answers / serial data and get no answer. A lone 0xFF is a ping.
#include "codec/trackers/teltonika/teltonika.h"

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "codec/trackers/teltonika/teltonika_io.h"
#include "codec/trackers/util.h"

namespace tern::codec::trackers {

namespace {

// Kept equal to the registry's maxFrameSize for "teltonika" (a test checks it).
constexpr std::size_t kMaxFrameSize = 64 * 1024;
// The IMEI packet has a one-byte length in practice (the first byte must be 0 like an AVL
// preamble); real IMEIs are 15 digits, a little slack for odd firmware.
constexpr std::size_t kMaxImeiLength = 32;
constexpr std::size_t kAvlOverhead = 12;  // preamble, DATA_LEN and CRC around the data

constexpr std::uint8_t kCodecGh3000 = 0x07;
constexpr std::uint8_t kCodec8 = 0x08;
constexpr std::uint8_t kCodec8Ext = 0x8E;
constexpr std::uint8_t kCodec12 = 0x0C;
constexpr std::uint8_t kCodec13 = 0x0D;
constexpr std::uint8_t kCodec14 = 0x0E;
constexpr std::uint8_t kCodec16 = 0x10;

constexpr std::uint8_t kSerialCommand = 0x05;
constexpr std::uint8_t kSerialPhoto = 0x0D;  // codec 12 camera chunks

// GH3000 time is seconds since 2007-01-01 00:00 UTC in the low 30 bits.
constexpr std::int64_t kGh3000EpochSeconds = 1167609600;

constexpr std::string_view kProtocolName = "teltonika";

bool knownCodec(std::uint8_t codec) {
  return codec == kCodecGh3000 || codec == kCodec8 || codec == kCodec8Ext || codec == kCodec12 ||
         codec == kCodec13 || codec == kCodec14 || codec == kCodec16;
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

// Where the next frame could start: a 0x00 (IMEI or AVL packet) or a 0xFF ping.
std::size_t nextCandidate(std::string_view buffer) {
  for (std::size_t i = 1; i < buffer.size(); ++i) {
    auto b = static_cast<std::uint8_t>(buffer[i]);
    if (b == 0x00 || b == 0xFF) return i;
  }
  return buffer.size();
}

std::string u32be(std::uint32_t v) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i)
    out[static_cast<std::size_t>(i)] = static_cast<char>(v >> (24 - 8 * i));
  return out;
}

bool printable(std::string_view data) {
  for (char c : data) {
    auto b = static_cast<std::uint8_t>(c);
    if ((b < 0x20 || b > 0x7E) && b != '\r' && b != '\n' && b != '\t') return false;
  }
  return true;
}

// Java's String.trim(): drops control characters and spaces at both ends.
std::string_view trim(std::string_view s) {
  while (!s.empty() && static_cast<std::uint8_t>(s.front()) <= 0x20) s.remove_prefix(1);
  while (!s.empty() && static_cast<std::uint8_t>(s.back()) <= 0x20) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == sep) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

// Sets lat/lon when they are real coordinates; anything else leaves the position without one.
void setCoordinates(Position& p, double latitude, double longitude) {
  if (std::isfinite(latitude) && std::isfinite(longitude) && std::fabs(latitude) <= 90.0 &&
      std::fabs(longitude) <= 180.0) {
    p.latitude = latitude;
    p.longitude = longitude;
  } else {
    p.hasLocation = false;
    p.valid = false;
  }
}

// Axle-weight serial data "UUUUww<12 numbers separated by ;>;SSS" (a weighing unit behind the
// tracker's RS232). False when it does not have that shape.
bool decodeAxleWeights(Position& p, std::string_view text) {
  constexpr std::string_view kHead = "UUUUww";
  constexpr std::string_view kTail = ";SSS";
  if (text.size() < kHead.size() + kTail.size() || !text.starts_with(kHead) ||
      !text.ends_with(kTail)) {
    return false;
  }
  auto values = split(text.substr(kHead.size(), text.size() - kHead.size() - kTail.size()), ';');
  if (values.size() < 12) return false;
  double numbers[12] = {};
  for (std::size_t i = 0; i < 12; ++i) {
    auto v = values[i];
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), numbers[i]);
    if (ec != std::errc() || end != v.data() + v.size()) return false;
  }
  for (std::size_t i = 0; i < 8; ++i) p.set("axle" + std::to_string(i + 1), numbers[i]);
  p.set("loadTruck", numbers[8]);
  p.set("loadTrailer", numbers[9]);
  p.set("totalTruck", numbers[10]);
  p.set("totalTrailer", numbers[11]);
  return true;
}

class TeltonikaCodec : public ProtocolCodec {
 public:
  FrameResult splitFrame(std::string_view buffer) override;
  DecodeResult decode(std::string_view frame, SessionState& session,
                      std::int64_t serverTimeUs) override;
  std::optional<std::string> encodeCommand(const Command& command,
                                           const SessionState& session) override;

 private:
  static bool decodeRecord(ByteReader& r, std::uint8_t codec, const std::string& model,
                           bool extended, Position& p);
  static bool decodeGh3000Record(ByteReader& r, Position& p);
  enum class Serial : std::uint8_t { kKeep, kStop };
  static Serial decodeSerial(ByteReader& r, std::uint8_t codec, Position& p, DecodeResult& result);
};

FrameResult TeltonikaCodec::splitFrame(std::string_view buffer) {
  if (buffer.empty()) return {FrameStatus::kNeedMore, 0};
  auto at = [&](std::size_t i) { return static_cast<std::uint8_t>(buffer[i]); };
  if (at(0) == 0xFF) return {FrameStatus::kOk, 1};
  if (at(0) != 0x00) return {FrameStatus::kSkip, nextCandidate(buffer)};
  if (buffer.size() < 2) return {FrameStatus::kNeedMore, 0};

  if (at(1) != 0x00) {
    // IMEI packet: the length, then that many ASCII digits.
    std::size_t length = at(1);
    if (length > kMaxImeiLength) return {FrameStatus::kSkip, nextCandidate(buffer)};
    std::size_t have = std::min(buffer.size(), 2 + length);
    for (std::size_t i = 2; i < have; ++i) {
      if (!isDigit(buffer[i])) return {FrameStatus::kSkip, nextCandidate(buffer)};
    }
    if (buffer.size() < 2 + length) return {FrameStatus::kNeedMore, 0};
    return {FrameStatus::kOk, 2 + length};
  }

  // AVL packet: four zero bytes, DATA_LEN, then DATA_LEN bytes from the codec and the CRC.
  for (std::size_t i = 2; i < 4; ++i) {
    if (i >= buffer.size()) return {FrameStatus::kNeedMore, 0};
    if (at(i) != 0x00) return {FrameStatus::kSkip, nextCandidate(buffer)};
  }
  if (buffer.size() < 8) return {FrameStatus::kNeedMore, 0};
  std::uint64_t dataLength = (std::uint64_t{at(4)} << 24) | (std::uint64_t{at(5)} << 16) |
                             (std::uint64_t{at(6)} << 8) | at(7);
  std::uint64_t total = dataLength + kAvlOverhead;
  if (buffer.size() > 8 && !knownCodec(at(8))) {
    return {FrameStatus::kSkip, nextCandidate(buffer)};
  }
  if (total > kMaxFrameSize) return {FrameStatus::kTooLarge, 0};
  if (buffer.size() < total) return {FrameStatus::kNeedMore, 0};
  return {FrameStatus::kOk, static_cast<std::size_t>(total)};
}

DecodeResult TeltonikaCodec::decode(std::string_view frame, SessionState& session,
                                    std::int64_t serverTimeUs) {
  (void)serverTimeUs;  // every answer here is time-independent
  DecodeResult result;
  if (frame.size() == 1 && static_cast<std::uint8_t>(frame[0]) == 0xFF) {
    result.note = "ping";
    return result;
  }
  ByteReader r(frame);
  std::uint16_t head = r.u16();
  if (r.failed()) {
    result.note = "short frame";
    return result;
  }

  if (head != 0) {
    std::string_view imei = frame.substr(2);
    if (imei.size() != head) {
      result.badLength = true;
      imei = imei.substr(0, head);
    }
    bool digits = !imei.empty();
    for (char c : imei) digits = digits && isDigit(c);
    if (!digits) {
      // Not an IMEI (e.g. a UDP datagram on the TCP port): refused like an unknown device.
      result.response.assign(1, '\x00');
      result.note = "bad imei";
      return result;
    }
    bool accepted = session.identify(std::string(imei));
    result.response.assign(1, accepted ? '\x01' : '\x00');
    if (!accepted) result.note = "device refused";
    return result;
  }

  r.skip(2);
  std::uint32_t dataLength = r.u32();
  std::uint8_t codec = r.u8();
  std::uint8_t count = r.u8();
  if (r.failed()) {
    result.badLength = true;
    result.note = "short frame";
    return result;
  }
  if (frame.size() != std::size_t{dataLength} + kAvlOverhead) {
    // Decoded anyway, as Traccar does: the records are read from the start of the data.
    result.badLength = true;
  } else {
    ByteReader crcReader(frame.substr(frame.size() - 4));
    std::uint32_t crc = crcReader.u32();
    if (crc != crc16Arc(frame.substr(8, dataLength))) result.badChecksum = true;
  }
  // AVL data belongs to the device that sent the IMEI packet; without one it is dropped unanswered
  // so the device keeps it and resends after logging in again.
  if (!session.identified()) {
    result.note = "not identified";
    return result;
  }

  const std::string* modelExtra = session.getExtra("model");
  const std::string model = modelExtra != nullptr ? *modelExtra : std::string();
  // Traccar's per-device "teltonika.extended": old firmware appends a group of 16-byte values.
  const std::string* extendedExtra = session.getExtra("extended");
  const bool extended = extendedExtra != nullptr && *extendedExtra == "true";

  switch (codec) {
    case kCodecGh3000:
    case kCodec8:
    case kCodec8Ext:
    case kCodec16: {
      for (unsigned i = 0; i < count; ++i) {
        Position p;
        p.protocol = std::string(kProtocolName);
        p.deviceId = session.deviceId;
        bool keep = codec == kCodecGh3000 ? decodeGh3000Record(r, p)
                                          : decodeRecord(r, codec, model, extended, p);
        if (r.failed()) {
          // A record runs past the frame: nothing is acknowledged, so the device resends.
          result.positions.clear();
          result.badLength = true;
          result.note = "truncated record";
          return result;
        }
        if (keep) result.positions.push_back(std::move(p));
      }
      result.response = u32be(count);
      return result;
    }
    case kCodec12:
    case kCodec13: {
      for (unsigned i = 0; i < count; ++i) {
        Position p;
        p.protocol = std::string(kProtocolName);
        p.deviceId = session.deviceId;
        p.hasLocation = false;
        Serial outcome = decodeSerial(r, codec, p, result);
        if (outcome == Serial::kStop) break;
        if (r.failed()) {
          result.positions.clear();
          result.commandAnswer.reset();
          result.badLength = true;
          result.note = "truncated record";
          return result;
        }
        result.positions.push_back(std::move(p));
      }
      if (result.positions.empty() && result.note == nullptr) result.note = "no data";
      return result;  // command answers are not acknowledged
    }
    default:
      result.note = "unsupported codec";
      return result;
  }
}

bool TeltonikaCodec::decodeRecord(ByteReader& r, std::uint8_t codec, const std::string& model,
                                  bool extended, Position& p) {
  const bool ext = codec == kCodec8Ext;
  const bool wideIds = ext || codec == kCodec16;
  std::uint64_t timeMs = r.u64();
  // Beyond what µs in int64 can hold is garbage; keep it out of the arithmetic.
  if (timeMs <= static_cast<std::uint64_t>(INT64_MAX / 1000)) {
    p.deviceTimeUs = static_cast<std::int64_t>(timeMs) * 1000;
  }
  p.set("priority", std::int64_t{r.u8()});
  std::int32_t lon = r.i32();
  std::int32_t lat = r.i32();
  std::int16_t altitude = r.i16();
  std::uint16_t angle = r.u16();
  std::uint8_t satellites = r.u8();
  std::uint16_t speed = r.u16();
  p.valid = satellites != 0;  // Teltonika sends the last fix with 0 satellites when it has none
  setCoordinates(p, lat / 1e7, lon / 1e7);
  p.altitude = altitude;
  if (angle <= 360) p.course = angle;
  p.satellites = satellites;
  p.speedKmh = speed;

  p.set(attr::kEvent, std::int64_t{wideIds ? r.u16() : r.u8()});
  if (codec == kCodec16) r.skip(1);  // generation type
  if (ext) {
    r.skip(2);  // total IO count
  } else {
    r.skip(1);
  }
  for (std::size_t width : {std::size_t{1}, std::size_t{2}, std::size_t{4}, std::size_t{8}}) {
    unsigned n = ext ? r.u16() : r.u8();
    for (unsigned j = 0; j < n && !r.failed(); ++j) {
      unsigned id = wideIds ? r.u16() : r.u8();
      std::string_view value = r.bytes(width);
      if (r.failed()) return false;
      teltonika::decodeIo(p, id, value, model);
    }
  }
  if (extended && !ext) {
    unsigned n = r.u8();
    for (unsigned j = 0; j < n && !r.failed(); ++j) {
      unsigned id = wideIds ? r.u16() : r.u8();
      std::string_view value = r.bytes(16);
      if (r.failed()) return false;
      p.set("io" + std::to_string(id), toHex(value));
    }
  }
  if (ext) {
    unsigned n = r.u16();
    for (unsigned j = 0; j < n && !r.failed(); ++j) {
      unsigned id = r.u16();
      std::size_t length = r.u16();
      std::string_view value = r.bytes(length);
      if (r.failed()) return false;
      teltonika::decodeVariableIo(p, id, value);
    }
  }
  return !r.failed();
}

bool TeltonikaCodec::decodeGh3000Record(ByteReader& r, Position& p) {
  std::uint32_t stamp = r.u32();
  // The top two bits are the priority.
  std::int64_t seconds = kGh3000EpochSeconds + (stamp & 0x3FFFFFFF);
  std::uint8_t globalMask = r.u8();
  if ((globalMask & 0x01) != 0) {
    p.deviceTimeUs = seconds * 1'000'000;
    std::uint8_t locationMask = r.u8();
    bool coordinates = (locationMask & 0x01) != 0;
    if (coordinates) {
      float lat = std::bit_cast<float>(r.u32());
      float lon = std::bit_cast<float>(r.u32());
      p.valid = true;
      setCoordinates(p, lat, lon);
    } else {
      p.hasLocation = false;
    }
    if ((locationMask & 0x02) != 0) p.altitude = r.u16();
    if ((locationMask & 0x04) != 0) p.course = r.u8() * 360.0 / 256.0;
    if ((locationMask & 0x08) != 0) p.speedKmh = r.u8();
    if ((locationMask & 0x10) != 0) {
      std::uint8_t satellites = r.u8();
      p.satellites = satellites;
      if (coordinates && p.hasLocation) p.valid = satellites >= 3;
    }
    if ((locationMask & 0x20) != 0) {
      p.set("lac", std::int64_t{r.u16()});
      p.set("cid", std::int64_t{r.u16()});
    }
    if ((locationMask & 0x40) != 0) p.set(attr::kRssi, std::int64_t{r.u8()});
    if ((locationMask & 0x80) != 0) p.set("operator", std::int64_t{r.u32()});
  } else {
    // No GPS element: a status record at the device's time, stored without a location.
    p.deviceTimeUs = seconds * 1'000'000;
    p.hasLocation = false;
  }
  // IO groups of 1, 2 and 4-byte values, each announced by a mask bit.
  const std::size_t widths[] = {1, 2, 4};
  for (std::size_t g = 0; g < 3; ++g) {
    if ((globalMask & (0x02 << g)) == 0) continue;
    unsigned n = r.u8();
    for (unsigned j = 0; j < n && !r.failed(); ++j) {
      unsigned id = r.u8();
      std::string_view value = r.bytes(widths[g]);
      if (r.failed()) return false;
      teltonika::decodeGh3000Io(p, id, value);
    }
  }
  if (r.failed()) return false;
  // Like Traccar: a record with neither a fix nor any data is not worth storing.
  return p.hasLocation || !p.attributes.empty();
}

TeltonikaCodec::Serial TeltonikaCodec::decodeSerial(ByteReader& r, std::uint8_t codec, Position& p,
                                                    DecodeResult& result) {
  std::uint8_t type = r.u8();
  if (codec == kCodec12 && type == kSerialPhoto && !r.failed()) {
    // Camera chunks: Tern has nowhere to keep images, so the photo flow is not driven.
    result.note = "camera data not supported";
    return Serial::kStop;
  }
  std::uint32_t size = r.u32();
  std::size_t length = size;
  if (codec == kCodec13) {
    // Codec 13 counts a 4-byte timestamp (seconds) in the size; less is a broken record.
    length = size >= 4 ? size - 4 : r.remaining() + 1;  // +1: more than is left, so it fails
    p.deviceTimeUs = std::int64_t{r.u32()} * 1'000'000;
  } else {
    p.set(attr::kType, std::int64_t{type});
  }
  std::string_view payload = r.bytes(length);
  if (r.failed()) return Serial::kKeep;  // the caller sees the failed reader

  std::string answer;
  if (printable(payload)) {
    std::string_view text = trim(payload);
    if (codec == kCodec13 && text.starts_with("GTSL")) {
      // iButton/RFID reader passthrough: "GTSL|<...>|<...>|<...>|<driver id>|..."
      auto fields = split(text, '|');
      if (fields.size() > 4) {
        p.set("driverUniqueId", std::string(fields[4]));
        return Serial::kKeep;
      }
    } else if (codec == kCodec12 && decodeAxleWeights(p, text)) {
      return Serial::kKeep;
    }
    answer = std::string(text);
  } else {
    answer = toHex(payload);
  }
  p.set(attr::kResult, answer);
  if (!result.commandAnswer) result.commandAnswer = CommandAnswer{answer};
  return Serial::kKeep;
}

std::optional<std::string> TeltonikaCodec::encodeCommand(const Command& command,
                                                         const SessionState& session) {
  (void)session;
  std::string payload;
  switch (command.type) {
    // Digital output 1 drives the immobiliser relay in Teltonika's reference wiring.
    case CommandType::kEngineStop:
      payload = "setdigout 1";
      break;
    case CommandType::kEngineResume:
      payload = "setdigout 0";
      break;
    case CommandType::kPositionSingle:
      payload = "getgps";
      break;
    case CommandType::kCustom:
      payload = command.text;
      break;
    case CommandType::kCustomHex: {
      auto raw = fromHex(command.text);
      if (!raw) return std::nullopt;
      payload = std::move(*raw);
      break;
    }
  }
  if (payload.empty() || payload.size() > kMaxFrameSize - 64) return std::nullopt;
  // Codec 12 packet: 00000000 | DATA_LEN | 0C 01 05 | size | command | 01 | CRC-16/IBM (4 bytes).
  std::string data;
  data.push_back(static_cast<char>(kCodec12));
  data.push_back('\x01');
  data.push_back(static_cast<char>(kSerialCommand));
  data += u32be(static_cast<std::uint32_t>(payload.size()));
  data += payload;
  data.push_back('\x01');
  std::string out(4, '\0');
  out += u32be(static_cast<std::uint32_t>(data.size()));
  out += data;
  out += u32be(crc16Arc(data));
  return out;
}

}  // namespace

std::unique_ptr<ProtocolCodec> createTeltonikaCodec() {
  return std::make_unique<TeltonikaCodec>();
}

}  // namespace tern::codec::trackers
