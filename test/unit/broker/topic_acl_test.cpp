// TopicAcl: which publishes and subscriptions a client's rules allow.
#include "broker/topic_acl.h"

#include <gtest/gtest.h>

namespace tern::broker {
namespace {

TEST(FilterCovers, ExactWildcardsAndParents) {
  EXPECT_TRUE(filterCovers("device/a", "device/a"));
  EXPECT_FALSE(filterCovers("device/a", "device/b"));
  EXPECT_FALSE(filterCovers("device/a", "device/a/x"));
  EXPECT_FALSE(filterCovers("device/a/x", "device/a"));
  EXPECT_TRUE(filterCovers("device/a/#", "device/a"));  // '#' includes the parent level
  EXPECT_TRUE(filterCovers("device/a/#", "device/a/x/y"));
  EXPECT_TRUE(filterCovers("device/a/#", "device/a/#"));
  EXPECT_TRUE(filterCovers("device/a/#", "device/a/+"));
  EXPECT_FALSE(filterCovers("device/a/#", "device/#"));
  EXPECT_FALSE(filterCovers("device/a/#", "device/+"));
  EXPECT_FALSE(filterCovers("device/a/#", "#"));
  EXPECT_TRUE(filterCovers("device/+", "device/a"));
  EXPECT_TRUE(filterCovers("device/+", "device/+"));
  EXPECT_FALSE(filterCovers("device/+", "device/#"));
  EXPECT_FALSE(filterCovers("device/+", "device/a/b"));
  EXPECT_TRUE(filterCovers("+/a/+", "x/a/y"));
  EXPECT_TRUE(filterCovers("#", "#"));
  EXPECT_TRUE(filterCovers("#", "$SYS/broker/uptime"));  // rules do not exclude '$' topics
  EXPECT_TRUE(filterCovers("device/a/", "device/a/"));
  EXPECT_FALSE(filterCovers("device/a/", "device/a"));
  EXPECT_FALSE(filterCovers("device/ab", "device/a"));
  EXPECT_TRUE(topicMatchesFilter("device/a/t", "device/+/t"));
}

TEST(TopicAcl, ReadAndWriteAreSeparate) {
  TopicAcl acl({AclRule{AclRule::kRead | AclRule::kWrite, "device/d1"},
                AclRule{AclRule::kRead | AclRule::kWrite, "device/d1/#"},
                AclRule{AclRule::kRead, "broadcast/#"}, AclRule{AclRule::kWrite, "up/d1"}});
  EXPECT_TRUE(acl.mayPublish("device/d1"));
  EXPECT_TRUE(acl.mayPublish("device/d1/temp"));
  EXPECT_FALSE(acl.mayPublish("device/d2"));
  EXPECT_FALSE(acl.mayPublish("device/d10"));
  EXPECT_FALSE(acl.mayPublish("broadcast/all"));
  EXPECT_TRUE(acl.mayPublish("up/d1"));
  EXPECT_TRUE(acl.maySubscribe("broadcast/all"));
  EXPECT_TRUE(acl.maySubscribe("broadcast/#"));
  EXPECT_FALSE(acl.maySubscribe("up/d1"));
  EXPECT_TRUE(acl.maySubscribe("device/d1/+"));
  EXPECT_FALSE(acl.maySubscribe("device/+"));
  EXPECT_FALSE(acl.maySubscribe("#"));
  // A shared subscription is judged by its filter.
  EXPECT_TRUE(acl.maySubscribe("$share/g/device/d1/#"));
  EXPECT_FALSE(acl.maySubscribe("$share/g/device/#"));
  EXPECT_FALSE(acl.maySubscribe("$share/g"));
  // What a resumed session may still be sent: read rules only, by the message's topic.
  EXPECT_TRUE(acl.mayReceive("device/d1"));
  EXPECT_TRUE(acl.mayReceive("device/d1/temp"));
  EXPECT_TRUE(acl.mayReceive("broadcast/all"));
  EXPECT_FALSE(acl.mayReceive("up/d1"));
  EXPECT_FALSE(acl.mayReceive("device/d2"));
  EXPECT_FALSE(acl.mayReceive("$share/g/device/d1"));
}

TEST(TopicAcl, NoRulesAllowNothing) {
  TopicAcl acl({});
  EXPECT_FALSE(acl.mayPublish("a"));
  EXPECT_FALSE(acl.maySubscribe("a"));
  EXPECT_FALSE(acl.mayReceive("a"));
}

}  // namespace
}  // namespace tern::broker
