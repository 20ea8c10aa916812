#pragma once
// The one position model every tracker protocol decodes into. Units are fixed here so that the
// rest of Tern never needs to know which protocol a position came from.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tern::codec::trackers {

using AttributeValue = std::variant<std::int64_t, double, bool, std::string>;

struct Attribute {
  std::string key;
  AttributeValue value;
  bool operator==(const Attribute&) const = default;
};

// Attribute vocabulary shared by all protocols (names follow Traccar's, units are ours):
//   ignition (bool), motion (bool), odometer (m, int), hours (engine hours, ms as Traccar), power
//   (V), battery (V), batteryLevel (%), fuel (L or %, as the device reports), fuelLevel (%), rpm,
//   obdSpeed (km/h), coolantTemp (°C), engineLoad (%), throttle (%), dtcs (string, comma
//   separated), vin (string), alarm (sos | overspeed | powerCut | vibration | lowBattery |
//   geofenceEnter | geofenceExit | hardBraking | hardAcceleration | ... ; several joined with ','),
//   event (int), rssi, sat, hdop, pdop, status, input, output, io<N> (unmapped inputs),
//   adc<N>, temp<N>, iccid, versionFw, result (a command's answer text), charge (bool),
//   blocked (bool), archive (bool), type (string).
namespace attr {
inline constexpr std::string_view kIgnition = "ignition";
inline constexpr std::string_view kMotion = "motion";
inline constexpr std::string_view kOdometer = "odometer";
inline constexpr std::string_view kHours = "hours";
inline constexpr std::string_view kPower = "power";
inline constexpr std::string_view kBattery = "battery";
inline constexpr std::string_view kBatteryLevel = "batteryLevel";
inline constexpr std::string_view kFuel = "fuel";
inline constexpr std::string_view kFuelLevel = "fuelLevel";
inline constexpr std::string_view kRpm = "rpm";
inline constexpr std::string_view kObdSpeed = "obdSpeed";
inline constexpr std::string_view kCoolantTemp = "coolantTemp";
inline constexpr std::string_view kEngineLoad = "engineLoad";
inline constexpr std::string_view kThrottle = "throttle";
inline constexpr std::string_view kDtcs = "dtcs";
inline constexpr std::string_view kVin = "vin";
inline constexpr std::string_view kAlarm = "alarm";
inline constexpr std::string_view kEvent = "event";
inline constexpr std::string_view kRssi = "rssi";
inline constexpr std::string_view kResult = "result";
inline constexpr std::string_view kStatus = "status";
inline constexpr std::string_view kInput = "input";
inline constexpr std::string_view kOutput = "output";
inline constexpr std::string_view kCharge = "charge";
inline constexpr std::string_view kBlocked = "blocked";
inline constexpr std::string_view kArchive = "archive";
inline constexpr std::string_view kType = "type";
}  // namespace attr

struct Position {
  std::string protocol;  // "gt06", "teltonika", ...
  std::string
      deviceId;  // IMEI or the protocol's device id; the session fills it if the frame has none
  std::int64_t deviceTimeUs = 0;  // UTC, µs; 0 when the message carries no time
  // False for messages without coordinates (status, heartbeat with data, OBD): the position is
  // stored with its attributes and the location fields are left out.
  bool hasLocation = true;
  bool valid = false;              // GPS fix valid
  double latitude = 0;             // degrees, south negative
  double longitude = 0;            // degrees, west negative
  std::optional<double> altitude;  // m
  double speedKmh = 0;             // km/h (knots are converted by the decoder)
  std::optional<double> course;    // degrees 0..360
  std::optional<int> satellites;
  std::optional<double> hdop;
  std::vector<Attribute> attributes;

  // Sets or replaces an attribute.
  void set(std::string_view key, AttributeValue value);
  // Appends to the comma-separated "alarm" attribute.
  void addAlarm(std::string_view alarm);
  const AttributeValue* get(std::string_view key) const;
};

inline constexpr double kKnotsToKmh = 1.852;

}  // namespace tern::codec::trackers
