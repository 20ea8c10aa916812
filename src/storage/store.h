#pragma once
// The one storage interface. Backends live in subfolders; only app/ names them.
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/result.h"
#include "storage/record.h"

namespace tern::storage {

struct MessageQuery {
  std::string deviceId;
  std::int64_t fromUs = 0;        // inclusive, server time
  std::int64_t toUs = INT64_MAX;  // exclusive
  std::uint32_t limit = 100;
  bool descending = false;
  // Keyset cursor: continue after (serverTimeUs, id) of the last record of the previous page.
  std::optional<std::int64_t> afterTimeUs;
  std::optional<std::int64_t> afterId;
};

// kFirst/kLast: the value of the earliest/latest record in the bucket (by server time, then
// store id) that has a numeric value of the key.
enum class Aggregate { kAvg, kMin, kMax, kSum, kCount, kFirst, kLast };

struct SeriesQuery {
  std::string deviceId;
  std::string key;
  std::int64_t fromUs = 0;
  std::int64_t toUs = INT64_MAX;
  std::int64_t bucketUs = 60'000'000;
  Aggregate aggregate = Aggregate::kAvg;
  // Buckets of whole minutes (hours) use the 1 min (1 h) rollups where they are complete; the
  // answer is the same as from raw rows. false: raw rows only (comparisons, diagnostics).
  bool useRollups = true;
};

// What one Store::rollup run did.
struct RollupRun {
  std::int64_t watermarkUs = 0;   // every whole minute before it is rolled up
  std::int64_t minutes = 0;       // (device, minute, key) rollups written
  std::int64_t dirtyMinutes = 0;  // (device, minute)s redone because data arrived late
};

struct Bucket {
  std::int64_t startUs = 0;
  double value = 0;
  std::int64_t count = 0;  // numeric values in the bucket
};

// A device registered through updateDevice before it sent anything has these first/last seen
// times (so the ingest path's min/max merge needs no special case) and no messages.
inline constexpr std::int64_t kNeverSeenFirstUs = std::numeric_limits<std::int64_t>::max();
inline constexpr std::int64_t kNeverSeenLastUs = std::numeric_limits<std::int64_t>::min();

struct DeviceSummary {
  std::string deviceId;
  std::int64_t firstSeenUs = 0;
  std::int64_t lastSeenUs = 0;
  std::int64_t messageCount = 0;
  std::vector<Field> latest;  // the latest value of every key the device has sent
  // Set by clients (PUT /api/v1/devices/{id}), never by ingest. Tags group devices for fleet
  // queries; attributes are a JSON object's text, kept as given.
  std::map<std::string, std::string> tags;
  std::string attributes = "{}";
  // Set by clients: a display name and a device type (free text; empty when never set).
  std::string name;
  std::string type;

  bool neverSeen() const { return firstSeenUs > lastSeenUs; }
};

// What updateDevice changes; a member left empty is kept as it is.
struct DeviceUpdate {
  std::optional<std::map<std::string, std::string>> tags;  // replaces every tag
  std::optional<std::string> attributes;  // a JSON object's text; replaces the attributes
  std::optional<std::string> name;
  std::optional<std::string> type;
};

// Which devices a fleet query covers: those with tag `tagKey` = `tagValue`, or every device when
// tagKey is empty.
struct DeviceGroup {
  std::string tagKey;
  std::string tagValue;
  bool everyDevice() const { return tagKey.empty(); }
};

// One device's answer to a fleet query.
struct FleetDevice {
  std::string deviceId;
  std::int64_t lastSeenUs = 0;  // the device's last message (of any key)
  std::vector<Field> values;    // fleetLatest: the requested latest values
  double value = 0;             // fleetThreshold: the latest value; fleetWindowAverage: the average
  std::int64_t count = 0;       // numeric values behind `value` (1 for a latest value)
};

// fleetLatest: the latest values of `keys` (every key when empty) of every device in the group
// that has at least one of them.
struct FleetLatestQuery {
  DeviceGroup group;
  std::vector<std::string> keys;
};

// fleetThreshold: devices whose latest value of `key` is numeric and strictly below (or above)
// `threshold`.
struct FleetThresholdQuery {
  DeviceGroup group;
  std::string key;
  double threshold = 0;
  bool below = true;
};

// fleetWindowAverage: devices whose average of the numeric values of `key` in [fromUs, toUs)
// (server time) is strictly below (or above) `threshold`. Devices without such values in the
// window are left out.
struct FleetWindowQuery {
  DeviceGroup group;
  std::string key;
  std::int64_t fromUs = 0;
  std::int64_t toUs = 0;
  double threshold = 0;
  bool below = true;
  // Whole minutes of the window use the 1 min rollups where they are complete (as series do);
  // the partial minutes at both ends, dirty minutes and minutes from the watermark on come from
  // raw rows. false: raw rows only (comparisons, diagnostics).
  bool useRollups = true;
};

// fleetDaily: per UTC day (of server time) in [fromUs, toUs), `aggregate` (avg, min, max, sum or
// count) over the numeric values of `key` of the group's devices; one row per day, or per day
// and value of tag `byTag` when that is set (devices without that tag form the group nullopt).
struct FleetDailyQuery {
  DeviceGroup group;
  std::string key;
  Aggregate aggregate = Aggregate::kAvg;
  std::int64_t fromUs = 0;
  std::int64_t toUs = 0;
  std::string byTag;
};

struct FleetDailyRow {
  std::int64_t dayUs = 0;            // UTC midnight
  std::optional<std::string> group;  // the byTag value; nullopt without byTag or without tag
  double value = 0;
  std::int64_t count = 0;  // numeric values in the row
};

class Store {
 public:
  virtual ~Store() = default;

  // Writes a batch in one transaction and returns only once it is committed with the configured
  // durability. Called from one writer thread only.
  virtual core::Status appendBatch(std::span<const Record> records) = 0;

  // Reads. Safe to call from any thread concurrently with appendBatch.
  virtual core::Result<std::vector<StoredRecord>> queryMessages(const MessageQuery& query) = 0;
  virtual core::Result<std::vector<Bucket>> querySeries(const SeriesQuery& query) = 0;
  virtual core::Result<std::vector<DeviceSummary>> listDevices() = 0;
  virtual core::Result<std::optional<DeviceSummary>> getDevice(const std::string& deviceId) = 0;
  virtual core::Result<std::int64_t> countMessages() = 0;

  // Retention. Deletes messages whose server time is before `cutoffUs`; device summaries follow
  // (count, first seen; latest values stay). Works in short transactions so ingest is never
  // blocked for long, and may run on any thread concurrently with appendBatch. Returns the number
  // of messages deleted.
  virtual core::Result<std::int64_t> deleteBefore(std::int64_t cutoffUs) {
    (void)cutoffUs;
    return core::Error{backendName() + ": retention is not supported"};
  }
  // Per-key retention: removes `key` from the fields of messages before `cutoffUs` (the message
  // and its other fields stay). Returns the number of messages changed.
  virtual core::Result<std::int64_t> dropKeyBefore(const std::string& key, std::int64_t cutoffUs) {
    (void)key;
    (void)cutoffUs;
    return core::Error{backendName() + ": per-key retention is not supported"};
  }

  // Device tags and attributes. Any thread. Creates the device (with no messages, see
  // kNeverSeenFirstUs) when it does not exist yet, and returns it as it is afterwards. Fails when
  // `attributes` is not valid JSON.
  virtual core::Result<DeviceSummary> updateDevice(const std::string& deviceId,
                                                   const DeviceUpdate& update) {
    (void)deviceId;
    (void)update;
    return core::Error{backendName() + ": device tags are not supported"};
  }
  // Removes a device and everything stored about it: messages, rollups, tags, attributes, name
  // and type. False when there is no such device. Any thread, concurrently with appendBatch: the
  // history goes in chunks of short transactions (as in retention), then the device row and what
  // is left in one last one, so the writer waits at most one chunk. A record of the device
  // committed after that last transaction makes it a new device (first seen then).
  virtual core::Result<bool> deleteDevice(const std::string& deviceId) {
    (void)deviceId;
    return core::Error{backendName() + ": deleting devices is not supported"};
  }
  // Devices last seen at or after `sinceUs`, ordered by id, like listDevices: what other nodes
  // sharing the database wrote lately, for the latest-state cache. The default filters
  // listDevices(); a backend several nodes share answers it in the database.
  virtual core::Result<std::vector<DeviceSummary>> listDevicesSeenSince(std::int64_t sinceUs) {
    auto devices = listDevices();
    if (!devices) return devices.error();
    std::erase_if(*devices, [sinceUs](const DeviceSummary& d) {
      return d.neverSeen() || d.lastSeenUs < sinceUs;
    });
    return devices;
  }
  // Devices with tag `key` = `value`, ordered by id, like listDevices.
  virtual core::Result<std::vector<DeviceSummary>> listDevicesWithTag(const std::string& key,
                                                                      const std::string& value) {
    (void)key;
    (void)value;
    return core::Error{backendName() + ": device tags are not supported"};
  }

  // Fleet queries over a device group (the TSBS "IoT" questions). Any thread. Each runs as one
  // statement inside the database; results are ordered by device id (fleetDaily: by day, then
  // group, no group last).
  virtual core::Result<std::vector<FleetDevice>> fleetLatest(const FleetLatestQuery& query) {
    (void)query;
    return core::Error{backendName() + ": fleet queries are not supported"};
  }
  virtual core::Result<std::vector<FleetDevice>> fleetThreshold(const FleetThresholdQuery& query) {
    (void)query;
    return core::Error{backendName() + ": fleet queries are not supported"};
  }
  virtual core::Result<std::vector<FleetDevice>> fleetWindowAverage(const FleetWindowQuery& query) {
    (void)query;
    return core::Error{backendName() + ": fleet queries are not supported"};
  }
  virtual core::Result<std::vector<FleetDailyRow>> fleetDaily(const FleetDailyQuery& query) {
    (void)query;
    return core::Error{backendName() + ": fleet queries are not supported"};
  }

  // Rollups (storage/rollup.h): aggregates every whole minute before `untilUs` not yet rolled
  // up (at most a day past the previous run) and redoes minutes that got records after they
  // were rolled up; then the hours they fall in. Short transactions, any thread, concurrently
  // with appendBatch; one run at a time.
  virtual core::Result<RollupRun> rollup(std::int64_t untilUs) {
    (void)untilUs;
    return core::Error{backendName() + ": rollups are not supported"};
  }

  // A short backend name and whether it is usable right now, for health checks.
  virtual std::string backendName() const = 0;
  virtual core::Status check() = 0;
};

}  // namespace tern::storage
