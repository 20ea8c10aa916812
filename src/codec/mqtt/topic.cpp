#include "codec/mqtt/topic.h"

#include <cstddef>
#include <cstdint>

namespace tern::codec::mqtt {

namespace {

constexpr std::size_t kMaxTopicBytes = 65535;  // the 2-byte length prefix bounds every string

// Next '/'-separated level of `text` starting at `begin`; returns the index just past it.
std::size_t levelEnd(std::string_view text, std::size_t begin) {
  const std::size_t slash = text.find('/', begin);
  return slash == std::string_view::npos ? text.size() : slash;
}

}  // namespace

bool validUtf8(std::string_view text) {
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const auto b0 = static_cast<std::uint8_t>(text[i]);
    if (b0 < 0x80) {
      if (b0 == 0) return false;  // U+0000 is forbidden [MQTT-1.5.3-2]
      ++i;
      continue;
    }
    // The allowed range of the second byte depends on the lead byte: narrowing it is what
    // rejects overlong forms, surrogates (ED A0..BF) and code points above U+10FFFF.
    std::size_t length = 0;
    std::uint8_t lo = 0x80;
    std::uint8_t hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      length = 2;
    } else if (b0 == 0xE0) {
      length = 3;
      lo = 0xA0;
    } else if (b0 == 0xED) {
      length = 3;
      hi = 0x9F;
    } else if (b0 >= 0xE1 && b0 <= 0xEF) {
      length = 3;
    } else if (b0 == 0xF0) {
      length = 4;
      lo = 0x90;
    } else if (b0 >= 0xF1 && b0 <= 0xF3) {
      length = 4;
    } else if (b0 == 0xF4) {
      length = 4;
      hi = 0x8F;
    } else {
      return false;  // continuation byte as lead, C0/C1 (always overlong) or F5..FF
    }
    if (n - i < length) return false;
    const auto b1 = static_cast<std::uint8_t>(text[i + 1]);
    if (b1 < lo || b1 > hi) return false;
    for (std::size_t k = 2; k < length; ++k) {
      const auto b = static_cast<std::uint8_t>(text[i + k]);
      if (b < 0x80 || b > 0xBF) return false;
    }
    i += length;
  }
  return true;
}

bool validTopicName(std::string_view topic) {
  if (topic.empty() || topic.size() > kMaxTopicBytes) return false;
  if (topic.find_first_of("+#") != std::string_view::npos) return false;
  return validUtf8(topic);
}

bool validTopicFilter(std::string_view filter) {
  if (filter.empty() || filter.size() > kMaxTopicBytes) return false;
  std::size_t begin = 0;
  while (true) {
    const std::size_t end = levelEnd(filter, begin);
    const std::string_view level = filter.substr(begin, end - begin);
    if (level.size() > 1 && level.find_first_of("+#") != std::string_view::npos) return false;
    if (level == "#" && end != filter.size()) return false;  // '#' must be the last level
    if (end == filter.size()) break;
    begin = end + 1;
  }
  return validUtf8(filter);
}

bool topicMatches(std::string_view filter, std::string_view topic) {
  // [MQTT-4.7.2-1]: '$' topics are for the server; wildcards at the first level skip them.
  if (!topic.empty() && topic.front() == '$' && !filter.empty() &&
      (filter.front() == '+' || filter.front() == '#')) {
    return false;
  }
  std::size_t f = 0;
  std::size_t t = 0;
  while (true) {
    const std::size_t fEnd = levelEnd(filter, f);
    const std::string_view fLevel = filter.substr(f, fEnd - f);
    if (fLevel == "#") return true;  // the rest of the topic, possibly nothing
    const std::size_t tEnd = levelEnd(topic, t);
    const std::string_view tLevel = topic.substr(t, tEnd - t);
    if (fLevel != "+" && fLevel != tLevel) return false;
    const bool filterDone = fEnd == filter.size();
    const bool topicDone = tEnd == topic.size();
    if (filterDone || topicDone) {
      if (filterDone && topicDone) return true;
      // A trailing "/#" also matches the parent level: "sport/#" matches "sport".
      return topicDone && filter.substr(fEnd) == "/#";
    }
    f = fEnd + 1;
    t = tEnd + 1;
  }
}

}  // namespace tern::codec::mqtt
