#pragma once
// Device-side Teltonika encoder: builds IMEI packets, AVL packets (codec 8 / 8E / 16) and codec 12
// / 13 serial packets from known values, so the decoder can be checked field by field.
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "codec/trackers/util.h"

namespace tern::tools::frames::teltonika {

struct Record {
  std::uint64_t timeMs = 0;
  std::uint8_t priority = 0;
  double latitude = 0;
  double longitude = 0;
  std::int16_t altitude = 0;
  std::uint16_t angle = 0;
  std::uint8_t satellites = 0;
  std::uint16_t speedKmh = 0;
  std::uint16_t eventId = 0;
  // Fixed-width IO: the value's byte count (1, 2, 4, 8) picks its group.
  std::vector<std::pair<unsigned, std::string>> io;
  // Variable-length IO (codec 8 Extended only).
  std::vector<std::pair<unsigned, std::string>> variableIo;
};

inline void putBe(std::string& out, std::uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

inline std::string be(std::uint64_t value, int bytes) {
  std::string out;
  putBe(out, value, bytes);
  return out;
}

inline std::string imeiPacket(const std::string& imei) {
  std::string out;
  putBe(out, imei.size(), 2);
  return out + imei;
}

// Wraps codec data (CODEC .. N2) in the preamble, DATA_LEN and CRC.
inline std::string wrap(const std::string& data) {
  std::string out(4, '\0');
  putBe(out, data.size(), 4);
  out += data;
  putBe(out, codec::trackers::crc16Arc(data), 4);
  return out;
}

inline std::string encodeAvl(std::uint8_t codec, const std::vector<Record>& records) {
  const bool ext = codec == 0x8E;
  const bool wideIds = ext || codec == 0x10;
  const int countBytes = ext ? 2 : 1;
  const int idBytes = wideIds ? 2 : 1;
  std::string data;
  data.push_back(static_cast<char>(codec));
  data.push_back(static_cast<char>(records.size()));
  for (const Record& r : records) {
    putBe(data, r.timeMs, 8);
    data.push_back(static_cast<char>(r.priority));
    auto lon = static_cast<std::int32_t>(std::llround(r.longitude * 1e7));
    auto lat = static_cast<std::int32_t>(std::llround(r.latitude * 1e7));
    putBe(data, static_cast<std::uint32_t>(lon), 4);
    putBe(data, static_cast<std::uint32_t>(lat), 4);
    putBe(data, static_cast<std::uint16_t>(r.altitude), 2);
    putBe(data, r.angle, 2);
    data.push_back(static_cast<char>(r.satellites));
    putBe(data, r.speedKmh, 2);
    putBe(data, r.eventId, idBytes);
    if (codec == 0x10) data.push_back('\0');  // generation type
    putBe(data, r.io.size() + r.variableIo.size(), countBytes);
    for (std::size_t width : {1u, 2u, 4u, 8u}) {
      std::size_t n = 0;
      for (const auto& [id, value] : r.io) n += value.size() == width ? 1 : 0;
      putBe(data, n, countBytes);
      for (const auto& [id, value] : r.io) {
        if (value.size() != width) continue;
        putBe(data, id, idBytes);
        data += value;
      }
    }
    if (ext) {
      putBe(data, r.variableIo.size(), 2);
      for (const auto& [id, value] : r.variableIo) {
        putBe(data, id, 2);
        putBe(data, value.size(), 2);
        data += value;
      }
    }
  }
  data.push_back(static_cast<char>(records.size()));
  return wrap(data);
}

// Codec 12 (type 0x06 = the device's answer) with one payload.
inline std::string codec12(const std::string& payload, std::uint8_t type = 0x06) {
  std::string data = "\x0C\x01";
  data.push_back(static_cast<char>(type));
  putBe(data, payload.size(), 4);
  data += payload;
  data.push_back('\x01');
  return wrap(data);
}

// Codec 13: the size counts a 4-byte timestamp (seconds) before the payload.
inline std::string codec13(const std::string& payload, std::uint32_t timeSeconds,
                           std::uint8_t type = 0x06) {
  std::string data = "\x0D\x01";
  data.push_back(static_cast<char>(type));
  putBe(data, payload.size() + 4, 4);
  putBe(data, timeSeconds, 4);
  data += payload;
  data.push_back('\x01');
  return wrap(data);
}

}  // namespace tern::tools::frames::teltonika
