#include "codec/trackers/protocol.h"

namespace tern::codec::trackers {

bool SessionState::identify(const std::string& id) {
  if (id.empty()) return false;
  if (accept && !accept(id)) return false;
  deviceId = id;
  return true;
}

const std::string* SessionState::getExtra(std::string_view key) const {
  for (const auto& [k, v] : extra) {
    if (k == key) return &v;
  }
  return nullptr;
}

void SessionState::setExtra(std::string_view key, std::string value) {
  for (auto& [k, v] : extra) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  extra.emplace_back(std::string(key), std::move(value));
}

}  // namespace tern::codec::trackers
