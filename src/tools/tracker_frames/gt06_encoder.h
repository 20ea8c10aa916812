#pragma once
// Device-side GT06 frame builder: writes the device side of the protocol (login, heartbeat/status,
// GPS+LBS position and alarm reports) from known values, so decoding can be checked exactly.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "codec/trackers/util.h"

namespace tern::tools::frames::gt06 {

struct Fix {
  int year = 2024, month = 1, day = 1, hour = 0, minute = 0, second = 0;  // device local time
  double latitude = 0;                                                    // degrees, south negative
  double longitude = 0;                                                   // degrees, west negative
  int speedKmh = 0;                                                       // one byte
  int course = 0;                                                         // 0..359
  bool valid = true;
  int satellites = 8;
  bool accKnown = false;
  bool accOn = false;
};

inline void putU8(std::string& out, unsigned v) {
  out.push_back(static_cast<char>(v & 0xFF));
}
inline void putU16(std::string& out, unsigned v) {
  putU8(out, v >> 8);
  putU8(out, v);
}
inline void putU24(std::string& out, std::uint32_t v) {
  putU8(out, v >> 16);
  putU16(out, v & 0xFFFF);
}
inline void putU32(std::string& out, std::uint32_t v) {
  putU16(out, v >> 16);
  putU16(out, v & 0xFFFF);
}

// 78 78 LEN type body serial CRC 0D 0A (or 79 79 with a 2-byte LEN).
inline std::string packet(std::uint8_t type, std::string_view body, std::uint16_t serial,
                          bool extended = false) {
  std::string out;
  const std::size_t length = 1 + body.size() + 2 + 2;
  if (extended) {
    out = "\x79\x79";
    putU16(out, static_cast<unsigned>(length));
  } else {
    out = "\x78\x78";
    putU8(out, static_cast<unsigned>(length));
  }
  putU8(out, type);
  out.append(body);
  putU16(out, serial);
  putU16(out, codec::trackers::crc16X25(std::string_view(out).substr(2)));
  out.append("\r\n");
  return out;
}

// Date, satellites, latitude, longitude, speed, course/status: the common GPS block.
inline std::string gpsBlock(const Fix& f) {
  std::string out;
  for (int v : {f.year - 2000, f.month, f.day, f.hour, f.minute, f.second}) {
    putU8(out, static_cast<unsigned>(v));
  }
  putU8(out, 0xC0u | static_cast<unsigned>(f.satellites & 0x0F));
  putU32(out, static_cast<std::uint32_t>(std::llround(std::fabs(f.latitude) * 1'800'000.0)));
  putU32(out, static_cast<std::uint32_t>(std::llround(std::fabs(f.longitude) * 1'800'000.0)));
  putU8(out, static_cast<unsigned>(f.speedKmh));
  unsigned flags = static_cast<unsigned>(f.course) & 0x3FF;
  if (f.latitude >= 0) flags |= 1u << 10;
  if (f.longitude < 0) flags |= 1u << 11;
  if (f.valid) flags |= 1u << 12;
  if (f.accKnown) flags |= 1u << 14;
  if (f.accOn) flags |= 1u << 15;
  putU16(out, flags);
  return out;
}

// Login 0x01: BCD IMEI with a leading 0 nibble; with `timeZone` the long form carrying the
// device's offset (minutes east of UTC, negative = west).
inline std::string login(std::string_view imei15, std::uint16_t serial,
                         std::optional<int> timeZoneMinutes = std::nullopt) {
  std::string body = *codec::trackers::fromHex("0" + std::string(imei15));
  putU16(body, 0x3632);  // device type
  if (timeZoneMinutes) {
    const int minutes = std::abs(*timeZoneMinutes);
    const unsigned hhmm = static_cast<unsigned>(minutes / 60 * 100 + minutes % 60);
    putU16(body, (hhmm << 4) | (*timeZoneMinutes < 0 ? 0x08u : 0u) | 0x02u);
  }
  return packet(0x01, body, serial);
}

// 0x12 GPS + LBS position (standard GT06).
inline std::string gpsLbs1(const Fix& f, std::uint16_t serial) {
  std::string body = gpsBlock(f);
  putU16(body, 460);       // mcc
  putU8(body, 0);          // mnc
  putU16(body, 0x287D);    // lac
  putU24(body, 0x001F71);  // cell id
  return packet(0x12, body, serial);
}

// 0x22 GPS + LBS with ACC, upload mode and re-upload flags.
inline std::string gpsLbs2(const Fix& f, bool acc, std::uint8_t reason, bool archive,
                           std::uint16_t serial) {
  std::string body = gpsBlock(f);
  putU16(body, 460);
  putU8(body, 0);
  putU16(body, 0x287D);
  putU24(body, 0x001F71);
  putU8(body, acc ? 1 : 0);
  putU8(body, reason);
  putU8(body, archive ? 1 : 0);
  return packet(0x22, body, serial);
}

// Terminal-information byte: bit 1 ACC, bit 2 charging, bits 3-5 alarm, bit 7 cut-off.
inline unsigned terminalInfo(bool acc, bool charging, unsigned alarmBits, bool cut) {
  return (acc ? 0x02u : 0u) | (charging ? 0x04u : 0u) | ((alarmBits & 7u) << 3) |
         (cut ? 0x80u : 0u);
}

// 0x16 GPS + LBS + status alarm report.
inline std::string alarm(const Fix& f, unsigned info, unsigned voltageLevel, unsigned gsm,
                         unsigned alarmCode, std::uint16_t serial) {
  std::string body = gpsBlock(f);
  putU8(body, 9);  // LBS length
  putU16(body, 460);
  putU8(body, 0);
  putU16(body, 0x287D);
  putU24(body, 0x001F71);
  putU8(body, info);
  putU8(body, voltageLevel);
  putU8(body, gsm);
  putU8(body, alarmCode);
  putU8(body, 0x02);  // language
  return packet(0x16, body, serial);
}

// 0x13 status / heartbeat.
inline std::string status(unsigned info, unsigned voltageLevel, unsigned gsm, unsigned alarmCode,
                          std::uint16_t serial) {
  std::string body;
  putU8(body, info);
  putU8(body, voltageLevel);
  putU8(body, gsm);
  putU8(body, alarmCode);
  putU8(body, 0x02);
  return packet(0x13, body, serial);
}

// The server's short ACK, built independently of the codec.
inline std::string shortAck(std::uint8_t type, std::uint16_t serial) {
  return packet(type, {}, serial);
}

}  // namespace tern::tools::frames::gt06
