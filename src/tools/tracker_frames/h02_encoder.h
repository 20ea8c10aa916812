#pragma once
// Device-side H02 encoder: builds the device's main position messages (text V1 and binary '$')
// from known values, so decoding can be checked exactly.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace tern::tools::frames::h02 {

struct Fix {
  std::string id = "4210051415";  // 10 digits (binary frames carry exactly 10 BCD digits)
  int year = 2024, month = 2, day = 29, hour = 23, minute = 59, second = 58;
  double latitude = 0;   // degrees, south negative
  double longitude = 0;  // degrees, west negative
  double speedKnots = 0;
  int course = 0;
  bool valid = true;
  std::uint32_t status = 0xFFFFFBFF;  // active-low: all clear, ignition on
};

// Degrees → (whole degrees, minutes × 10000 rounded), carrying a rounded-up 60'.
inline void degreesMinutes(double value, int& degrees, long& minutes10k) {
  double a = std::fabs(value);
  degrees = static_cast<int>(a);
  minutes10k = std::lround((a - degrees) * 60 * 10000);
  if (minutes10k >= 600000) {
    ++degrees;
    minutes10k -= 600000;
  }
}

// *HQ,<id>,V1,hhmmss,A,ddmm.mmmm,N,dddmm.mmmm,E,speed,course,ddmmyy,status#
inline std::string textV1(const Fix& f, const std::string& type = "V1") {
  int latD = 0, lonD = 0;
  long latM = 0, lonM = 0;
  degreesMinutes(f.latitude, latD, latM);
  degreesMinutes(f.longitude, lonD, lonM);
  char text[256];
  std::snprintf(text, sizeof text,
                "*HQ,%s,%s,%02d%02d%02d,%c,%02d%02ld.%04ld,%c,%03d%02ld.%04ld,%c,%.2f,%d,"
                "%02d%02d%02d,%08X#",
                f.id.c_str(), type.c_str(), f.hour, f.minute, f.second, f.valid ? 'A' : 'V', latD,
                latM / 10000, latM % 10000, f.latitude < 0 ? 'S' : 'N', lonD, lonM / 10000,
                lonM % 10000, f.longitude < 0 ? 'W' : 'E', f.speedKnots, f.course, f.day, f.month,
                f.year % 100, f.status);
  return text;
}

inline void putBcd(std::string& out, const std::string& digits) {
  for (std::size_t i = 0; i + 1 < digits.size(); i += 2) {
    out.push_back(static_cast<char>(((digits[i] - '0') << 4) | (digits[i + 1] - '0')));
  }
}

// '$' id(5) hhmmss ddmmyy lat(4) battery lon(4.5)+flags speed(3 digits) course(3 digits)
// status(4), then `size` - 29 bytes the decoder does not read.
inline std::string binary(const Fix& f, std::size_t size = 32, std::uint8_t battery = 6) {
  int latD = 0, lonD = 0;
  long latM = 0, lonM = 0;
  degreesMinutes(f.latitude, latD, latM);
  degreesMinutes(f.longitude, lonD, lonM);
  char digits[64];
  std::string out = "$";
  putBcd(out, f.id);
  std::snprintf(digits, sizeof digits, "%02d%02d%02d%02d%02d%02d", f.hour, f.minute, f.second,
                f.day, f.month, f.year % 100);
  putBcd(out, digits);
  std::snprintf(digits, sizeof digits, "%02d%06ld", latD, latM);
  putBcd(out, digits);
  out.push_back(static_cast<char>(battery));
  int flags = (f.valid ? 0x2 : 0) | (f.latitude >= 0 ? 0x4 : 0) | (f.longitude >= 0 ? 0x8 : 0);
  std::snprintf(digits, sizeof digits, "%03d%06ld%c", lonD, lonM, "0123456789ABCDEF"[flags]);
  for (std::size_t i = 0; i < 10; i += 2) {
    auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'A' + 10; };
    out.push_back(static_cast<char>((nibble(digits[i]) << 4) | nibble(digits[i + 1])));
  }
  auto speed = static_cast<int>(std::lround(f.speedKnots));
  std::snprintf(digits, sizeof digits, "%03d%03d", speed, f.course);
  putBcd(out, digits);
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((f.status >> shift) & 0xFF));
  }
  out.push_back(static_cast<char>(0xFF));
  while (out.size() < size) out.push_back('\0');
  return out;
}

}  // namespace tern::tools::frames::h02
