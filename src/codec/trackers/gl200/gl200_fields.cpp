#include "codec/trackers/gl200/gl200_fields.h"

#include <charconv>

#include "codec/trackers/util.h"

namespace tern::codec::trackers::gl200 {

namespace {
bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isHexDigit(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
}  // namespace

Fields splitFields(std::string_view text) {
  Fields fields;
  std::size_t start = 0;
  while (true) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) {
      fields.push_back(text.substr(start));
      break;
    }
    fields.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  while (!fields.empty() && fields.back().empty()) fields.pop_back();
  return fields;
}

bool isDigits(std::string_view s, std::size_t min, std::size_t max) {
  if (s.size() < min || s.size() > max) return false;
  for (char c : s) {
    if (!isDigit(c)) return false;
  }
  return true;
}

bool isHex(std::string_view s, std::size_t min, std::size_t max) {
  if (s.size() < min || s.size() > max) return false;
  for (char c : s) {
    if (!isHexDigit(c)) return false;
  }
  return true;
}

bool hasShape(std::string_view s, const NumberShape& shape) {
  if (shape.sign && !s.empty() && s.front() == '-') s.remove_prefix(1);
  std::size_t dot = s.find('.');
  if (dot == std::string_view::npos) {
    if (shape.dot == NumberShape::Dot::kRequired) return false;
    // Without the dot an optional fraction digit just follows the integer digits.
    std::size_t max = shape.intMax + (shape.dot == NumberShape::Dot::kOptional ? shape.fracMax : 0);
    return isDigits(s, shape.intMin, max);
  }
  if (shape.dot == NumberShape::Dot::kNone) return false;
  return isDigits(s.substr(0, dot), shape.intMin, shape.intMax) &&
         isDigits(s.substr(dot + 1), shape.fracMin, shape.fracMax);
}

std::optional<std::int64_t> toInt(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

std::optional<std::uint64_t> toHex(std::string_view s) {
  if (!isHex(s, 1, 16)) return std::nullopt;
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value, 16);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

std::optional<double> toDouble(std::string_view s) {
  // Checked by hand first: from_chars would also take "inf", "nan" and exponents.
  std::string_view body = s;
  if (!body.empty() && body.front() == '-') body.remove_prefix(1);
  std::size_t dot = body.find('.');
  std::string_view whole = body.substr(0, dot);
  std::string_view fraction =
      dot == std::string_view::npos ? std::string_view() : body.substr(dot + 1);
  if (whole.size() + fraction.size() == 0 || whole.size() > 30 || fraction.size() > 30) {
    return std::nullopt;
  }
  if (!isDigits(whole, 0, 30) || !isDigits(fraction, 0, 30)) return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

std::optional<std::int64_t> toTime(std::string_view s) {
  if (!isDigits(s, 14, 14)) return std::nullopt;
  auto num = [&](std::size_t pos, std::size_t len) {
    int v = 0;
    for (std::size_t i = pos; i < pos + len; ++i) v = v * 10 + (s[i] - '0');
    return v;
  };
  return civilToMicros(num(0, 4), num(4, 2), num(6, 2), num(8, 2), num(10, 2), num(12, 2));
}

std::optional<std::int64_t> toHoursMs(std::string_view s) {
  std::int64_t seconds = 0;
  std::int64_t scale = 3600;
  std::size_t parts = 0;
  while (!s.empty() || parts == 0) {
    std::size_t colon = s.find(':');
    std::string_view part = s.substr(0, colon);
    if (!isDigits(part, 1, 9) || ++parts > 3) return std::nullopt;
    seconds += *toInt(part) * scale;
    scale /= 60;
    if (colon == std::string_view::npos) break;
    s.remove_prefix(colon + 1);
    if (s.empty()) return std::nullopt;
  }
  return seconds * 1000;
}

std::string_view Cursor::next() {
  if (index_ >= fields_.size()) {
    failed_ = true;
    ++index_;
    return {};
  }
  return fields_[index_++];
}

std::string_view Cursor::peek(std::size_t ahead) const {
  std::size_t i = index_ + ahead;
  return i < fields_.size() ? fields_[i] : std::string_view();
}

void Cursor::skip(std::size_t n) {
  if (n > fields_.size() || index_ > fields_.size() - n) {
    failed_ = true;
    index_ = fields_.size() + 1;
    return;
  }
  index_ += n;
}

std::optional<std::int64_t> Cursor::nextInt() {
  std::string_view s = next();
  if (s.empty()) return std::nullopt;
  auto v = toInt(s);
  if (!v) failed_ = true;
  return v;
}

std::optional<std::uint64_t> Cursor::nextHex() {
  std::string_view s = next();
  if (s.empty()) return std::nullopt;
  auto v = toHex(s);
  if (!v) failed_ = true;
  return v;
}

std::optional<double> Cursor::nextDouble() {
  std::string_view s = next();
  if (s.empty()) return std::nullopt;
  auto v = toDouble(s);
  if (!v) failed_ = true;
  return v;
}

}  // namespace tern::codec::trackers::gl200
