// Ruptela FM devices over TCP: `LEN(2) IMEI(uint64) CMD payload CRC(2)`, LEN counting IMEI
// through the payload, CRC-16/KERMIT over the same bytes written big-endian. Every packet carries
// the IMEI, so there is no login. Server packets have no IMEI: `LEN(2) CMD payload CRC(2)`.
#include "codec/trackers/ruptela/ruptela.h"

#include <climits>
#include <cmath>
#include <cstdio>
#include <string>

#include "codec/trackers/ruptela/ruptela_io.h"
#include "codec/trackers/util.h"

namespace tern::codec::trackers {

namespace {

// Kept equal to the registry's maxFrameSize for "ruptela" (a test checks it).
constexpr std::size_t kMaxFrameSize = 64 * 1024;
constexpr std::size_t kHeaderSize = 2 + 8 + 1;  // LEN, IMEI, CMD
constexpr std::size_t kMinLength = 8 + 1;       // LEN covers at least the IMEI and the command
// IMEIs have 15 digits, so the uint64 is below 10^15 < 2^50: its top six bits are clear.
constexpr std::uint8_t kImeiHighMask = 0xFC;

constexpr std::uint8_t kMsgRecords = 1;
constexpr std::uint8_t kMsgDeviceConfiguration = 2;
constexpr std::uint8_t kMsgDeviceVersion = 3;
constexpr std::uint8_t kMsgFirmwareUpdate = 4;
constexpr std::uint8_t kMsgSmsViaGprsResponse = 7;
constexpr std::uint8_t kMsgSmsViaGprs = 8;
constexpr std::uint8_t kMsgDtcs = 9;
constexpr std::uint8_t kMsgIdentification = 15;
constexpr std::uint8_t kMsgHeartbeat = 16;
constexpr std::uint8_t kMsgSetIo = 17;
constexpr std::uint8_t kMsgFiles = 37;
constexpr std::uint8_t kMsgExtendedRecords = 68;
constexpr std::uint8_t kMsgRecordsAck = 100;

constexpr std::string_view kProtocolName = "ruptela";

// A server packet: LEN (command + payload), command, payload, CRC-16/KERMIT of command + payload.
std::string serverPacket(std::uint8_t command, std::string_view payload) {
  std::string body(1, static_cast<char>(command));
  body += payload;
  std::string out;
  out.push_back(static_cast<char>((body.size() >> 8) & 0xFF));
  out.push_back(static_cast<char>(body.size() & 0xFF));
  out += body;
  std::uint16_t crc = crc16Kermit(body);
  out.push_back(static_cast<char>(crc >> 8));
  out.push_back(static_cast<char>(crc & 0xFF));
  return out;
}

// Positive acknowledgement of DTCs, identification and heartbeat: command 100 + theirs, payload 01.
std::string ack(std::uint8_t command) {
  return serverPacket(static_cast<std::uint8_t>(100 + command), std::string_view("\x01", 1));
}

bool printable(std::string_view data) {
  for (char c : data) {
    auto b = static_cast<std::uint8_t>(c);
    if ((b < 0x20 || b > 0x7E) && b != '\r' && b != '\n' && b != '\t') return false;
  }
  return true;
}

// Sets lat/lon when they are real coordinates; anything else leaves the position without one.
void setCoordinates(Position& p, std::int32_t lat, std::int32_t lon) {
  double latitude = lat / 1e7;
  double longitude = lon / 1e7;
  if (std::fabs(latitude) <= 90.0 && std::fabs(longitude) <= 180.0) {
    p.latitude = latitude;
    p.longitude = longitude;
  } else {
    p.hasLocation = false;
    p.valid = false;
  }
}

class RuptelaCodec : public ProtocolCodec {
 public:
  FrameResult splitFrame(std::string_view buffer) override;
  DecodeResult decode(std::string_view frame, SessionState& session,
                      std::int64_t serverTimeUs) override;
  std::optional<std::string> encodeCommand(const Command& command,
                                           const SessionState& session) override;

 private:
  static bool decodeRecords(ByteReader& r, bool extended, const std::string& deviceId,
                            DecodeResult& result);
  static bool decodeDtcs(ByteReader& r, const std::string& deviceId, DecodeResult& result);
};

// Resync goes byte by byte past headers that cannot start a device packet: a LEN too short for
// the IMEI and command, or an IMEI of more than 15 digits.
FrameResult RuptelaCodec::splitFrame(std::string_view buffer) {
  auto at = [&](std::size_t i) { return static_cast<std::uint8_t>(buffer[i]); };
  if (buffer.size() < 2) return {FrameStatus::kNeedMore, 0};
  std::size_t length = (std::size_t{at(0)} << 8) | at(1);
  if (length < kMinLength) return {FrameStatus::kSkip, 1};
  // The IMEI's top bytes: 0x00 then at most 0x03.
  if (buffer.size() > 2 && at(2) != 0x00) return {FrameStatus::kSkip, 1};
  if (buffer.size() > 3 && (at(3) & kImeiHighMask) != 0) return {FrameStatus::kSkip, 1};
  std::size_t total = length + 4;
  if (total > kMaxFrameSize) return {FrameStatus::kTooLarge, 0};
  if (buffer.size() < total) return {FrameStatus::kNeedMore, 0};
  return {FrameStatus::kOk, total};
}

DecodeResult RuptelaCodec::decode(std::string_view frame, SessionState& session,
                                  std::int64_t serverTimeUs) {
  (void)serverTimeUs;  // answers are time-independent
  DecodeResult result;
  if (frame.size() < kHeaderSize + 2) {
    result.badLength = true;
    result.note = "short frame";
    return result;
  }
  ByteReader head(frame);
  std::size_t length = head.u16();
  std::uint64_t imei = head.u64();
  std::uint8_t command = head.u8();
  if (length + 4 != frame.size()) result.badLength = true;  // decoded whole anyway, as Traccar
  std::string_view covered = frame.substr(2, frame.size() - 4);
  ByteReader crcReader(frame.substr(frame.size() - 2));
  if (crcReader.u16() != crc16Kermit(covered)) result.badChecksum = true;

  // Traccar prints the IMEI as at least 15 digits (leading zeros kept).
  char imeiText[24];
  std::snprintf(imeiText, sizeof imeiText, "%015llu", static_cast<unsigned long long>(imei));
  if (session.deviceId != imeiText && !session.identify(imeiText)) {
    result.note = "device refused";
    return result;
  }

  std::string_view payload = frame.substr(kHeaderSize, frame.size() - kHeaderSize - 2);
  ByteReader r(payload);
  switch (command) {
    case kMsgRecords:
    case kMsgExtendedRecords:
      if (!decodeRecords(r, command == kMsgExtendedRecords, session.deviceId, result)) {
        // A record runs past the packet: nothing is acknowledged, so the device resends.
        result.positions.clear();
        result.badLength = true;
        result.note = "truncated record";
        return result;
      }
      // Both record kinds are acknowledged with command 100 (not 100 + 68).
      result.response = serverPacket(kMsgRecordsAck, std::string_view("\x01", 1));
      return result;
    case kMsgDtcs:
      if (!decodeDtcs(r, session.deviceId, result)) {
        result.positions.clear();
        result.badLength = true;
        result.note = "truncated record";
        return result;
      }
      result.response = ack(kMsgDtcs);
      return result;
    case kMsgIdentification:
    case kMsgHeartbeat:
      result.response = ack(command);
      return result;
    case kMsgDeviceConfiguration:
    case kMsgDeviceVersion:
    case kMsgFirmwareUpdate:
    case kMsgSmsViaGprsResponse:
    case kMsgSetIo: {
      // Answers to server commands: kept as text (hex when binary), no acknowledgement.
      std::string text = printable(payload) ? std::string(payload) : toHex(payload);
      Position p;
      p.protocol = std::string(kProtocolName);
      p.deviceId = session.deviceId;
      p.hasLocation = false;
      p.set(attr::kType, std::int64_t{command});
      p.set(attr::kResult, text);
      result.positions.push_back(std::move(p));
      result.commandAnswer = CommandAnswer{std::move(text)};
      return result;
    }
    case kMsgFiles:
      // Photo chunks: Tern has nowhere to keep images, so the next chunk is not requested.
      result.note = "files not supported";
      return result;
    default:
      result.note = "unsupported command";
      return result;
  }
}

bool RuptelaCodec::decodeRecords(ByteReader& r, bool extended, const std::string& deviceId,
                                 DecodeResult& result) {
  r.skip(1);  // records left in the device
  unsigned count = r.u8();
  for (unsigned i = 0; i < count; ++i) {
    std::uint32_t seconds = r.u32();
    r.skip(1);  // time extension (orders records within one second)
    bool merge = false;
    if (extended) {
      // One long record may be sent as several: high nibble = how many follow the first, low
      // nibble = this part's index. Parts after the first add to the same position.
      std::uint8_t recordExtension = r.u8();
      unsigned parts = recordExtension >> 4;
      unsigned part = recordExtension & 0x0F;
      merge = part > 0 && part <= parts && !result.positions.empty();
    }
    if (!merge) {
      result.positions.emplace_back();
      result.positions.back().protocol = std::string(kProtocolName);
      result.positions.back().deviceId = deviceId;
    }
    Position& p = result.positions.back();
    p.deviceTimeUs = std::int64_t{seconds} * 1'000'000;
    r.skip(1);  // priority
    std::int32_t lon = r.i32();
    std::int32_t lat = r.i32();
    std::uint16_t altitude = r.u16();
    std::uint16_t angle = r.u16();
    std::uint8_t satellites = r.u8();
    std::uint16_t speed = r.u16();
    std::uint8_t hdop = r.u8();
    if (lon != INT32_MIN && lat != INT32_MIN) {
      p.hasLocation = true;
      p.valid = true;
      setCoordinates(p, lat, lon);
      p.altitude = altitude / 10.0;
      double course = angle / 100.0;
      if (course <= 360.0) p.course = course;
      p.satellites = satellites;
      p.speedKmh = speed;
      p.hdop = hdop / 10.0;
    } else {
      // No fix: stored without a location (the server keeps the last known one).
      p.hasLocation = false;
      p.valid = false;
    }
    p.set(attr::kEvent, std::int64_t{extended ? r.u16() : r.u8()});
    for (std::size_t width : {std::size_t{1}, std::size_t{2}, std::size_t{4}, std::size_t{8}}) {
      unsigned n = r.u8();
      for (unsigned j = 0; j < n && !r.failed(); ++j) {
        unsigned id = extended ? r.u16() : r.u8();
        std::string_view value = r.bytes(width);
        if (r.failed()) return false;
        ruptela::decodeIo(p, id, value);
      }
    }
    if (r.failed()) return false;
  }
  // After all parts: values split over the parts of a merged record belong together.
  for (auto& p : result.positions) ruptela::finishIo(p);
  return !r.failed();
}

bool RuptelaCodec::decodeDtcs(ByteReader& r, const std::string& deviceId, DecodeResult& result) {
  unsigned count = r.u8();
  for (unsigned i = 0; i < count; ++i) {
    Position p;
    p.protocol = std::string(kProtocolName);
    p.deviceId = deviceId;
    r.skip(1);  // reserved
    p.deviceTimeUs = std::int64_t{r.u32()} * 1'000'000;
    std::int32_t lon = r.i32();
    std::int32_t lat = r.i32();
    p.valid = true;
    setCoordinates(p, lat, lon);
    if (r.u8() == 2) p.set(attr::kArchive, true);  // 2 = stored while offline
    std::string_view code = r.bytes(5);
    if (r.failed()) return false;
    p.set(attr::kDtcs, std::string(code));
    result.positions.push_back(std::move(p));
  }
  return true;
}

std::optional<std::string> RuptelaCodec::encodeCommand(const Command& command,
                                                       const SessionState& session) {
  (void)session;
  // The reference notes give no command set; only free text is sent, as an SMS-style command
  // over GPRS (command 8), which the device answers with command 7.
  if (command.type != CommandType::kCustom || command.text.empty() ||
      command.text.size() > kMaxFrameSize - 16) {
    return std::nullopt;
  }
  return serverPacket(kMsgSmsViaGprs, command.text);
}

}  // namespace

std::unique_ptr<ProtocolCodec> createRuptelaCodec() {
  return std::make_unique<RuptelaCodec>();
}

}  // namespace tern::codec::trackers
