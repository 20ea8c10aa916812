#include "broker/subscription_tree.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "broker/session.h"

namespace tern::broker {
namespace {

std::shared_ptr<Session> makeSession(const std::string& id) {
  static const SessionLimits kLimits{};  // sessions keep a reference to their limits
  return std::make_shared<Session>(id, 0, kLimits);
}

std::vector<std::string> matchIds(const SubscriptionTree& tree, const std::string& topic) {
  std::vector<Delivery> matches;
  tree.match(topic, nullptr, matches);
  std::vector<std::string> ids;
  for (const auto& m : matches) {
    // Appended piecewise: GCC 12 at -O3 raises a false -Wrestrict on a + ":" + b.
    std::string id = m.session->clientId();
    id += ':';
    id += std::to_string(m.qos);
    ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST(SubscriptionTree, ExactPlusAndHash) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  auto b = makeSession("b");
  tree.subscribe(a, "sport/tennis/player1", SubscriptionOptions{.qos = 0});
  tree.subscribe(b, "sport/+/player1", SubscriptionOptions{.qos = 1});
  EXPECT_EQ(matchIds(tree, "sport/tennis/player1"), (std::vector<std::string>{"a:0", "b:1"}));
  EXPECT_EQ(matchIds(tree, "sport/golf/player1"), (std::vector<std::string>{"b:1"}));
  EXPECT_TRUE(matchIds(tree, "sport/tennis").empty());
  tree.subscribe(a, "sport/#", SubscriptionOptions{.qos = 2});
  EXPECT_EQ(matchIds(tree, "sport"), (std::vector<std::string>{"a:2"}));
  EXPECT_EQ(tree.size(), 3u);
}

TEST(SubscriptionTree, OverlappingGivesOneMatchAtMaxQos) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  tree.subscribe(a, "#", SubscriptionOptions{.qos = 0});
  tree.subscribe(a, "x/+", SubscriptionOptions{.qos = 2});
  tree.subscribe(a, "x/y", SubscriptionOptions{.qos = 1});
  EXPECT_EQ(matchIds(tree, "x/y"), (std::vector<std::string>{"a:2"}));
}

TEST(SubscriptionTree, WildcardsAtRootSkipDollarTopics) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  auto b = makeSession("b");
  tree.subscribe(a, "#", SubscriptionOptions{.qos = 0});
  tree.subscribe(a, "+/broker/uptime", SubscriptionOptions{.qos = 0});
  tree.subscribe(b, "$SYS/#", SubscriptionOptions{.qos = 0});
  EXPECT_EQ(matchIds(tree, "$SYS/broker/uptime"), (std::vector<std::string>{"b:0"}));
  EXPECT_EQ(matchIds(tree, "x/broker/uptime"), (std::vector<std::string>{"a:0"}));
}

TEST(SubscriptionTree, EmptyLevelsAreLevels) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  tree.subscribe(a, "+/+", SubscriptionOptions{.qos = 0});
  tree.subscribe(a, "/finance", SubscriptionOptions{.qos = 1});
  EXPECT_EQ(matchIds(tree, "/finance"), (std::vector<std::string>{"a:1"}));
  EXPECT_EQ(matchIds(tree, "a/"), (std::vector<std::string>{"a:0"}));
}

TEST(SubscriptionTree, ResubscribeReplacesAndUnsubscribePrunes) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  tree.subscribe(a, "a/b/c", SubscriptionOptions{.qos = 0});
  tree.subscribe(a, "a/b/c", SubscriptionOptions{.qos = 2});
  EXPECT_EQ(tree.size(), 1u);
  EXPECT_EQ(matchIds(tree, "a/b/c"), (std::vector<std::string>{"a:2"}));
  EXPECT_FALSE(tree.unsubscribe(a.get(), "a/b"));
  EXPECT_TRUE(tree.unsubscribe(a.get(), "a/b/c"));
  EXPECT_FALSE(tree.unsubscribe(a.get(), "a/b/c"));
  EXPECT_EQ(tree.size(), 0u);
  EXPECT_TRUE(matchIds(tree, "a/b/c").empty());
}

TEST(Session, QueueIsBoundedAndDropsQos0First) {
  SessionLimits limits;
  limits.maxInflight = 1;
  limits.maxQueued = 2;
  Session session("s", kSessionNeverExpires, limits);
  auto message = [](std::uint8_t qos) {
    auto m = std::make_shared<Message>();
    m->topic = "topic";
    m->payload = "payload";
    m->qos = qos;
    return MessagePtr(m);
  };
  // Offline: QoS 0 is not kept, QoS 1 is queued up to the bound.
  session.deliver(message(0), 2, false);
  EXPECT_EQ(session.queued(), 0u);
  session.deliver(message(1), 2, false);
  session.deliver(message(1), 2, false);
  session.deliver(message(1), 2, false);
  EXPECT_EQ(session.queued(), 2u);
  EXPECT_EQ(session.counters().dropped, 2u);
}

TEST(SubscriptionTree, NoLocalSkipsThePublisherOnly) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  auto b = makeSession("b");
  tree.subscribe(a, "t/#", SubscriptionOptions{.qos = 1, .noLocal = true});
  tree.subscribe(b, "t/#", SubscriptionOptions{.qos = 1, .noLocal = true});
  std::vector<Delivery> out;
  tree.match("t/x", a.get(), out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].session, b);
  out.clear();
  tree.match("t/x", nullptr, out);
  EXPECT_EQ(out.size(), 2u);
}

TEST(SubscriptionTree, OverlappingSubscriptionsMergeOptionsAndIdentifiers) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  tree.subscribe(a, "t/#", SubscriptionOptions{.qos = 0, .subscriptionId = 7});
  tree.subscribe(a, "t/+", SubscriptionOptions{.qos = 2, .retainAsPublished = true});
  tree.subscribe(a, "t/x", SubscriptionOptions{.qos = 1, .subscriptionId = 9});
  std::vector<Delivery> out;
  tree.match("t/x", nullptr, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].qos, 2);
  EXPECT_TRUE(out[0].retainAsPublished);
  std::vector<std::uint32_t> ids = out[0].subscriptionIds;
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::uint32_t>{7, 9}));
}

TEST(SubscriptionTree, SharedGroupsDeliverToOneMemberRoundRobin) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  auto b = makeSession("b");
  auto c = makeSession("c");
  auto plain = makeSession("plain");
  tree.subscribe(a, "$share/g/s/+", SubscriptionOptions{.qos = 1});
  tree.subscribe(b, "$share/g/s/+", SubscriptionOptions{.qos = 1});
  tree.subscribe(c, "$share/other/s/#", SubscriptionOptions{.qos = 0});
  tree.subscribe(plain, "s/+", SubscriptionOptions{.qos = 0});
  EXPECT_EQ(tree.size(), 4u);
  std::map<std::string, int> got;
  for (int i = 0; i < 10; ++i) {
    std::vector<Delivery> out;
    tree.match("s/1", nullptr, out);
    ASSERT_EQ(out.size(), 3u);  // plain + one of group g + c (group other)
    for (const auto& d : out) ++got[d.session->clientId()];
  }
  EXPECT_EQ(got["a"], 5);
  EXPECT_EQ(got["b"], 5);
  EXPECT_EQ(got["c"], 10);
  EXPECT_EQ(got["plain"], 10);
  EXPECT_TRUE(tree.unsubscribe(a.get(), "$share/g/s/+"));
  EXPECT_FALSE(tree.unsubscribe(a.get(), "$share/g/s/+"));
  std::vector<Delivery> out;
  tree.match("s/1", nullptr, out);
  EXPECT_EQ(out.size(), 3u);
  EXPECT_TRUE(tree.unsubscribe(b.get(), "$share/g/s/+"));
  EXPECT_TRUE(tree.unsubscribe(c.get(), "$share/other/s/#"));
  EXPECT_TRUE(tree.unsubscribe(plain.get(), "s/+"));
  EXPECT_EQ(tree.size(), 0u);
}

TEST(SubscriptionTree, SharedFilterSyntax) {
  EXPECT_FALSE(parseSharedFilter("a/b"));
  EXPECT_TRUE(parseSharedFilter("$share/g/a/#")->valid);
  EXPECT_EQ(parseSharedFilter("$share/g/a/#")->filter, "a/#");
  EXPECT_FALSE(parseSharedFilter("$share/g")->valid);
  EXPECT_FALSE(parseSharedFilter("$share//a")->valid);
  EXPECT_FALSE(parseSharedFilter("$share/+/a")->valid);
  EXPECT_FALSE(parseSharedFilter("$share/g/")->valid);
}

}  // namespace
}  // namespace tern::broker
