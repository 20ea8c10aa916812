#include "broker/subscription_tree.h"

#include <algorithm>
#include <mutex>

#include "broker/session.h"

namespace tern::broker {

namespace {

std::vector<std::string_view> splitLevels(std::string_view text) {
  std::vector<std::string_view> levels;
  std::size_t start = 0;
  for (;;) {
    std::size_t slash = text.find('/', start);
    if (slash == std::string_view::npos) {
      levels.push_back(text.substr(start));
      return levels;
    }
    levels.push_back(text.substr(start, slash - start));
    start = slash + 1;
  }
}

constexpr std::string_view kSharePrefix = "$share/";

}  // namespace

std::optional<SharedFilter> parseSharedFilter(std::string_view filter) {
  if (!filter.starts_with(kSharePrefix)) return std::nullopt;
  SharedFilter shared;
  std::string_view rest = filter.substr(kSharePrefix.size());
  const std::size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return shared;  // no filter after the group
  shared.group = rest.substr(0, slash);
  shared.filter = rest.substr(slash + 1);
  // [MQTT-4.8.2-1] / [MQTT-4.8.2-2]: a non-empty share name without wildcards, then a filter.
  shared.valid = !shared.group.empty() &&
                 shared.group.find_first_of("+#") == std::string_view::npos &&
                 !shared.filter.empty();
  return shared;
}

void SubscriptionTree::subscribe(const std::shared_ptr<Session>& session, std::string_view filter,
                                 const SubscriptionOptions& options) {
  std::optional<SharedFilter> shared = parseSharedFilter(filter);
  if (shared && shared->valid) filter = shared->filter;
  std::unique_lock lock(mutex_);
  Node* node = &root_;
  for (std::string_view level : splitLevels(filter)) {
    std::unique_ptr<Node>* child = nullptr;
    if (level == "+") {
      child = &node->plus;
    } else if (level == "#") {
      child = &node->hash;
    } else {
      child = &node->children[std::string(level)];
    }
    if (!*child) *child = std::make_unique<Node>();
    node = child->get();
  }
  if (shared && shared->valid) {
    auto it = node->shared.find(shared->group);
    if (it == node->shared.end()) {
      it = node->shared.emplace(std::string(shared->group), std::make_unique<Group>()).first;
    }
    auto& members = it->second->members;
    auto member = std::find_if(members.begin(), members.end(),
                               [&](const Match& m) { return m.session.get() == session.get(); });
    if (member != members.end()) {
      member->options = options;
    } else {
      members.push_back(Match{session, options});
      ++count_;
    }
    return;
  }
  auto [it, inserted] = node->subscribers.insert_or_assign(session.get(), Match{session, options});
  if (inserted) ++count_;
}

bool SubscriptionTree::unsubscribe(const Session* session, std::string_view filter) {
  std::optional<SharedFilter> shared = parseSharedFilter(filter);
  if (shared && shared->valid) filter = shared->filter;
  std::unique_lock lock(mutex_);
  std::vector<Node*> path{&root_};
  for (std::string_view level : splitLevels(filter)) {
    Node* node = path.back();
    Node* next = nullptr;
    if (level == "+") {
      next = node->plus.get();
    } else if (level == "#") {
      next = node->hash.get();
    } else {
      auto it = node->children.find(std::string(level));
      if (it != node->children.end()) next = it->second.get();
    }
    if (next == nullptr) return false;
    path.push_back(next);
  }
  Node& target = *path.back();
  if (shared && shared->valid) {
    auto it = target.shared.find(shared->group);
    if (it == target.shared.end()) return false;
    auto& members = it->second->members;
    auto member = std::find_if(members.begin(), members.end(),
                               [&](const Match& m) { return m.session.get() == session; });
    if (member == members.end()) return false;
    members.erase(member);
    if (members.empty()) target.shared.erase(it);
  } else if (target.subscribers.erase(session) == 0) {
    return false;
  }
  --count_;
  prune(root_);
  return true;
}

// Drops empty branches so the tree does not grow with every filter ever used.
bool SubscriptionTree::prune(Node& node) {
  for (auto it = node.children.begin(); it != node.children.end();) {
    if (prune(*it->second)) {
      it = node.children.erase(it);
    } else {
      ++it;
    }
  }
  if (node.plus && prune(*node.plus)) node.plus.reset();
  if (node.hash && prune(*node.hash)) node.hash.reset();
  return node.subscribers.empty() && node.shared.empty() && node.children.empty() && !node.plus &&
         !node.hash;
}

void SubscriptionTree::pickShared(const Node& node, std::vector<const Match*>& shared) {
  for (const auto& [name, group] : node.shared) {
    if (group->members.empty()) continue;
    // Round robin: spreads a group's messages evenly over its members.
    const std::size_t turn = group->next.fetch_add(1, std::memory_order_relaxed);
    shared.push_back(&group->members[turn % group->members.size()]);
  }
}

void SubscriptionTree::matchLevel(const Node& node, const std::vector<std::string_view>& levels,
                                  std::size_t index, std::vector<const Match*>& plain,
                                  std::vector<const Match*>& shared) const {
  // "a/#" also matches "a": the '#' child of a node matches at every depth from here on.
  if (node.hash && !(index == 0 && !levels.empty() && levels[0].starts_with('$'))) {
    for (const auto& [session, match] : node.hash->subscribers) plain.push_back(&match);
    pickShared(*node.hash, shared);
  }
  if (index == levels.size()) {
    for (const auto& [session, match] : node.subscribers) plain.push_back(&match);
    pickShared(node, shared);
    return;
  }
  std::string_view level = levels[index];
  auto it = node.children.find(std::string(level));
  if (it != node.children.end()) matchLevel(*it->second, levels, index + 1, plain, shared);
  // Wildcards at the first level never match topics beginning with '$'.
  if (node.plus && !(index == 0 && level.starts_with('$'))) {
    matchLevel(*node.plus, levels, index + 1, plain, shared);
  }
}

void SubscriptionTree::match(std::string_view topic, const Session* publisher,
                             std::vector<Delivery>& out) const {
  thread_local std::vector<const Match*> plain;
  thread_local std::vector<const Match*> shared;
  plain.clear();
  shared.clear();
  std::shared_lock lock(mutex_);
  matchLevel(root_, splitLevels(topic), 0, plain, shared);
  // One copy per session: group the ordinary matches by session.
  std::sort(plain.begin(), plain.end(),
            [](const Match* a, const Match* b) { return a->session.get() < b->session.get(); });
  const Session* last = nullptr;
  for (const Match* m : plain) {
    // No local: the publisher does not get its own message back through this subscription.
    if (m->options.noLocal && m->session.get() == publisher) continue;
    if (out.empty() || m->session.get() != last) {
      out.push_back(Delivery{m->session, m->options.qos, m->options.retainAsPublished, {}});
      last = m->session.get();
    } else {
      Delivery& d = out.back();
      d.qos = std::max(d.qos, m->options.qos);
      d.retainAsPublished = d.retainAsPublished || m->options.retainAsPublished;
    }
    if (m->options.subscriptionId != 0) {
      out.back().subscriptionIds.push_back(m->options.subscriptionId);
    }
  }
  for (const Match* m : shared) {
    Delivery d{m->session, m->options.qos, m->options.retainAsPublished, {}};
    if (m->options.subscriptionId != 0) d.subscriptionIds.push_back(m->options.subscriptionId);
    out.push_back(std::move(d));
  }
  plain.clear();
  shared.clear();
}

std::size_t SubscriptionTree::size() const {
  std::shared_lock lock(mutex_);
  return count_;
}

}  // namespace tern::broker
