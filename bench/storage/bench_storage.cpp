// tern-bench-storage: a TSBS-IoT-shaped write and query benchmark of Tern's storage backends,
// next to the same questions as plain SQL on a PostgreSQL table. Run through
// bench/storage/run.sh, which starts a private PostgreSQL; see docs/benchmarks.md.
//
// The data set is generated on the fly (never stored): trucks with tags (fleet, driver, model)
// sending one record every 10 s that carries both TSBS measurements, readings (latitude,
// longitude, elevation, velocity, heading, grade, fuel_consumption) and diagnostics
// (fuel_state, current_load, status), plus the tags as string fields. Records come in time
// order, every truck at t, then every truck at t + 10 s, the way live ingest arrives.
//
// Output is one line per result, `KIND key=value ...`, for run.sh to tabulate:
//   SLICE  write rate of each slice of --slice records as the table grows
//   WRITE  the whole write phase
//   CHECK  records counted at the end against records written
//   QUERY  latency p50/p99 of each query at the final size
#include <fmt/format.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/time.h"
#include "ingest/pipeline.h"
#include "storage/postgres/postgres_store.h"
#include "storage/record.h"
#include "storage/rollup.h"
#include "storage/sqlite/sqlite_store.h"
#include "storage/store.h"

namespace {

using namespace tern;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kSecondUs = 1'000'000;
constexpr std::int64_t kIntervalUs = 10 * kSecondUs;
constexpr std::int64_t kMinuteUs = 60 * kSecondUs;
constexpr std::int64_t kHourUs = 60 * kMinuteUs;
constexpr std::int64_t kDayUs = 24 * kHourUs;
// TSBS's default start, 2016-01-01T00:00:00Z.
constexpr std::int64_t kStartUs = 1'451'606'400LL * kSecondUs;
constexpr std::int64_t kStationaryWindowUs = 10 * kMinuteUs;
constexpr std::uint32_t kPageLimit = 1000;
constexpr std::uint32_t kCopyBatch =
    5000;  // rows per COPY (one transaction), like a pipeline batch

constexpr std::array<std::string_view, 5> kFleets{"East", "West", "North", "South", "Central"};
constexpr std::array<std::string_view, 6> kDrivers{"Albert", "Derek", "Andy",
                                                   "Seth",   "Trish", "Rodney"};
constexpr std::array<std::string_view, 3> kModels{"F-150", "G-2000", "H-2"};

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// splitmix64: fast, deterministic, good enough for a data generator.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * unit(); }
  std::uint64_t below(std::uint64_t n) { return next() % n; }

 private:
  std::uint64_t state_;
};

double roundTo(double value, double scale) {
  return std::round(value * scale) / scale;
}

double walk(Rng& rng, double value, double step, double lo, double hi, double scale) {
  value += rng.uniform(-step, step);
  return roundTo(std::clamp(value, lo, hi), scale);
}

std::string truckName(std::uint64_t index) {
  std::string name = "truck_";
  name += std::to_string(index);
  return name;
}

struct Truck {
  std::string name;
  std::string topic;
  std::string_view fleet;
  std::string_view driver;
  std::string_view model;
  bool parked = false;
  double latitude = 0;
  double longitude = 0;
  double elevation = 0;
  double velocity = 0;
  double heading = 0;
  double grade = 0;
  double fuelConsumption = 0;
  double fuelState = 0;
  double currentLoad = 0;
  std::int64_t status = 0;
};

// Every truck is parked (velocity 0, position fixed) or driving (velocity a random walk in
// 5..100 km/h); it switches with probability 1/720 per reading, so stints last about 2 h. Fuel
// state walks in 0..1, so some trucks are low on fuel at any time.
class Generator {
 public:
  Generator(std::uint64_t trucks, std::uint64_t seed) : rng_(seed) {
    trucks_.resize(trucks);
    for (std::uint64_t i = 0; i < trucks; ++i) {
      Truck& t = trucks_[i];
      t.name = truckName(i);
      t.topic = "trucks/";
      t.topic += t.name;
      t.fleet = kFleets[rng_.below(kFleets.size())];
      t.driver = kDrivers[rng_.below(kDrivers.size())];
      t.model = kModels[rng_.below(kModels.size())];
      t.parked = rng_.unit() < 0.2;
      t.latitude = roundTo(rng_.uniform(-90, 90), 1e5);
      t.longitude = roundTo(rng_.uniform(-180, 180), 1e5);
      t.elevation = roundTo(rng_.uniform(0, 5000), 10);
      t.velocity = t.parked ? 0 : roundTo(rng_.uniform(5, 100), 100);
      t.heading = roundTo(rng_.uniform(0, 360), 100);
      t.grade = roundTo(rng_.uniform(0, 100), 100);
      t.fuelConsumption = roundTo(rng_.uniform(0, 50), 100);
      t.fuelState = roundTo(rng_.unit(), 1000);
      t.currentLoad = roundTo(rng_.uniform(0, 5000), 10);
    }
  }

  std::uint64_t trucks() const { return trucks_.size(); }
  const std::vector<Truck>& allTrucks() const { return trucks_; }

  // Advances to the next reading (truck i at tick k, time-major). The first call yields the
  // first reading.
  void next() {
    if (started_) {
      if (++index_ == trucks_.size()) {
        index_ = 0;
        ++tick_;
      }
    }
    started_ = true;
    step(trucks_[index_]);
  }
  const Truck& truck() const { return trucks_[index_]; }
  std::int64_t timeUs() const { return kStartUs + static_cast<std::int64_t>(tick_) * kIntervalUs; }

  storage::Record record() const {
    const Truck& t = truck();
    storage::Record r;
    r.deviceId = t.name;
    r.serverTimeUs = timeUs();
    r.deviceTimeUs = timeUs();
    r.nodeId = "bench";
    r.topic = t.topic;
    r.payloadIsJson = true;
    r.payload = fmt::format(
        R"({{"latitude":{},"longitude":{},"elevation":{},"velocity":{},"heading":{},"grade":{},)"
        R"("fuel_consumption":{},"fuel_state":{},"current_load":{},"status":{},"fleet":"{}",)"
        R"("driver":"{}","model":"{}"}})",
        t.latitude, t.longitude, t.elevation, t.velocity, t.heading, t.grade, t.fuelConsumption,
        t.fuelState, t.currentLoad, t.status, t.fleet, t.driver, t.model);
    r.fields.reserve(13);
    r.fields.push_back({"latitude", t.latitude});
    r.fields.push_back({"longitude", t.longitude});
    r.fields.push_back({"elevation", t.elevation});
    r.fields.push_back({"velocity", t.velocity});
    r.fields.push_back({"heading", t.heading});
    r.fields.push_back({"grade", t.grade});
    r.fields.push_back({"fuel_consumption", t.fuelConsumption});
    r.fields.push_back({"fuel_state", t.fuelState});
    r.fields.push_back({"current_load", t.currentLoad});
    r.fields.push_back({"status", t.status});
    r.fields.push_back({"fleet", std::string(t.fleet)});
    r.fields.push_back({"driver", std::string(t.driver)});
    r.fields.push_back({"model", std::string(t.model)});
    return r;
  }

  // One row of `readings` in COPY text format.
  void appendCopyRow(std::string& out) const {
    const Truck& t = truck();
    fmt::format_to(std::back_inserter(out), "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                   t.name, timeUs(), t.latitude, t.longitude, t.elevation, t.velocity, t.heading,
                   t.grade, t.fuelConsumption, t.fuelState, t.currentLoad, t.status);
  }

 private:
  void step(Truck& t) {
    if (rng_.below(720) == 0) {
      t.parked = !t.parked;
    }
    if (t.parked) {
      t.velocity = 0;
    } else {
      t.velocity = walk(rng_, std::max(t.velocity, 5.0), 2, 5, 100, 100);
      t.latitude = walk(rng_, t.latitude, 0.001, -90, 90, 1e5);
      t.longitude = walk(rng_, t.longitude, 0.001, -180, 180, 1e5);
      t.heading = walk(rng_, t.heading, 5, 0, 360, 100);
      t.grade = walk(rng_, t.grade, 1, 0, 100, 100);
      t.elevation = walk(rng_, t.elevation, 5, 0, 5000, 10);
    }
    t.fuelConsumption = walk(rng_, t.fuelConsumption, 1, 0, 50, 100);
    t.fuelState = walk(rng_, t.fuelState, 0.002, 0, 1, 1000);
    t.currentLoad = walk(rng_, t.currentLoad, 10, 0, 5000, 10);
    t.status = static_cast<std::int64_t>(rng_.below(6));
  }

  Rng rng_;
  std::vector<Truck> trucks_;
  std::size_t index_ = 0;
  std::uint64_t tick_ = 0;
  bool started_ = false;
};

// --- results -------------------------------------------------------------------------------

struct Options {
  std::string backend;
  std::string path;
  std::string url;
  std::uint64_t records = 1'000'000;
  std::uint64_t trucks = 10'000;
  std::uint64_t slice = 1'000'000;
  int reps = 50;
  int fleetReps = 10;
  std::uint64_t seed = 1;
  bool queries = true;
  bool rollups = true;           // roll up the data before the queries (Tern's stores)
  bool liveRollups = false;      // run the rollup job during the writes, as `tern serve` does
  std::string partition = "1d";  // Tern's PostgreSQL store: storage.partition
};

// Times when the k-th slice finished, with what it took.
class SliceReporter {
 public:
  SliceReporter(std::string backend, std::uint64_t slice, std::uint64_t total)
      : backend_(std::move(backend)), slice_(slice), total_(total) {}
  void start() { start_ = last_ = Clock::now(); }
  // Called once per stored record (from one thread).
  void stored(const std::function<std::string()>& extra = {}) {
    ++done_;
    if (done_ % slice_ != 0 && done_ != total_) {
      return;
    }
    const auto now = Clock::now();
    const std::uint64_t n = done_ - lastDone_;
    const double s = seconds(now - last_);
    std::printf("SLICE backend=%s slice=%llu upto=%llu records=%llu seconds=%.2f rate=%.0f%s\n",
                backend_.c_str(), static_cast<unsigned long long>((done_ + slice_ - 1) / slice_),
                static_cast<unsigned long long>(done_), static_cast<unsigned long long>(n), s,
                static_cast<double>(n) / s, extra ? extra().c_str() : "");
    std::fflush(stdout);
    last_ = now;
    lastDone_ = done_;
  }
  std::uint64_t done() const { return done_; }
  double elapsed() const { return seconds(last_ - start_); }

 private:
  std::string backend_;
  std::uint64_t slice_;
  std::uint64_t total_;
  std::uint64_t done_ = 0;
  std::uint64_t lastDone_ = 0;
  Clock::time_point start_;
  Clock::time_point last_;
};

// --- libpq helpers -------------------------------------------------------------------------

struct ConnCloser {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct ResultCloser {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgConn = std::unique_ptr<PGconn, ConnCloser>;
using PgResult = std::unique_ptr<PGresult, ResultCloser>;

PgConn pgConnect(const std::string& url) {
  PgConn conn(PQconnectdb(url.c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    throw std::runtime_error(std::string("connect: ") + PQerrorMessage(conn.get()));
  }
  return conn;
}

PgResult pgCheck(PGconn* conn, PGresult* raw, const std::string& what) {
  PgResult result(raw);
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK && status != PGRES_COPY_IN) {
    std::string message = what;
    message += ": ";
    message += PQerrorMessage(conn);
    throw std::runtime_error(message);
  }
  return result;
}

// After PQputCopyEnd: the COPY's result, then the end of results.
void finishCopy(PGconn* conn, const char* what) {
  pgCheck(conn, PQgetResult(conn), what);
  while (PGresult* rest = PQgetResult(conn)) {
    PQclear(rest);
  }
}

PgResult pgExec(PGconn* conn, const std::string& sql) {
  return pgCheck(conn, PQexec(conn, sql.c_str()), sql);
}

std::int64_t pgScalar(PGconn* conn, const std::string& sql) {
  PgResult result = pgExec(conn, sql);
  return std::stoll(PQgetvalue(result.get(), 0, 0));
}

PgResult pgExecPrepared(PGconn* conn, const char* name, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) {
    values.push_back(p.c_str());
  }
  return pgCheck(conn,
                 PQexecPrepared(conn, name, static_cast<int>(values.size()), values.data(), nullptr,
                                nullptr, 0),
                 name);
}

// --- queries -------------------------------------------------------------------------------

// The parameters of every query repetition, drawn from the seed alone, so every backend
// answers exactly the same questions.
struct QueryPlan {
  std::vector<std::uint64_t> rawDevice;
  std::vector<std::int64_t> rawFrom;
  std::vector<std::uint64_t> seriesDevice;
  std::vector<std::int64_t> stationaryFrom;
  std::int64_t endUs = 0;  // exclusive end of the data
};

QueryPlan makePlan(const Options& o) {
  QueryPlan plan;
  const std::uint64_t ticks = (o.records + o.trucks - 1) / o.trucks;
  plan.endUs = kStartUs + static_cast<std::int64_t>(ticks) * kIntervalUs;
  Rng rng(o.seed * 7919 + 17);
  const std::int64_t span = plan.endUs - kStartUs;
  const int n = std::max(o.reps, o.fleetReps) + 1;  // +1: the warm-up
  for (int i = 0; i < n; ++i) {
    // Devices that have data: with fewer records than trucks, only the first ones do.
    const std::uint64_t withData = std::min(o.records, o.trucks);
    plan.rawDevice.push_back(rng.below(withData));
    // A day starting at a random 10-s tick, but inside the data when there is more than a day.
    const std::int64_t dayRoom = std::max<std::int64_t>(0, span - kDayUs) / kIntervalUs;
    plan.rawFrom.push_back(
        kStartUs + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(dayRoom) + 1)) *
                       kIntervalUs);
    plan.seriesDevice.push_back(rng.below(withData));
    // A 10-minute window aligned to 10 minutes (so it is exactly one series bucket).
    const std::int64_t windows = std::max<std::int64_t>(1, span / kStationaryWindowUs);
    plan.stationaryFrom.push_back(
        kStartUs + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(windows))) *
                       kStationaryWindowUs);
  }
  return plan;
}

class QueryTarget {
 public:
  virtual ~QueryTarget() = default;
  // Each returns the number of result rows.
  virtual std::int64_t rawDay(const std::string& device, std::int64_t from, std::int64_t to) = 0;
  virtual std::int64_t hourlyAvg(const std::string& device, std::int64_t from, std::int64_t to) = 0;
  virtual std::int64_t lastLocation() = 0;
  virtual std::int64_t lowFuel() = 0;
  virtual std::int64_t stationary(std::int64_t from, std::int64_t to) = 0;
  // Tern's stores: the stationary question again from raw rows only, to show what the rollups
  // save. nullopt where there are no rollups (plain SQL).
  virtual std::optional<std::int64_t> stationaryRaw(std::int64_t from, std::int64_t to) {
    (void)from;
    (void)to;
    return std::nullopt;
  }
};

template <class T>
T unwrap(core::Result<T> result, const char* what) {
  if (!result.ok()) {
    std::string message = what;
    message += ": ";
    message += result.error().message;
    throw std::runtime_error(message);
  }
  return std::move(result.value());
}

const storage::Field* findField(const std::vector<storage::Field>& fields, std::string_view key) {
  for (const auto& f : fields) {
    if (f.key == key) {
      return &f;
    }
  }
  return nullptr;
}

std::optional<double> numberOf(const storage::Field* field) {
  if (field == nullptr) {
    return std::nullopt;
  }
  if (const auto* d = std::get_if<double>(&field->value)) {
    return *d;
  }
  if (const auto* i = std::get_if<std::int64_t>(&field->value)) {
    return static_cast<double>(*i);
  }
  return std::nullopt;
}

// Through Tern's Store interface only (what the API does).
class StoreTarget : public QueryTarget {
 public:
  explicit StoreTarget(storage::Store& store) : store_(store) {}

  std::int64_t rawDay(const std::string& device, std::int64_t from, std::int64_t to) override {
    storage::MessageQuery q;
    q.deviceId = device;
    q.fromUs = from;
    q.toUs = to;
    q.limit = kPageLimit;
    std::int64_t rows = 0;
    for (;;) {
      auto page = unwrap(store_.queryMessages(q), "queryMessages");
      rows += static_cast<std::int64_t>(page.size());
      if (page.size() < kPageLimit) {
        return rows;
      }
      q.afterTimeUs = page.back().record.serverTimeUs;
      q.afterId = page.back().id;
    }
  }

  std::int64_t hourlyAvg(const std::string& device, std::int64_t from, std::int64_t to) override {
    storage::SeriesQuery q;
    q.deviceId = device;
    q.key = "velocity";
    q.fromUs = from;
    q.toUs = to;
    q.bucketUs = kHourUs;
    q.aggregate = storage::Aggregate::kAvg;
    return static_cast<std::int64_t>(unwrap(store_.querySeries(q), "querySeries").size());
  }

  // The fleet questions are the Store's fleet queries over every device: one statement each
  // inside the database (latest values from the devices table; the window average through the
  // (device, ts) index per device).
  std::int64_t lastLocation() override {
    storage::FleetLatestQuery q;
    q.keys = {"latitude", "longitude"};
    std::int64_t rows = 0;
    for (const auto& d : unwrap(store_.fleetLatest(q), "fleetLatest")) {
      if (numberOf(findField(d.values, "latitude")) && numberOf(findField(d.values, "longitude"))) {
        ++rows;
      }
    }
    return rows;
  }

  std::int64_t lowFuel() override {
    storage::FleetThresholdQuery q;
    q.key = "fuel_state";
    q.threshold = 0.1;
    q.below = true;
    return static_cast<std::int64_t>(unwrap(store_.fleetThreshold(q), "fleetThreshold").size());
  }

  std::int64_t stationary(std::int64_t from, std::int64_t to) override {
    return window(from, to, true);
  }
  std::optional<std::int64_t> stationaryRaw(std::int64_t from, std::int64_t to) override {
    return window(from, to, false);
  }

 private:
  std::int64_t window(std::int64_t from, std::int64_t to, bool useRollups) {
    storage::FleetWindowQuery q;
    q.key = "velocity";
    q.fromUs = from;
    q.toUs = to;
    q.threshold = 1;
    q.below = true;
    q.useRollups = useRollups;
    return static_cast<std::int64_t>(
        unwrap(store_.fleetWindowAverage(q), "fleetWindowAverage").size());
  }

  storage::Store& store_;
};

constexpr const char* kPlainSchema = R"sql(
CREATE TABLE tags(device text PRIMARY KEY, fleet text NOT NULL, driver text NOT NULL,
                  model text NOT NULL);
CREATE TABLE readings(device text NOT NULL, time bigint NOT NULL, latitude float8,
                      longitude float8, elevation float8, velocity float8, heading float8,
                      grade float8, fuel_consumption float8, fuel_state float8,
                      current_load float8, status int8);
CREATE INDEX readings_device_time ON readings(device, time);
)sql";

struct PlainStatement {
  const char* name;
  const char* sql;
};

constexpr std::array<PlainStatement, 5> kPlainStatements{{
    {"raw_day",
     "SELECT time, latitude, longitude, elevation, velocity, heading, grade, fuel_consumption, "
     "fuel_state, current_load, status FROM readings "
     "WHERE device = $1 AND time >= $2::int8 AND time < $3::int8 ORDER BY time"},
    {"hourly_avg",
     "SELECT time - time % 3600000000 AS hour, avg(velocity), count(*) FROM readings "
     "WHERE device = $1 AND time >= $2::int8 AND time < $3::int8 GROUP BY hour ORDER BY hour"},
    {"last_location",
     "SELECT t.device, r.time, r.latitude, r.longitude FROM tags t CROSS JOIN LATERAL "
     "(SELECT time, latitude, longitude FROM readings WHERE device = t.device "
     "ORDER BY time DESC LIMIT 1) r"},
    {"low_fuel",
     "SELECT t.device, t.driver, r.fuel_state FROM tags t CROSS JOIN LATERAL "
     "(SELECT fuel_state FROM readings WHERE device = t.device ORDER BY time DESC LIMIT 1) r "
     "WHERE r.fuel_state < 0.1"},
    {"stationary",
     "SELECT t.device, t.driver FROM tags t CROSS JOIN LATERAL "
     "(SELECT avg(velocity) AS v FROM readings WHERE device = t.device "
     "AND time >= $1::int8 AND time < $2::int8) r WHERE r.v < 1"},
}};

// The same questions as plain SQL on one `readings` table with a (device, time) index.
class PlainTarget : public QueryTarget {
 public:
  explicit PlainTarget(PGconn* conn) : conn_(conn) {
    for (const auto& s : kPlainStatements) {
      pgCheck(conn_, PQprepare(conn_, s.name, s.sql, 0, nullptr), s.name);
    }
  }

  std::int64_t rawDay(const std::string& device, std::int64_t from, std::int64_t to) override {
    return run("raw_day", {device, std::to_string(from), std::to_string(to)});
  }
  std::int64_t hourlyAvg(const std::string& device, std::int64_t from, std::int64_t to) override {
    return run("hourly_avg", {device, std::to_string(from), std::to_string(to)});
  }
  std::int64_t lastLocation() override { return run("last_location", {}); }
  std::int64_t lowFuel() override { return run("low_fuel", {}); }
  std::int64_t stationary(std::int64_t from, std::int64_t to) override {
    return run("stationary", {std::to_string(from), std::to_string(to)});
  }

 private:
  std::int64_t run(const char* name, const std::vector<std::string>& params) {
    PgResult result = pgExecPrepared(conn_, name, params);
    // Touch every value, as a client would.
    std::size_t bytes = 0;
    const int rows = PQntuples(result.get());
    const int columns = PQnfields(result.get());
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < columns; ++c) {
        bytes += static_cast<std::size_t>(PQgetlength(result.get(), r, c));
      }
    }
    sink_ += bytes;
    return rows;
  }

  PGconn* conn_;
  std::size_t sink_ = 0;
};

double percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  // Nearest rank.
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(values.size())));
  return values[std::clamp<std::size_t>(rank, 1, values.size()) - 1];
}

void timeQuery(const std::string& backend, const char* name, int reps,
               const std::function<std::int64_t(int)>& run) {
  run(reps);  // warm-up with its own parameters, not timed
  std::vector<double> ms;
  std::int64_t rows = 0;
  std::int64_t firstRows = -1;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    const std::int64_t n = run(i);
    ms.push_back(seconds(Clock::now() - t0) * 1000);
    rows += n;
    if (firstRows < 0) {
      firstRows = n;
    }
  }
  double sum = 0;
  for (const double v : ms) {
    sum += v;
  }
  std::printf(
      "QUERY backend=%s query=%s reps=%d p50_ms=%.3f p99_ms=%.3f mean_ms=%.3f max_ms=%.3f "
      "rows_total=%lld rows_first=%lld\n",
      backend.c_str(), name, reps, percentile(ms, 0.5), percentile(ms, 0.99),
      sum / static_cast<double>(reps), *std::max_element(ms.begin(), ms.end()),
      static_cast<long long>(rows), static_cast<long long>(firstRows));
  std::fflush(stdout);
}

void runQueries(const Options& o, const std::string& backend, QueryTarget& target) {
  const QueryPlan plan = makePlan(o);
  std::printf("# %s: queries over data from %lld to %lld (us), %d reps (%d for fleet scans)\n",
              backend.c_str(), static_cast<long long>(kStartUs), static_cast<long long>(plan.endUs),
              o.reps, o.fleetReps);
  const auto u = [](int i) { return static_cast<std::size_t>(i); };
  timeQuery(backend, "raw_day", o.reps, [&](int i) {
    return target.rawDay(truckName(plan.rawDevice[u(i)]), plan.rawFrom[u(i)],
                         plan.rawFrom[u(i)] + kDayUs);
  });
  timeQuery(backend, "hourly_avg_30d", o.reps, [&](int i) {
    return target.hourlyAvg(truckName(plan.seriesDevice[u(i)]), plan.endUs - 30 * kDayUs,
                            plan.endUs);
  });
  timeQuery(backend, "last_location", o.reps, [&](int) { return target.lastLocation(); });
  timeQuery(backend, "low_fuel", o.reps, [&](int) { return target.lowFuel(); });
  timeQuery(backend, "stationary_10min", o.fleetReps, [&](int i) {
    return target.stationary(plan.stationaryFrom[u(i)],
                             plan.stationaryFrom[u(i)] + kStationaryWindowUs);
  });
  if (target.stationaryRaw(plan.stationaryFrom[0], plan.stationaryFrom[0] + kStationaryWindowUs)) {
    timeQuery(backend, "stationary_10min_raw", o.fleetReps, [&](int i) {
      return *target.stationaryRaw(plan.stationaryFrom[u(i)],
                                   plan.stationaryFrom[u(i)] + kStationaryWindowUs);
    });
  }
}

// What `tern serve`'s periodic job does as data arrives, here once after the load: rolls up
// every whole minute of the data (runs go at most a day further each), so that series and
// window queries are answered as they are in service.
void rollUp(const Options& o, const std::string& backend, storage::Store& store) {
  const QueryPlan plan = makePlan(o);
  const auto t0 = Clock::now();
  std::int64_t minutes = 0;
  int runs = 0;
  for (; runs < 100'000; ++runs) {
    const auto run = unwrap(store.rollup(plan.endUs), "rollup");
    minutes += run.minutes;
    if (run.minutes == 0 && run.dirtyMinutes == 0 && run.watermarkUs >= plan.endUs - 60'000'000) {
      ++runs;
      break;
    }
  }
  std::printf("ROLLUP backend=%s runs=%d rollups=%lld seconds=%.2f\n", backend.c_str(), runs,
              static_cast<long long>(minutes), seconds(Clock::now() - t0));
  std::fflush(stdout);
}

// --- write phases --------------------------------------------------------------------------

// The rollup job as `tern serve` runs it while data arrives: whenever another whole minute of
// data time is 30 s old (the server rolls up to now - 30 s), one Store::rollup run. Data time
// here runs about 40x faster than a clock, so runs come every 1-2 s instead of every minute;
// a run that takes longer than that covers several minutes, as a late job would.
class LiveRollups {
 public:
  LiveRollups(storage::Store& store, std::uint64_t trucks) : store_(store), trucks_(trucks) {}
  ~LiveRollups() { stop(); }

  // Records are committed in order: the first `n` are durable.
  void committed(std::uint64_t n) { committed_.store(n, std::memory_order_relaxed); }
  void start() {
    thread_ = std::thread([this] { loop(); });
  }
  void stop() {
    if (!thread_.joinable()) return;
    done_.store(true);
    thread_.join();
  }
  void report(const std::string& backend) const {
    std::printf(
        "LIVE_ROLLUP backend=%s runs=%d rollups=%lld dirty_minutes=%lld "
        "busy_seconds=%.2f max_run_seconds=%.2f\n",
        backend.c_str(), runs_, static_cast<long long>(minutes_), static_cast<long long>(dirty_),
        busy_, maxRun_);
    std::fflush(stdout);
  }

 private:
  void loop() {
    std::int64_t last = std::numeric_limits<std::int64_t>::min();
    while (!done_.load()) {
      const std::uint64_t n = committed_.load(std::memory_order_relaxed);
      if (n > 0) {
        const std::int64_t newest =
            kStartUs + static_cast<std::int64_t>((n - 1) / trucks_) * kIntervalUs;
        const std::int64_t target =
            storage::rollup::floorTo(newest - 30 * kSecondUs, storage::rollup::kMinuteUs);
        if (target > last && target > kStartUs) {
          const auto t0 = Clock::now();
          auto run = store_.rollup(target);
          if (!run) {
            // On this thread an exception would end the process without a word.
            std::fprintf(stderr, "live rollup: %s\n", run.error().message.c_str());
            std::exit(1);
          }
          const double took = seconds(Clock::now() - t0);
          busy_ += took;
          maxRun_ = std::max(maxRun_, took);
          minutes_ += run->minutes;
          dirty_ += run->dirtyMinutes;
          ++runs_;
          last = target;
          continue;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  storage::Store& store_;
  std::uint64_t trucks_;
  std::atomic<std::uint64_t> committed_{0};
  std::atomic<bool> done_{false};
  std::thread thread_;
  int runs_ = 0;
  std::int64_t minutes_ = 0;
  std::int64_t dirty_ = 0;
  double busy_ = 0;
  double maxRun_ = 0;
};

// The longest time between two acknowledgements while writing: how long the writer was held
// up at worst (by a checkpoint, or a maintenance job holding SQLite's write lock).
class AckGaps {
 public:
  void ack() {  // writer thread only
    const auto now = Clock::now();
    if (seen_) maxMs_ = std::max(maxMs_, seconds(now - last_) * 1000);
    seen_ = true;
    last_ = now;
  }
  double maxMs() const { return maxMs_; }

 private:
  bool seen_ = false;
  Clock::time_point last_;
  double maxMs_ = 0;
};

// Through the real ingest::Pipeline (default options: batches of up to 5000, 2 ms group
// commit, queue of 100,000), the way `tern serve` writes.
void writeThroughPipeline(const Options& o, const std::string& backend, storage::Store& store) {
  Generator gen(o.trucks, o.seed);
  ingest::Pipeline pipeline(store, ingest::PipelineOptions{});
  std::optional<LiveRollups> live;
  if (o.liveRollups) live.emplace(store, o.trucks);
  SliceReporter slices(backend, o.slice, o.records);
  std::uint64_t lastBatches = 0;
  std::uint64_t lastCommitted = 0;
  const auto batchInfo = [&]() {
    const auto s = pipeline.stats();
    // The batch holding this record is still completing and not counted yet: add it here (a
    // batch spanning two slices counts in the first).
    const std::uint64_t upTo = s.batches + 1;
    const std::uint64_t batches = std::max<std::uint64_t>(1, upTo - lastBatches);
    const std::uint64_t committed = slices.done() - lastCommitted;
    lastBatches = upTo;
    lastCommitted = slices.done();
    return fmt::format(" batches={} avg_batch={:.0f}", batches,
                       static_cast<double>(committed) / static_cast<double>(batches));
  };
  AckGaps ackGaps;
  pipeline.start();
  slices.start();
  if (live) live->start();
  const auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < o.records; ++i) {
    gen.next();
    pipeline.submit(gen.record(), [&slices, &batchInfo, &live, &ackGaps]() {
      ackGaps.ack();
      slices.stored(batchInfo);
      if (live) live->committed(slices.done());
    });
    if (pipeline.overloaded()) {
      std::promise<void> drained;
      auto ready = drained.get_future();
      pipeline.onDrain([&drained]() { drained.set_value(); });
      ready.wait();
    }
  }
  const double generated = seconds(Clock::now() - t0);
  pipeline.stop();
  if (live) {
    live->stop();
    live->report(backend);
  }
  const auto stats = pipeline.stats();
  std::printf(
      "WRITE backend=%s records=%llu seconds=%.2f rate=%.0f submit_seconds=%.2f batches=%llu "
      "avg_batch=%.0f max_queue=%llu commit_failures=%llu max_ack_gap_ms=%.0f\n",
      backend.c_str(), static_cast<unsigned long long>(stats.committed), slices.elapsed(),
      static_cast<double>(stats.committed) / slices.elapsed(), generated,
      static_cast<unsigned long long>(stats.batches),
      static_cast<double>(stats.committed) /
          static_cast<double>(std::max<std::uint64_t>(1, stats.batches)),
      static_cast<unsigned long long>(stats.maxQueueDepth),
      static_cast<unsigned long long>(stats.commitFailures), ackGaps.maxMs());
  std::fflush(stdout);
}

void check(const std::string& backend, std::uint64_t written, std::int64_t storeCount,
           std::int64_t sqlCount) {
  const bool ok = storeCount == static_cast<std::int64_t>(written) &&
                  sqlCount == static_cast<std::int64_t>(written);
  std::printf("CHECK backend=%s written=%llu store_count=%lld count_star=%lld status=%s\n",
              backend.c_str(), static_cast<unsigned long long>(written),
              static_cast<long long>(storeCount), static_cast<long long>(sqlCount),
              ok ? "ok" : "MISMATCH");
  std::fflush(stdout);
  if (!ok) {
    throw std::runtime_error("records counted differ from records written");
  }
}

std::uint64_t sqliteBytes(const std::string& path) {
  std::uint64_t total = 0;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::string file = path;
    file += suffix;
    std::error_code ec;
    const auto size = std::filesystem::file_size(file, ec);
    if (!ec) {
      total += size;
    }
  }
  return total;
}

std::int64_t sqliteCountStar(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    throw std::runtime_error("sqlite: cannot open " + path);
  }
  sqlite3_stmt* stmt = nullptr;
  std::int64_t count = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM messages", -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    count = sqlite3_column_int64(stmt, 0);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return count;
}

void runSqlite(const Options& o) {
  storage::sqlite::SqliteOptions so;
  so.path = o.path;
  auto store = storage::sqlite::openSqliteStore(so);
  writeThroughPipeline(o, "sqlite", *store);
  check("sqlite", o.records, unwrap(store->countMessages(), "countMessages"),
        sqliteCountStar(o.path));
  std::printf("SIZE backend=sqlite bytes=%llu\n",
              static_cast<unsigned long long>(sqliteBytes(o.path)));
  if (o.queries) {
    if (o.rollups) {
      rollUp(o, "sqlite", *store);
    }
    StoreTarget target(*store);
    runQueries(o, "sqlite", target);
  }
}

void runPostgres(const Options& o) {
  storage::postgres::PostgresOptions po;
  po.url = o.url;
  const auto partitionUs = core::parseDuration(o.partition);
  if (!partitionUs || *partitionUs <= 0) {
    throw std::runtime_error("--partition: expected a duration such as 1d or 1h");
  }
  po.partitionUs = *partitionUs;
  std::printf("# postgres: partitions of %s\n", o.partition.c_str());
  auto store = storage::postgres::openPostgresStore(po);
  writeThroughPipeline(o, "postgres", *store);
  PgConn conn = pgConnect(o.url);
  check("postgres", o.records, unwrap(store->countMessages(), "countMessages"),
        pgScalar(conn.get(), "SELECT count(*) FROM messages"));
  std::printf(
      "SIZE backend=postgres bytes=%lld\n",
      static_cast<long long>(pgScalar(conn.get(), "SELECT pg_database_size(current_database())")));
  if (o.queries) {
    if (o.rollups) {
      rollUp(o, "postgres", *store);
    }
    const auto t0 = Clock::now();
    pgExec(conn.get(), "ANALYZE");
    std::printf("# postgres: ANALYZE took %.1f s\n", seconds(Clock::now() - t0));
    StoreTarget target(*store);
    runQueries(o, "postgres", target);
  }
}

// Plain PostgreSQL: COPY (text) in transactions of 5000 rows into a table whose index exists
// from the start, so the per-slice rates compare with the stores'.
void runPlain(const Options& o) {
  PgConn conn = pgConnect(o.url);
  pgExec(conn.get(), kPlainSchema);
  Generator gen(o.trucks, o.seed);
  {
    std::string tags;
    for (const auto& t : gen.allTrucks()) {
      fmt::format_to(std::back_inserter(tags), "{}\t{}\t{}\t{}\n", t.name, t.fleet, t.driver,
                     t.model);
    }
    pgExec(conn.get(), "COPY tags FROM STDIN");
    if (PQputCopyData(conn.get(), tags.data(), static_cast<int>(tags.size())) != 1 ||
        PQputCopyEnd(conn.get(), nullptr) != 1) {
      throw std::runtime_error(std::string("COPY tags: ") + PQerrorMessage(conn.get()));
    }
    finishCopy(conn.get(), "COPY tags");
  }
  SliceReporter slices("plain", o.slice, o.records);
  slices.start();
  std::string buffer;
  std::uint64_t done = 0;
  while (done < o.records) {
    const std::uint64_t n = std::min<std::uint64_t>(kCopyBatch, o.records - done);
    buffer.clear();
    for (std::uint64_t i = 0; i < n; ++i) {
      gen.next();
      gen.appendCopyRow(buffer);
    }
    pgExec(conn.get(), "COPY readings FROM STDIN");
    if (PQputCopyData(conn.get(), buffer.data(), static_cast<int>(buffer.size())) != 1 ||
        PQputCopyEnd(conn.get(), nullptr) != 1) {
      throw std::runtime_error(std::string("COPY readings: ") + PQerrorMessage(conn.get()));
    }
    finishCopy(conn.get(), "COPY readings");
    for (std::uint64_t i = 0; i < n; ++i) {
      slices.stored();
    }
    done += n;
  }
  std::printf("WRITE backend=plain records=%llu seconds=%.2f rate=%.0f\n",
              static_cast<unsigned long long>(done), slices.elapsed(),
              static_cast<double>(done) / slices.elapsed());
  const std::int64_t count = pgScalar(conn.get(), "SELECT count(*) FROM readings");
  check("plain", o.records, count, count);
  std::printf(
      "SIZE backend=plain bytes=%lld\n",
      static_cast<long long>(pgScalar(conn.get(), "SELECT pg_database_size(current_database())")));
  if (o.queries) {
    const auto t0 = Clock::now();
    pgExec(conn.get(), "ANALYZE");
    std::printf("# plain: ANALYZE took %.1f s\n", seconds(Clock::now() - t0));
    PlainTarget target(conn.get());
    runQueries(o, "plain", target);
  }
}

// The generator alone, to see what share of the 2 cores it takes.
void runGenerate(const Options& o) {
  Generator gen(o.trucks, o.seed);
  std::size_t bytes = 0;
  const auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < o.records; ++i) {
    gen.next();
    bytes += gen.record().payload.size();
  }
  const double s = seconds(Clock::now() - t0);
  std::printf("GENERATE records=%llu seconds=%.2f rate=%.0f avg_payload_bytes=%.0f\n",
              static_cast<unsigned long long>(o.records), s, static_cast<double>(o.records) / s,
              static_cast<double>(bytes) / static_cast<double>(o.records));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"TSBS-IoT-shaped storage benchmark (see bench/storage/run.sh)"};
  app.add_option("--backend", o.backend, "sqlite | postgres (Tern's stores) | plain | generate")
      ->required()
      ->check(CLI::IsMember({"sqlite", "postgres", "plain", "generate"}));
  app.add_option("--path", o.path, "SQLite database file (sqlite)");
  app.add_option("--url", o.url, "libpq connection string (postgres, plain)");
  app.add_option("--partition", o.partition,
                 "length of a messages partition (postgres; storage.partition), e.g. 1h");
  app.add_option("--records", o.records, "records to write")->check(CLI::PositiveNumber);
  app.add_option("--trucks", o.trucks, "trucks (devices)")->check(CLI::PositiveNumber);
  app.add_option("--slice", o.slice, "report the write rate every this many records")
      ->check(CLI::PositiveNumber);
  app.add_option("--reps", o.reps, "repetitions of each query")->check(CLI::PositiveNumber);
  app.add_option("--fleet-reps", o.fleetReps, "repetitions of the stationary query")
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "data and query seed");
  app.add_flag("!--no-queries", o.queries, "write only");
  app.add_flag("!--no-rollups", o.rollups,
               "query without running the rollup job first (window and hourly queries then "
               "read raw rows)");
  app.add_flag("--live-rollups", o.liveRollups,
               "run the rollup job during the writes, once per new minute of data time, as "
               "`tern serve` does (the write rate then includes its cost)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (o.backend == "sqlite") {
      if (o.path.empty()) throw std::runtime_error("--path is required for sqlite");
      runSqlite(o);
    } else if (o.backend == "postgres") {
      if (o.url.empty()) throw std::runtime_error("--url is required for postgres");
      runPostgres(o);
    } else if (o.backend == "plain") {
      if (o.url.empty()) throw std::runtime_error("--url is required for plain");
      runPlain(o);
    } else {
      runGenerate(o);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tern-bench-storage: %s\n", e.what());
    return 1;
  }
  return 0;
}
