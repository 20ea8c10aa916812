#pragma once
// Device-side Ruptela encoder: device packets (records, extended records, DTCs, identification,
// heartbeat, text answers) built from known values, so the decoder can be checked field by field.
#include <climits>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "codec/trackers/util.h"

namespace tern::tools::frames::ruptela {

struct Record {
  std::uint32_t timeSeconds = 0;
  std::uint8_t recordExtension = 0;  // extended records only
  std::optional<double> latitude;    // nullopt: no fix (INT32_MIN on the wire)
  std::optional<double> longitude;
  double altitudeM = 0;  // 0.1 m on the wire
  double courseDeg = 0;  // 0.01° on the wire
  std::uint8_t satellites = 0;
  std::uint16_t speedKmh = 0;
  double hdop = 0;  // 0.1 on the wire
  std::uint16_t eventId = 0;
  // The value's byte count (1, 2, 4, 8) picks its group.
  std::vector<std::pair<unsigned, std::string>> io;
};

inline void putBe(std::string& out, std::uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

inline std::string be(std::uint64_t value, int bytes) {
  std::string out;
  putBe(out, value, bytes);
  return out;
}

// LEN | IMEI | command | payload | CRC-16/KERMIT (big-endian).
inline std::string packet(std::uint64_t imei, std::uint8_t command, const std::string& payload) {
  std::string body;
  putBe(body, imei, 8);
  body.push_back(static_cast<char>(command));
  body += payload;
  std::string out;
  putBe(out, body.size(), 2);
  out += body;
  putBe(out, codec::trackers::crc16Kermit(body), 2);
  return out;
}

inline std::uint32_t fixed7(std::optional<double> degrees) {
  if (!degrees) return static_cast<std::uint32_t>(INT32_MIN);
  return static_cast<std::uint32_t>(static_cast<std::int32_t>(std::llround(*degrees * 1e7)));
}

inline std::string records(std::uint64_t imei, bool extended, const std::vector<Record>& recs,
                           std::uint8_t recordsLeft = 0) {
  std::string payload;
  payload.push_back(static_cast<char>(recordsLeft));
  payload.push_back(static_cast<char>(recs.size()));
  for (const Record& r : recs) {
    putBe(payload, r.timeSeconds, 4);
    payload.push_back('\0');  // time extension
    if (extended) payload.push_back(static_cast<char>(r.recordExtension));
    payload.push_back('\0');  // priority
    putBe(payload, fixed7(r.longitude), 4);
    putBe(payload, fixed7(r.latitude), 4);
    putBe(payload, static_cast<std::uint64_t>(std::llround(r.altitudeM * 10)), 2);
    putBe(payload, static_cast<std::uint64_t>(std::llround(r.courseDeg * 100)), 2);
    payload.push_back(static_cast<char>(r.satellites));
    putBe(payload, r.speedKmh, 2);
    payload.push_back(static_cast<char>(std::lround(r.hdop * 10)));
    putBe(payload, r.eventId, extended ? 2 : 1);
    for (std::size_t width : {1u, 2u, 4u, 8u}) {
      std::size_t n = 0;
      for (const auto& [id, value] : r.io) n += value.size() == width ? 1 : 0;
      payload.push_back(static_cast<char>(n));
      for (const auto& [id, value] : r.io) {
        if (value.size() != width) continue;
        putBe(payload, id, extended ? 2 : 1);
        payload += value;
      }
    }
  }
  return packet(imei, extended ? 68 : 1, payload);
}

struct Dtc {
  std::uint32_t timeSeconds = 0;
  double latitude = 0;
  double longitude = 0;
  bool archive = false;
  std::string code;  // 5 characters
};

inline std::string dtcs(std::uint64_t imei, const std::vector<Dtc>& list) {
  std::string payload;
  payload.push_back(static_cast<char>(list.size()));
  for (const Dtc& d : list) {
    payload.push_back('\xFF');  // reserved
    putBe(payload, d.timeSeconds, 4);
    putBe(payload, fixed7(d.longitude), 4);
    putBe(payload, fixed7(d.latitude), 4);
    payload.push_back(d.archive ? '\x02' : '\x01');
    payload += d.code;
  }
  return packet(imei, 9, payload);
}

}  // namespace tern::tools::frames::ruptela
