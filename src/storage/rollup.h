#pragma once
// Rollups shared by the backends: partial aggregates of one key's numeric values over a span
// (count, sum, min, max, first, last), and the series query that combines 1 min / 1 h rollups
// with raw rows so that it answers exactly what the raw query answers.
//
// Each backend keeps, per device, key and minute (and hour): a Partial. A periodic job
// (Store::rollup) rolls up whole minutes before a watermark; a record committed later with a
// time before the watermark marks its (device, minute) dirty, and the next run recomputes it.
// Retention sets a floor below which rollups are not used (nor kept).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

#include "core/result.h"
#include "storage/store.h"

namespace tern::storage::rollup {

constexpr std::int64_t kMinuteUs = 60'000'000;
constexpr std::int64_t kHourUs = 3'600'000'000;
// The watermark before the first run: nothing is rolled up. Hour-aligned, far from overflow.
constexpr std::int64_t kNoWatermark = -kHourUs * 1'000'000'000;

// Floor, not truncation, so times before the epoch land in the right unit.
inline std::int64_t floorTo(std::int64_t t, std::int64_t unit) {
  std::int64_t rem = t % unit;
  if (rem < 0) rem += unit;
  return t - rem;
}
inline std::int64_t ceilTo(std::int64_t t, std::int64_t unit) {
  const std::int64_t f = floorTo(t, unit);
  return f == t ? t : f + unit;
}

// The numeric values of one key over a span. first/last: the value with the smallest/largest
// (server time, store id), as the raw query orders them.
struct Partial {
  std::int64_t count = 0;
  double sum = 0;
  double min = 0;
  double max = 0;
  std::int64_t firstTs = 0;
  std::int64_t firstId = 0;
  double first = 0;
  std::int64_t lastTs = 0;
  std::int64_t lastId = 0;
  double last = 0;

  void add(std::int64_t ts, std::int64_t id, double value) {
    if (count == 0) {
      min = max = first = last = value;
      firstTs = lastTs = ts;
      firstId = lastId = id;
    } else {
      min = std::min(min, value);
      max = std::max(max, value);
      if (std::pair(ts, id) < std::pair(firstTs, firstId)) {
        firstTs = ts;
        firstId = id;
        first = value;
      }
      if (std::pair(ts, id) >= std::pair(lastTs, lastId)) {
        lastTs = ts;
        lastId = id;
        last = value;
      }
    }
    ++count;
    sum += value;
  }

  void merge(const Partial& other) {
    if (other.count == 0) return;
    if (count == 0) {
      *this = other;
      return;
    }
    min = std::min(min, other.min);
    max = std::max(max, other.max);
    if (std::pair(other.firstTs, other.firstId) < std::pair(firstTs, firstId)) {
      firstTs = other.firstTs;
      firstId = other.firstId;
      first = other.first;
    }
    if (std::pair(other.lastTs, other.lastId) >= std::pair(lastTs, lastId)) {
      lastTs = other.lastTs;
      lastId = other.lastId;
      last = other.last;
    }
    count += other.count;
    sum += other.sum;
  }

  double value(Aggregate aggregate) const {
    switch (aggregate) {
      case Aggregate::kAvg:
        return sum / static_cast<double>(count);
      case Aggregate::kMin:
        return min;
      case Aggregate::kMax:
        return max;
      case Aggregate::kSum:
        return sum;
      case Aggregate::kCount:
        return static_cast<double>(count);
      case Aggregate::kFirst:
        return first;
      case Aggregate::kLast:
        return last;
    }
    return 0;
  }
};

// A partial for the span starting at `startUs` (a unit: a minute, an hour, or one output bucket).
using TimedPartial = std::pair<std::int64_t, Partial>;

// One numeric value of a raw row, in (ts, id) order.
struct RawValue {
  std::int64_t ts = 0;
  std::int64_t id = 0;
  double value = 0;
};

// The rollup state a series query needs, read in the same snapshot as the rollups themselves.
struct State {
  std::int64_t watermarkUs = kNoWatermark;  // whole minutes before it are rolled up
  std::int64_t floorUs = kNoWatermark;      // retention: rollups of units before it are not used
  std::vector<std::int64_t> dirtyMinutes;   // of this device in the range asked for, any order
};

// What a backend provides to answer one series query (one device and key) from rollups.
struct Source {
  // Rolled-up units (minutes or hours) in [fromUs, toUs), ascending.
  std::function<core::Result<std::vector<TimedPartial>>(bool hours, std::int64_t fromUs,
                                                        std::int64_t toUs)>
      rolled;
  // Numeric values of raw rows in [fromUs, toUs), ascending by (ts, id).
  std::function<core::Result<std::vector<RawValue>>(std::int64_t fromUs, std::int64_t toUs)> raw;
};

// Adds raw values to `out` as partials per `unit`.
inline void addRaw(const std::vector<RawValue>& values, std::int64_t unit,
                   std::vector<TimedPartial>& out) {
  for (const RawValue& v : values) {
    const std::int64_t start = floorTo(v.ts, unit);
    if (out.empty() || out.back().first != start) out.emplace_back(start, Partial{});
    out.back().second.add(v.ts, v.id, v.value);
  }
}

// Buckets of `query` from partials that each lie within one output bucket.
inline std::vector<Bucket> finish(std::vector<TimedPartial> partials, const SeriesQuery& query) {
  std::stable_sort(partials.begin(), partials.end(),
                   [](const TimedPartial& a, const TimedPartial& b) { return a.first < b.first; });
  std::vector<Bucket> out;
  Partial current;
  std::int64_t currentStart = 0;
  const auto flush = [&] {
    if (current.count > 0) {
      out.push_back(Bucket{currentStart, current.value(query.aggregate), current.count});
    }
  };
  for (const auto& [start, partial] : partials) {
    const std::int64_t bucket = floorTo(start, query.bucketUs);
    if (current.count > 0 && bucket != currentStart) {
      flush();
      current = Partial{};
    }
    if (current.count == 0) currentStart = bucket;
    current.merge(partial);
  }
  flush();
  return out;
}

// Whether rollups can answer part of `query`: buckets whole minutes (or hours). Returns nullopt
// when they cannot, and the caller runs its raw query.
inline std::optional<std::int64_t> rollupUnit(const SeriesQuery& query) {
  if (query.bucketUs <= 0 || query.bucketUs % kMinuteUs != 0) return std::nullopt;
  return query.bucketUs % kHourUs == 0 ? kHourUs : kMinuteUs;
}

// The series from rollups where they are complete, raw rows elsewhere: units before the
// watermark and from the floor on, not dirty, come from rollups; the partial units at both ends
// of the range, dirty ones and everything from the watermark on come from raw rows. nullopt:
// rollups cover nothing of the range (the caller runs its raw query).
inline core::Result<std::optional<std::vector<Bucket>>> query(const SeriesQuery& query,
                                                              const State& state,
                                                              const Source& source) {
  const auto unit = rollupUnit(query);
  if (!unit) return std::optional<std::vector<Bucket>>();
  const std::int64_t lo = ceilTo(std::max(query.fromUs, state.floorUs), *unit);
  const std::int64_t hi = floorTo(std::min(query.toUs, state.watermarkUs), *unit);
  if (lo >= hi) return std::optional<std::vector<Bucket>>();

  std::vector<std::int64_t> dirty;  // units in [lo, hi) holding a dirty minute
  for (const std::int64_t minute : state.dirtyMinutes) {
    const std::int64_t u = floorTo(minute, *unit);
    if (u >= lo && u < hi) dirty.push_back(u);
  }
  std::sort(dirty.begin(), dirty.end());
  dirty.erase(std::unique(dirty.begin(), dirty.end()), dirty.end());

  std::vector<TimedPartial> partials;
  auto rolled = source.rolled(*unit == kHourUs, lo, hi);
  if (!rolled) return rolled.error();
  for (auto& p : *rolled) {
    if (!std::binary_search(dirty.begin(), dirty.end(), p.first)) partials.push_back(p);
  }
  // Raw spans: the head, each run of dirty units, the tail.
  std::vector<std::pair<std::int64_t, std::int64_t>> spans;
  if (query.fromUs < lo) spans.emplace_back(query.fromUs, lo);
  for (const std::int64_t u : dirty) {
    if (!spans.empty() && spans.back().second == u) {
      spans.back().second = u + *unit;
    } else {
      spans.emplace_back(u, u + *unit);
    }
  }
  if (hi < query.toUs) {
    if (!spans.empty() && spans.back().second == hi) {
      spans.back().second = query.toUs;
    } else {
      spans.emplace_back(hi, query.toUs);
    }
  }
  for (const auto& [from, to] : spans) {
    auto values = source.raw(from, to);
    if (!values) return values.error();
    addRaw(*values, *unit, partials);
  }
  return std::optional<std::vector<Bucket>>(finish(std::move(partials), query));
}

}  // namespace tern::storage::rollup
