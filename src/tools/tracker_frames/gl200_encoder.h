#pragma once
// Device-side encoder for Queclink GL200-family messages with known values: text GTFRI (GV300
// layout, several location blocks), the heartbeat, a command acknowledgement, the legacy binary
// "+RSP" report and the newer tagged binary format. Written from the message layouts, so the
// decoder is checked against values it did not produce.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <vector>

namespace tern::tools::frames::gl200 {

struct Fix {
  double latitude = 0;
  double longitude = 0;
  int year = 2023, month = 9, day = 26, hour = 20, minute = 3, second = 38;
  double speedKmh = 0;  // one decimal on the wire
  int course = 0;
  double altitude = 0;  // one decimal
  int accuracy = 1;     // GPS accuracy / HDOP; 0 = no fix (last known position)
};

inline std::string timeText(int y, int mo, int d, int h, int mi, int s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04d%02d%02d%02d%02d%02d", y, mo, d, h, mi, s);
  return buf;
}

inline std::string fixed(double v, int decimals) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

// "<accuracy>,<speed>,<azimuth>,<altitude>,<lon>,<lat>,<time>,<mcc>,<mnc>,<lac>,<cell>,00"
// Joins fields with ',' (appending piece by piece: GCC 12's -Wrestrict misfires on long
// `string + string` chains).
inline std::string joinFields(std::initializer_list<std::string> fields) {
  std::string out;
  for (const std::string& f : fields) {
    if (!out.empty() || &f != fields.begin()) out += ',';
    out += f;
  }
  return out;
}

inline std::string locationBlock(const Fix& f) {
  return joinFields({std::to_string(f.accuracy), fixed(f.speedKmh, 1), std::to_string(f.course),
                     fixed(f.altitude, 1), fixed(f.longitude, 6), fixed(f.latitude, 6),
                     timeText(f.year, f.month, f.day, f.hour, f.minute, f.second), "0460", "0000",
                     "18D8", "6141", "00"});
}

struct FriReport {
  std::string header = "+RESP";    // or "+BUFF"
  std::string version = "060100";  // GV300
  std::string imei = "862894020180553";
  std::vector<Fix> fixes;
  int powerMv = 12345;
  double mileageKm = 1234.5;
  std::string hours = "00123:45:06";
  int batteryLevel = 87;
  std::string status = "210100";  // ignition on, input 1, outputs off
  std::string sendTime = "20230926200340";
  std::string count = "1A2B";
};

// GV300 fixed report: <power>,<report type>,<count>,<blocks>,<mileage>,<hour meter>,<adc1>,<adc2>,
// <battery %>,<device status>,<rpm>,<fuel consumption>,<fuel level>,<send time>,<count>$
inline std::string encodeFri(const FriReport& r) {
  std::string s = joinFields({r.header + ":GTFRI", r.version, r.imei, "", std::to_string(r.powerMv),
                              "10", std::to_string(r.fixes.size())});
  for (const Fix& f : r.fixes) {
    s += ',';
    s += locationBlock(f);
  }
  s += ',';
  s += joinFields({fixed(r.mileageKm, 1), r.hours, "", "", std::to_string(r.batteryLevel), r.status,
                   "", "", "", r.sendTime, r.count});
  s += '$';
  return s;
}

inline std::string encodeHeartbeat(const std::string& version, const std::string& imei,
                                   const std::string& count) {
  return joinFields({"+ACK:GTHBD", version, imei, "", "20230926200340", count}) + "$";
}

// The device's acknowledgement of an AT+GT command: echoes the command's serial number.
inline std::string encodeCommandAck(const std::string& command, const std::string& imei,
                                    const std::string& serial) {
  return joinFields({"+ACK:GT" + command, "060100", imei, "", serial, "20230926200340", "0042"}) +
         "$";
}

inline void putU8(std::string& out, unsigned v) {
  out.push_back(static_cast<char>(v & 0xFF));
}
inline void putU16(std::string& out, unsigned v) {
  putU8(out, v >> 8);
  putU8(out, v);
}
inline void putU32(std::string& out, std::uint32_t v) {
  putU16(out, v >> 16);
  putU16(out, v & 0xFFFF);
}
inline void putDateTime(std::string& out, int y, int mo, int d, int h, int mi, int s) {
  putU16(out, static_cast<unsigned>(y));
  for (int v : {mo, d, h, mi, s}) putU8(out, static_cast<unsigned>(v));
}
inline std::uint32_t microdegrees(double deg) {
  return static_cast<std::uint32_t>(static_cast<std::int32_t>(std::lround(deg * 1e6)));
}

// Legacy binary IMEI: seven two-digit decimal bytes and a final digit.
inline std::string legacyImei(const std::string& imei) {
  std::string out;
  for (std::size_t i = 0; i < 14; i += 2)
    putU8(out, static_cast<unsigned>(std::stoi(imei.substr(i, 2))));
  putU8(out, static_cast<unsigned>(imei[14] - '0'));
  return out;
}

// "+RSP" fixed report (type 7): header, battery, power, motion, satellites, index, records,
// send time, count number, CR LF; the length field counts the whole message.
inline std::string encodeBinaryReport(const std::string& imei, const std::vector<Fix>& fixes,
                                      int battery, int powerMv, int satellites) {
  std::string body;
  body += "+RSP";
  putU8(body, 7);
  putU32(body, 0x00FC1FBF);
  putU16(body, 0);  // length, patched below
  putU8(body, 0x45);
  putU16(body, 0x0102);
  putU16(body, 0x0209);
  body += legacyImei(imei);
  putU8(body, static_cast<unsigned>(battery));
  putU16(body, static_cast<unsigned>(powerMv));
  putU8(body, 0x42);  // motion status
  putU8(body, static_cast<unsigned>(satellites));
  putU8(body, 0x10);  // index
  putU8(body, static_cast<unsigned>(fixes.size()));
  for (const Fix& f : fixes) {
    putU8(body, static_cast<unsigned>(f.accuracy));
    auto tenths = static_cast<unsigned>(std::lround(f.speedKmh * 10));
    putU16(body, tenths / 10);
    putU8(body, tenths % 10);
    putU16(body, static_cast<unsigned>(f.course));
    putU16(body, static_cast<unsigned>(static_cast<std::int16_t>(std::lround(f.altitude))));
    putU32(body, microdegrees(f.longitude));
    putU32(body, microdegrees(f.latitude));
    putDateTime(body, f.year, f.month, f.day, f.hour, f.minute, f.second);
    putU16(body, 0x0268);
    putU16(body, 0x0003);
    putU16(body, 0x189C);
    putU16(body, 0x1AC5);
    putU8(body, 0);
  }
  putDateTime(body, 2017, 8, 1, 8, 36, 16);
  putU16(body, 0x19E1);
  body += "\r\n";
  body[9] = static_cast<char>((body.size() >> 8) & 0xFF);
  body[10] = static_cast<char>(body.size() & 0xFF);
  return body;
}

// Newer binary format: '+', 0x00, length, flags, IMEI (hex digits, leading 0), device type,
// protocol version, custom version, reserved, one record with a GNSS item (tag 0x52), count
// number, check byte, '$'.
inline std::string encodeTagged(const std::string& imei, const Fix& f, int satellites,
                                std::uint32_t unixTime) {
  std::string imeiBytes;
  std::string hex = "0" + imei;
  for (std::size_t i = 0; i < 16; i += 2)
    putU8(imeiBytes, static_cast<unsigned>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  std::string gnss;
  putU8(gnss, f.accuracy > 0 ? 0x08 : 0x00);  // fix state in bits 2-3
  putU32(gnss, microdegrees(f.longitude));
  putU32(gnss, microdegrees(f.latitude));
  putU32(gnss, unixTime);
  putU16(gnss, static_cast<unsigned>(std::lround(f.speedKmh * 10)));
  putU8(gnss, static_cast<unsigned>(f.accuracy * 10));
  putU16(gnss, static_cast<unsigned>(f.course));
  auto alt = static_cast<std::uint32_t>(std::lround(f.altitude * 10));
  putU8(gnss, alt >> 16);
  putU16(gnss, alt & 0xFFFF);
  putU8(gnss, static_cast<unsigned>(satellites));
  std::string record;
  putU32(record, unixTime);
  putU16(record, 0x0189);
  putU8(record, 0x50);
  putU8(record, 0x00);
  putU8(record, 0x52);
  putU8(record, static_cast<unsigned>(gnss.size()));
  record += gnss;
  std::string recordWithLength;
  putU8(recordWithLength, static_cast<unsigned>(record.size() + 1));
  recordWithLength += record;
  std::string out;
  out += '+';
  out += '\0';
  putU16(out, 0);  // length, patched below
  putU8(out, 0);   // flags
  out += imeiBytes;
  putU16(out, 0x8203);
  putU16(out, 0x0003);
  putU8(out, 0);
  putU8(out, 0);  // no reserved bytes
  out += recordWithLength;
  putU16(out, 0x010F);
  putU8(out, 0xF8);
  out += '$';
  out[2] = static_cast<char>((out.size() >> 8) & 0xFF);
  out[3] = static_cast<char>(out.size() & 0xFF);
  return out;
}

}  // namespace tern::tools::frames::gl200
