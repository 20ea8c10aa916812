#include "broker/topic_acl.h"

namespace tern::broker {
namespace {

// Splits off the next level; `rest` loses it and its '/'. `more` tells whether a '/' followed.
std::string_view nextLevel(std::string_view& rest, bool& more) {
  const std::size_t slash = rest.find('/');
  std::string_view level = rest.substr(0, slash);
  more = slash != std::string_view::npos;
  rest = more ? rest.substr(slash + 1) : std::string_view();
  return level;
}

}  // namespace

bool topicMatchesFilter(std::string_view topic, std::string_view filter) {
  // A topic is a filter without wildcards; a filter covers it exactly when it matches it.
  return filterCovers(filter, topic);
}

bool filterCovers(std::string_view outer, std::string_view inner) {
  bool outerMore = true;
  bool innerMore = true;
  while (true) {
    const std::string_view o = nextLevel(outer, outerMore);
    if (o == "#") return true;  // the rest of inner, whatever it is, and its parent level
    const std::string_view i = nextLevel(inner, innerMore);
    if (i == "#") {
      // inner reaches every level below here (and this one's parent): outer must too, with
      // "x/#" covering "x/#" handled above; "+/#"-like endings are not enough.
      return false;
    }
    if (o == "+") {
      // Any single level; inner's '+' is one level too.
    } else if (i == "+" || o != i) {
      return false;
    }
    if (!outerMore || !innerMore) {
      if (outerMore == innerMore) return true;
      // inner stops, outer goes on: only "…/#" covers the parent level.
      return !innerMore && outer == "#";
    }
  }
}

bool TopicAcl::allows(unsigned access, std::string_view filter) const {
  for (const AclRule& rule : rules_) {
    if ((rule.access & access) != 0 && filterCovers(rule.filter, filter)) return true;
  }
  return false;
}

bool TopicAcl::mayPublish(std::string_view topic) const {
  return allows(AclRule::kWrite, topic);
}

bool TopicAcl::maySubscribe(std::string_view filter) const {
  if (filter.starts_with("$share/")) {
    std::string_view rest = filter.substr(7);
    const std::size_t slash = rest.find('/');
    if (slash == std::string_view::npos) return false;
    filter = rest.substr(slash + 1);
  }
  return allows(AclRule::kRead, filter);
}

bool TopicAcl::mayReceive(std::string_view topic) const {
  return allows(AclRule::kRead, topic);
}

}  // namespace tern::broker
