#pragma once
// Device-side TK103 encoder: builds the device's position messages from known values.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace tern::tools::frames::tk103 {

struct Fix {
  std::string id = "088047365460";  // 12 characters
  int year = 2024, month = 2, day = 29, hour = 23, minute = 59, second = 58;
  double latitude = 0;   // degrees, south negative
  double longitude = 0;  // degrees, west negative
  double speedKmh = 0;   // 0.1 km/h resolution in the compact form
  double course = 0;     // 0.01°
  bool valid = true;
  std::string io = "01000000";  // charge, ignition, 3 io nibbles, fuel (3 hex)
  std::uint32_t odometer = 0;   // m
};

inline void degreesMinutes(double value, int& degrees, long& minutes10k) {
  double a = std::fabs(value);
  degrees = static_cast<int>(a);
  minutes10k = std::lround((a - degrees) * 60 * 10000);
  if (minutes10k >= 600000) {
    ++degrees;
    minutes10k -= 600000;
  }
}

// "<yymmdd><A|V><ddmm.mmmm><N|S><dddmm.mmmm><E|W><speed 5><hhmmss><course 6><io 8>L<odometer>"
inline std::string compactBody(const Fix& f) {
  int latD = 0, lonD = 0;
  long latM = 0, lonM = 0;
  degreesMinutes(f.latitude, latD, latM);
  degreesMinutes(f.longitude, lonD, lonM);
  char text[256];
  std::snprintf(text, sizeof text,
                "%02d%02d%02d%c%02d%02ld.%04ld%c%03d%02ld.%04ld%c%05.1f%02d%02d%02d%06.2f%sL%08X",
                f.year % 100, f.month, f.day, f.valid ? 'A' : 'V', latD, latM / 10000, latM % 10000,
                f.latitude < 0 ? 'S' : 'N', lonD, lonM / 10000, lonM % 10000,
                f.longitude < 0 ? 'W' : 'E', f.speedKmh, f.hour, f.minute, f.second, f.course,
                f.io.c_str(), f.odometer);
  return text;
}

// (<id>BR00<body>) — the periodic position.
inline std::string br00(const Fix& f) {
  return "(" + f.id + "BR00" + compactBody(f) + ")";
}

// (<id>BP05<imei><body>) — the login, answered with (<id>AP05).
inline std::string bp05(const Fix& f, const std::string& imei = "354188047365460") {
  return "(" + f.id + "BP05" + imei + compactBody(f) + ")";
}

// (<id>,<command>,ddmmyy,A,ddmm.mmmmN,dddmm.mmmmE,<speed>,hhmmss,<course>) — the comma form
// (the speed field holds five characters: 0.1 km/h below 1000 km/h).
inline std::string commaForm(const Fix& f, const std::string& command) {
  int latD = 0, lonD = 0;
  long latM = 0, lonM = 0;
  degreesMinutes(f.latitude, latD, latM);
  degreesMinutes(f.longitude, lonD, lonM);
  char text[256];
  std::snprintf(
      text, sizeof text,
      "(%s,%s,%02d%02d%02d,%c,%02d%02ld.%04ld%c,%03d%02ld.%04ld%c,%.1f,%02d%02d%02d,%.2f)",
      f.id.c_str(), command.c_str(), f.day, f.month, f.year % 100, f.valid ? 'A' : 'V', latD,
      latM / 10000, latM % 10000, f.latitude < 0 ? 'S' : 'N', lonD, lonM / 10000, lonM % 10000,
      f.longitude < 0 ? 'W' : 'E', f.speedKmh, f.hour, f.minute, f.second, f.course);
  return text;
}

}  // namespace tern::tools::frames::tk103
