#include "codec/trackers/position.h"

namespace tern::codec::trackers {

void Position::set(std::string_view key, AttributeValue value) {
  for (auto& attribute : attributes) {
    if (attribute.key == key) {
      attribute.value = std::move(value);
      return;
    }
  }
  attributes.push_back(Attribute{std::string(key), std::move(value)});
}

void Position::addAlarm(std::string_view alarm) {
  for (auto& attribute : attributes) {
    if (attribute.key == attr::kAlarm) {
      if (auto* text = std::get_if<std::string>(&attribute.value)) {
        text->append(",").append(alarm);
        return;
      }
    }
  }
  set(attr::kAlarm, std::string(alarm));
}

const AttributeValue* Position::get(std::string_view key) const {
  for (const auto& attribute : attributes) {
    if (attribute.key == key) return &attribute.value;
  }
  return nullptr;
}

}  // namespace tern::codec::trackers
