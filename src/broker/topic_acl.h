#pragma once
// A client's topic rules, compiled at CONNECT and consulted per PUBLISH and SUBSCRIBE: a few
// string comparisons per rule, no allocation, no lookup elsewhere.
#include <string_view>
#include <vector>

#include "broker/authenticator.h"

namespace tern::broker {

class TopicAcl {
 public:
  explicit TopicAcl(std::vector<AclRule> rules) : rules_(std::move(rules)) {}

  // A rule with write access matches the topic (MQTT matching, '$' topics included).
  bool mayPublish(std::string_view topic) const;
  // A rule with read access covers every topic the filter can match. A shared subscription
  // ($share/<group>/<filter>) is judged by its filter.
  bool maySubscribe(std::string_view filter) const;
  // A rule with read access matches the topic: whether a message on it may reach this client
  // (through any subscription, shared or not).
  bool mayReceive(std::string_view topic) const;
  const std::vector<AclRule>& rules() const { return rules_; }

 private:
  // Some rule with one of the `access` bits covers `filter`.
  bool allows(unsigned access, std::string_view filter) const;

  std::vector<AclRule> rules_;
};

// Whether `filter` matches `topic`, level by level ('+' one level, '#' the rest and the parent).
bool topicMatchesFilter(std::string_view topic, std::string_view filter);
// Whether every topic `inner` matches is matched by `outer` as well.
bool filterCovers(std::string_view outer, std::string_view inner);

}  // namespace tern::broker
