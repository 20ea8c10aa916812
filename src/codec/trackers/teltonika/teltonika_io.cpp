#include "codec/trackers/teltonika/teltonika_io.h"

#include <cinttypes>
#include <cstdint>
#include <cstdio>

#include "codec/trackers/util.h"

namespace tern::codec::trackers::teltonika {

namespace {

std::uint64_t unsignedValue(std::string_view v) {
  std::uint64_t x = 0;
  for (char c : v) x = (x << 8) | static_cast<std::uint8_t>(c);
  return x;
}

// Two's complement of the value's own width (1, 2, 4 or 8 bytes).
std::int64_t signedValue(std::string_view v) {
  std::uint64_t x = unsignedValue(v);
  std::size_t bits = v.size() * 8;
  if (bits > 0 && bits < 64 && ((x >> (bits - 1)) & 1) != 0) x |= ~std::uint64_t{0} << bits;
  return static_cast<std::int64_t>(x);  // modular since C++20
}

std::int64_t asInt(std::string_view v) {
  return static_cast<std::int64_t>(unsignedValue(v));
}

// Sets `key` to the unsigned value scaled (volts from mV and the like).
void setScaled(Position& p, std::string_view key, std::string_view v, double scale) {
  p.set(key, static_cast<double>(unsignedValue(v)) * scale);
}

void setSignedScaled(Position& p, std::string_view key, std::string_view v, double scale) {
  p.set(key, static_cast<double>(signedValue(v)) * scale);
}

std::string indexed(std::string_view prefix, unsigned n) {
  return std::string(prefix) + std::to_string(n);
}

// Ids understood for every model.
bool decodeCommon(Position& p, unsigned id, std::string_view v) {
  switch (id) {
    case 1:
    case 2:
    case 3:
    case 4:
      p.set(indexed("in", id), unsignedValue(v) > 0);
      return true;
    case 16:
      p.set(attr::kOdometer, asInt(v));  // metres
      return true;
    case 17:
      p.set("axisX", signedValue(v));
      return true;
    case 18:
      p.set("axisY", signedValue(v));
      return true;
    case 19:
      p.set("axisZ", signedValue(v));
      return true;
    case 21:
      p.set(attr::kRssi, asInt(v));
      return true;
    case 66:
      setScaled(p, attr::kPower, v, 0.001);
      return true;
    case 67:
      setScaled(p, attr::kBattery, v, 0.001);
      return true;
    case 78: {
      // iButton: the key's 64-bit serial, sent little-endian; 0 means no key present.
      std::uint64_t key = 0;
      for (std::size_t i = v.size(); i > 0; --i)
        key = (key << 8) | static_cast<std::uint8_t>(v[i - 1]);
      if (key != 0) {
        char text[17];
        std::snprintf(text, sizeof text, "%016" PRIX64, key);
        p.set("driverUniqueId", std::string(text));
      }
      return true;
    }
    case 179:
    case 180:
      p.set(indexed("out", id - 178), unsignedValue(v) > 0);
      return true;
    case 181:
      setScaled(p, "pdop", v, 0.1);
      return true;
    case 182:
      p.hdop = static_cast<double>(unsignedValue(v)) * 0.1;
      return true;
    case 199:
      p.set("tripOdometer", asInt(v));
      return true;
    case 236:
      if (unsignedValue(v) == 1) p.addAlarm("general");
      return true;
    case 239:
      p.set(attr::kIgnition, unsignedValue(v) > 0);
      return true;
    case 240:
      p.set(attr::kMotion, unsignedValue(v) > 0);
      return true;
    case 241:
      p.set("operator", asInt(v));
      return true;
    case 253:
      // Green-driving events.
      switch (unsignedValue(v)) {
        case 1:
          p.addAlarm("hardAcceleration");
          break;
        case 2:
          p.addAlarm("hardBraking");
          break;
        case 3:
          p.addAlarm("hardCornering");
          break;
        default:
          break;
      }
      return true;
    default:
      return false;
  }
}

// Ids whose meaning Traccar only assumes for FMB-class devices (OBD / CAN, BLE, EYE sensors).
bool decodeFm(Position& p, unsigned id, std::string_view v) {
  switch (id) {
    case 9:
    case 10:
      setScaled(p, indexed("adc", id - 8), v, 0.001);
      return true;
    case 11:
      p.set("iccid", std::to_string(unsignedValue(v)));
      return true;
    case 12:
      setScaled(p, "fuelUsed", v, 0.001);
      return true;
    case 13:
      setScaled(p, "fuelConsumption", v, 0.01);
      return true;
    case 24:
      p.speedKmh = static_cast<double>(unsignedValue(v));
      return true;
    case 25:
    case 26:
    case 27:
    case 28:
      setSignedScaled(p, indexed("bleTemp", id - 24), v, 0.01);
      return true;
    case 30:
      p.set("faultCount", asInt(v));
      return true;
    case 31:
      p.set(attr::kEngineLoad, asInt(v));
      return true;
    case 32:
      p.set(attr::kCoolantTemp, signedValue(v));
      return true;
    case 36:
      p.set(attr::kRpm, asInt(v));
      return true;
    case 72:
    case 73:
    case 74:
    case 75:
      setSignedScaled(p, indexed("temp", id - 71), v, 0.1);
      return true;
    case 81:
      p.set(attr::kObdSpeed, asInt(v));
      return true;
    case 82:
      p.set(attr::kThrottle, asInt(v));
      return true;
    case 83:
      setScaled(p, "fuelUsed", v, 0.1);
      return true;
    case 84:
      setScaled(p, attr::kFuel, v, 0.1);
      return true;
    case 85:
      p.set(attr::kRpm, asInt(v));
      return true;
    case 87:
      p.set("obdOdometer", asInt(v));
      return true;
    case 89:
      p.set(attr::kFuelLevel, asInt(v));
      return true;
    case 113:
      p.set(attr::kBatteryLevel, asInt(v));
      return true;
    case 10800:
    case 10801:
    case 10802:
    case 10803:
      // EYE sensor temperature, 0.01 °C.
      setSignedScaled(p, indexed("eyeTemp", id - 10799), v, 0.01);
      return true;
    default:
      return false;
  }
}

// BLE tag list (ids 548, 10828, 10829, 10831): a header byte, then per tag a length and
// parameters `<id> <length> <value>`.
void decodeTags(Position& p, std::string_view data) {
  ByteReader r(data);
  r.skip(1);  // header
  for (unsigned tag = 1; r.remaining() > 0; ++tag) {
    std::size_t length = r.u8();
    std::string_view body = r.bytes(length);
    if (r.failed()) return;
    ByteReader b(body);
    std::string prefix = indexed("tag", tag);
    while (b.remaining() > 0) {
      unsigned param = b.u8();
      std::size_t size = b.u8();
      std::string_view value = b.bytes(size);
      if (b.failed()) break;
      switch (param) {
        case 0:
          if (size == 1) p.set(prefix + "Rssi", signedValue(value));
          break;
        case 1:
          p.set(prefix + "Id", toHex(value));
          break;
        case 2:
          // EYE sensor voltage: a flags byte, then (mV - 2000) / 10.
          if (size == 2) {
            p.set(prefix + "Voltage",
                  std::int64_t{2000} + 10 * std::int64_t{static_cast<std::uint8_t>(value[1])});
          }
          break;
        case 13:
          p.set(prefix + "LowBattery", asInt(value));
          break;
        case 14:
          p.set(prefix + "Battery", asInt(value));  // mV
          break;
        default:
          break;
      }
    }
  }
}

}  // namespace

bool isFmModel(std::string_view model) {
  return model.size() >= 3 && model[0] == 'F' && model[1] == 'M' && model[2] >= 'A' &&
         model[2] <= 'Z';
}

void decodeIo(Position& p, unsigned id, std::string_view value, const std::string& model) {
  if (decodeCommon(p, id, value)) return;
  if (isFmModel(model) && decodeFm(p, id, value)) return;
  p.set(indexed("io", id), asInt(value));
}

void decodeVariableIo(Position& p, unsigned id, std::string_view value) {
  switch (id) {
    case 256:
    case 325:
      p.set(attr::kVin, std::string(value));
      return;
    case 281:
      p.set(attr::kDtcs, std::string(value));
      return;
    case 548:
    case 10828:
    case 10829:
    case 10831:
      decodeTags(p, value);
      return;
    default:
      p.set(indexed("io", id), toHex(value));
      return;
  }
}

void decodeGh3000Io(Position& p, unsigned id, std::string_view value) {
  switch (id) {
    case 1:
      p.set(attr::kBatteryLevel, asInt(value));
      return;
    case 20:
      p.hdop = static_cast<double>(unsignedValue(value)) * 0.1;
      return;
    case 22:
      setScaled(p, "pdop", value, 0.1);
      return;
    case 67:
      setScaled(p, attr::kBattery, value, 0.001);
      return;
    case 222:
      if (unsignedValue(value) == 1) p.addAlarm("sos");
      return;
    case 240:
      p.set(attr::kMotion, unsignedValue(value) > 0);
      return;
    default:
      p.set(indexed("io", id), asInt(value));
      return;
  }
}

}  // namespace tern::codec::trackers::teltonika
