#pragma once
// Field helpers for the Queclink text protocol: a message is a list of comma-separated fields
// whose shape (digits, hex, decimals of a given width) tells the variants apart. Everything here
// checks and parses without exceptions; a field that does not parse is reported, never thrown.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace tern::codec::trackers::gl200 {

using Fields = std::vector<std::string_view>;

// Splits on ',' and drops trailing empty fields (the layouts count fields from the end, and the
// devices' firmware is not consistent about a trailing comma).
Fields splitFields(std::string_view text);

bool isDigits(std::string_view s, std::size_t min, std::size_t max);
bool isHex(std::string_view s, std::size_t min, std::size_t max);

// The shape of a decimal field: optional '-', integer digits, then a '.' and fraction digits.
struct NumberShape {
  bool sign = false;
  std::size_t intMin = 1;
  std::size_t intMax = 1;
  enum class Dot : std::uint8_t { kNone, kOptional, kRequired } dot = Dot::kNone;
  std::size_t fracMin = 0;
  std::size_t fracMax = 0;
};
bool hasShape(std::string_view s, const NumberShape& shape);
// Empty, or of the given shape (most fields are optional).
inline bool emptyOr(std::string_view s, const NumberShape& shape) {
  return s.empty() || hasShape(s, shape);
}

namespace shape {
inline constexpr NumberShape kHdop{false, 1, 2, NumberShape::Dot::kOptional, 0, 1};
inline constexpr NumberShape kSpeed{false, 1, 3, NumberShape::Dot::kRequired, 1, 1};
inline constexpr NumberShape kCourse{false, 1, 3, NumberShape::Dot::kOptional, 0, 1};
inline constexpr NumberShape kAltitude{true, 1, 5, NumberShape::Dot::kRequired, 1, 1};
inline constexpr NumberShape kLongitude{true, 1, 3, NumberShape::Dot::kRequired, 6, 6};
inline constexpr NumberShape kLatitude{true, 1, 2, NumberShape::Dot::kRequired, 6, 6};
inline constexpr NumberShape kMileage{false, 1, 7, NumberShape::Dot::kRequired, 1, 1};
inline constexpr NumberShape kDigitsOrDecimal{false, 1, 20, NumberShape::Dot::kOptional, 0, 1};
inline constexpr NumberShape kTemperature{true, 1, 2, NumberShape::Dot::kRequired, 1, 1};
}  // namespace shape

// Decimal integer with an optional sign; nullopt when empty, malformed or out of range.
std::optional<std::int64_t> toInt(std::string_view s);
// Hex (either case, at most 16 digits); nullopt when empty or malformed.
std::optional<std::uint64_t> toHex(std::string_view s);
// [-]digits[.digits]; nullopt when empty or malformed (no exponents, no inf/nan).
std::optional<double> toDouble(std::string_view s);
// yyyyMMddHHmmss (UTC) → µs; nullopt when not 14 digits or not a valid date.
std::optional<std::int64_t> toTime(std::string_view s);
// "hhhhh:mm:ss" engine hours → ms; nullopt when malformed.
std::optional<std::int64_t> toHoursMs(std::string_view s);

inline bool bit(std::uint64_t value, unsigned index) {
  return index < 64 && ((value >> index) & 1U) != 0;
}

// Reads fields in order. Reading past the end yields "" and marks the cursor failed, so a decoder
// can walk a whole layout and check once (a layout that runs out of fields is not that layout).
class Cursor {
 public:
  Cursor(const Fields& fields, std::size_t index) : fields_(fields), index_(index) {}
  std::string_view next();
  // The field `ahead` positions on, "" past the end (does not fail: used for look-ahead).
  std::string_view peek(std::size_t ahead = 0) const;
  void skip(std::size_t n);
  std::size_t index() const { return index_; }
  bool failed() const { return failed_; }
  void fail() { failed_ = true; }
  // Parsers that mark the cursor failed on a malformed (non-empty) field; empty → nullopt.
  std::optional<std::int64_t> nextInt();
  std::optional<std::uint64_t> nextHex();
  std::optional<double> nextDouble();

 private:
  const Fields& fields_;
  std::size_t index_;
  bool failed_ = false;
};

}  // namespace tern::codec::trackers::gl200
