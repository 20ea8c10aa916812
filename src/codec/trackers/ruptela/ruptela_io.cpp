#include "codec/trackers/ruptela/ruptela_io.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "codec/trackers/util.h"

namespace tern::codec::trackers::ruptela {

namespace {

std::uint64_t unsignedValue(std::string_view v) {
  std::uint64_t x = 0;
  for (char c : v) x = (x << 8) | static_cast<std::uint8_t>(c);
  return x;
}

std::int64_t signedValue(std::string_view v) {
  std::uint64_t x = unsignedValue(v);
  std::size_t bits = v.size() * 8;
  if (bits > 0 && bits < 64 && ((x >> (bits - 1)) & 1) != 0) x |= ~std::uint64_t{0} << bits;
  return static_cast<std::int64_t>(x);  // modular since C++20
}

std::int64_t asInt(std::string_view v) {
  return static_cast<std::int64_t>(unsignedValue(v));
}

// v × factor when it fits in int64 (8-byte values can be anything on a broken packet).
std::optional<std::int64_t> multiplied(std::string_view v, std::uint64_t factor) {
  std::uint64_t x = unsignedValue(v);
  if (x > static_cast<std::uint64_t>(INT64_MAX) / factor) return std::nullopt;
  return static_cast<std::int64_t>(x * factor);
}

double scaled(std::string_view v, double scale) {
  return static_cast<double>(unsignedValue(v)) * scale;
}

// Tachograph driver card ids arrive as two 8-byte halves of ASCII; each half is parked under a
// private key until the record is complete.
constexpr std::string_view kHalfPrefix = "_driverHalf";

std::string halfKey(unsigned id) {
  return std::string(kHalfPrefix) + std::to_string(id);
}

// Takes a parked half out of the attributes.
std::optional<std::string> takeHalf(Position& p, unsigned id) {
  std::string key = halfKey(id);
  auto it = std::find_if(p.attributes.begin(), p.attributes.end(),
                         [&](const Attribute& a) { return a.key == key; });
  if (it == p.attributes.end()) return std::nullopt;
  std::optional<std::string> out;
  if (auto* s = std::get_if<std::string>(&it->value)) out = *s;
  p.attributes.erase(it);
  return out;
}

// The card number: printable characters of both halves, padding removed.
std::string cardText(const std::string& first, const std::string& second) {
  std::string out;
  for (char c : first + second) {
    auto b = static_cast<std::uint8_t>(c);
    if (b > 0x20 && b < 0x7F) out.push_back(c);
  }
  return out;
}

}  // namespace

void decodeIo(Position& p, unsigned id, std::string_view v) {
  switch (id) {
    case 2:
    case 3:
    case 4:
    case 5:
      p.set("in" + std::to_string(id - 1), unsignedValue(v) > 0);
      return;
    case 29:
      p.set(attr::kPower, scaled(v, 0.001));  // mV
      return;
    case 30:
      p.set(attr::kBattery, scaled(v, 0.001));  // mV
      return;
    case 32:
      p.set("deviceTemp", signedValue(v));
      return;
    case 34:
      // 1-Wire (iButton) key: its 8 bytes as hex; 0 means no key.
      if (v.size() == 8 && unsignedValue(v) != 0) p.set("driverUniqueId", toHex(v));
      return;
    case 39:
      p.set(attr::kEngineLoad, asInt(v));
      return;
    case 65:
      p.set(attr::kOdometer, asInt(v));  // m
      return;
    case 94:
      p.set(attr::kRpm, scaled(v, 0.25));
      return;
    case 95:
      p.set(attr::kObdSpeed, asInt(v));
      return;
    case 98:
      p.set(attr::kFuel, asInt(v));  // %
      return;
    case 100:
      p.set("fuelConsumption", scaled(v, 1.0 / 20.0));
      return;
    case 126:
    case 127:
    case 155:
    case 156:
      if (v.size() == 8) {
        p.set(halfKey(id), std::string(v));
        return;
      }
      break;
    case 163:
      if (auto m = multiplied(v, 5)) {  // 5 m units
        p.set(attr::kOdometer, *m);
        return;
      }
      break;
    case 166:
    case 197:
      p.set(attr::kRpm, scaled(v, 0.125));
      return;
    case 170:
      p.set(attr::kCharge, unsignedValue(v) > 0);
      return;
    case 205:
      p.set(attr::kFuel, asInt(v));
      return;
    case 207:
      p.set(attr::kFuelLevel, scaled(v, 0.4));
      return;
    case 208:
      p.set("fuelUsed", scaled(v, 0.5));
      return;
    case 251:
    case 409:
      p.set(attr::kIgnition, unsignedValue(v) > 0);
      return;
    case 645:
      if (auto m = multiplied(v, 1000)) {  // km → m
        p.set("obdOdometer", *m);
        return;
      }
      break;
    default:
      break;
  }
  p.set("io" + std::to_string(id), asInt(v));
}

void finishIo(Position& p) {
  for (auto [first, second] : {std::pair{126u, 127u}, std::pair{155u, 156u}}) {
    auto a = takeHalf(p, first);
    auto b = takeHalf(p, second);
    if (!a || !b) {
      // A lone half is not an id: keep it raw like any other value.
      if (a) p.set("io" + std::to_string(first), asInt(*a));
      if (b) p.set("io" + std::to_string(second), asInt(*b));
      continue;
    }
    std::string card = cardText(*a, *b);
    if (!card.empty() && p.get("driverUniqueId") == nullptr) p.set("driverUniqueId", card);
  }
}

}  // namespace tern::codec::trackers::ruptela
