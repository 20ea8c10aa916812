#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tern::core {

// Wall-clock time in microseconds since the Unix epoch (UTC).
std::int64_t nowMicros();
// Monotonic time in microseconds, for intervals and timeouts.
std::int64_t monotonicMicros();

// RFC 3339 with millisecond precision in UTC, e.g. 2026-11-22T07:33:47.123Z.
std::string formatRfc3339Millis(std::int64_t micros);

// Parses RFC 3339 / ISO 8601 ("2026-11-22T07:33:47Z", "...47.5+02:00", "2026-11-22")
// into microseconds since the epoch. Returns nullopt when the text is not a timestamp.
std::optional<std::int64_t> parseIso8601(std::string_view text);

// Parses a time parameter as accepted by the API: RFC 3339, or an integer number of
// seconds/milliseconds/microseconds since the epoch (told apart by magnitude).
std::optional<std::int64_t> parseTimeParam(std::string_view text);

// Interprets a numeric epoch value as seconds or milliseconds (by magnitude) → micros.
std::optional<std::int64_t> epochToMicros(double value);

// Parses a duration like "500ms", "5s", "1m", "1h", "1d", "2w" → micros.
std::optional<std::int64_t> parseDuration(std::string_view text);

}  // namespace tern::core
