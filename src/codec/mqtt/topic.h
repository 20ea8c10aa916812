#pragma once
// Topic names and filters (MQTT 3.1.1 §4.7).
#include <string_view>

namespace tern::codec::mqtt {

// Well-formed UTF-8 as MQTT requires: no U+0000, no surrogates, no overlong forms.
bool validUtf8(std::string_view text);
// A topic name for PUBLISH: 1..65535 bytes, valid UTF-8, no '+' or '#'.
bool validTopicName(std::string_view topic);
// A topic filter for SUBSCRIBE: '+' alone in its level, '#' alone and last.
bool validTopicFilter(std::string_view filter);
// Whether `topic` matches `filter`, including the rule that a filter starting with a wildcard
// does not match topics starting with '$'.
bool topicMatches(std::string_view filter, std::string_view topic);

}  // namespace tern::codec::mqtt
