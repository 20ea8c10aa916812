// Topic names, filters, matching (MQTT 3.1.1 §4.7) and the UTF-8 rules of §1.5.3.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "codec/mqtt/topic.h"

namespace tern::codec::mqtt {
namespace {

struct MatchCase {
  const char* filter;
  const char* topic;
  bool matches;
};

void PrintTo(const MatchCase& c, std::ostream* os) {
  *os << '"' << c.filter << "\" vs \"" << c.topic << '"';
}

class TopicMatchTest : public ::testing::TestWithParam<MatchCase> {};

TEST_P(TopicMatchTest, Matches) {
  const MatchCase& c = GetParam();
  ASSERT_TRUE(validTopicFilter(c.filter)) << c.filter;
  ASSERT_TRUE(validTopicName(c.topic)) << c.topic;
  EXPECT_EQ(topicMatches(c.filter, c.topic), c.matches);
}

INSTANTIATE_TEST_SUITE_P(
    Mqtt, TopicMatchTest,
    ::testing::Values(
        // Exact levels.
        MatchCase{"a", "a", true}, MatchCase{"a", "b", false}, MatchCase{"a/b", "a/b", true},
        MatchCase{"a/b", "a/b/c", false}, MatchCase{"a/b/c", "a/b", false},
        MatchCase{"a/b", "a/B", false}, MatchCase{"a/b", "a/b/", false},
        MatchCase{"ab", "a", false}, MatchCase{"a", "ab", false},
        // Multi-level wildcard (§4.7.1.2), including the parent level.
        MatchCase{"#", "a", true}, MatchCase{"#", "a/b/c", true}, MatchCase{"#", "/", true},
        MatchCase{"#", "/a", true}, MatchCase{"sport/#", "sport", true},
        MatchCase{"sport/#", "sport/", true}, MatchCase{"sport/#", "sport/tennis", true},
        MatchCase{"sport/#", "sport/tennis/player1/ranking", true},
        MatchCase{"sport/#", "sports", false}, MatchCase{"sport/#", "sportx/tennis", false},
        MatchCase{"sport/tennis/player1/#", "sport/tennis/player1", true},
        MatchCase{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
        MatchCase{"sport/tennis/player1/#", "sport/tennis", false}, MatchCase{"a/b/#", "a", false},
        // Single-level wildcard (§4.7.1.3).
        MatchCase{"+", "a", true}, MatchCase{"+", "a/b", false}, MatchCase{"+", "/a", false},
        MatchCase{"+/+", "/finance", true}, MatchCase{"/+", "/finance", true},
        MatchCase{"+", "/finance", false},
        MatchCase{"sport/tennis/+", "sport/tennis/player1", true},
        MatchCase{"sport/tennis/+", "sport/tennis/player1/ranking", false},
        MatchCase{"sport/tennis/+", "sport/tennis", false},
        MatchCase{"sport/tennis/+", "sport/tennis/", true}, MatchCase{"sport/+", "sport", false},
        MatchCase{"sport/+", "sport/", true}, MatchCase{"+/tennis/#", "sport/tennis/x", true},
        MatchCase{"+/tennis/#", "sport/tennis", true}, MatchCase{"+/+/+", "a/b/c", true},
        MatchCase{"+/+/+", "a/b", false}, MatchCase{"a/+/c", "a/b/c", true},
        MatchCase{"a/+/c", "a/b/d", false}, MatchCase{"+/#", "a", true},
        MatchCase{"+/#", "a/b/c", true},
        // Empty levels are levels.
        MatchCase{"a//b", "a//b", true}, MatchCase{"a/+/b", "a//b", true},
        MatchCase{"a/b", "a//b", false}, MatchCase{"/a", "/a", true}, MatchCase{"/a", "a", false},
        MatchCase{"+/a", "/a", true}, MatchCase{"/", "/", true}, MatchCase{"+/+", "/", true},
        MatchCase{"+", "/", false}, MatchCase{"/#", "/", true}, MatchCase{"/#", "a", false},
        MatchCase{"a/", "a/", true}, MatchCase{"a/", "a", false}, MatchCase{"a/#", "a//", true},
        // '$' topics (§4.7.2): first-level wildcards skip them, explicit '$' filters do not.
        MatchCase{"#", "$SYS", false}, MatchCase{"#", "$SYS/broker/uptime", false},
        MatchCase{"+/monitor/Clients", "$SYS/monitor/Clients", false},
        MatchCase{"+", "$SYS", false}, MatchCase{"+/#", "$SYS/a", false},
        MatchCase{"$SYS/#", "$SYS/monitor/Clients", true}, MatchCase{"$SYS/#", "$SYS", true},
        MatchCase{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
        MatchCase{"$SYS/+", "$SYS/a/b", false}, MatchCase{"$SYS", "$SYS", true},
        MatchCase{"$sys/#", "$SYS/a", false}, MatchCase{"a/#", "a/$SYS", true},
        MatchCase{"a/+", "a/$x", true},
        // Non-ASCII levels compare bytewise.
        MatchCase{"caf\xC3\xA9/+", "caf\xC3\xA9/x", true},
        MatchCase{"caf\xC3\xA9", "cafe", false}));

TEST(MqttTopicName, Valid) {
  for (const char* t : {"a", "/", "a/b", "/a", "a/", "a//b", "$SYS/x", " ", "caf\xC3\xA9",
                        "\xF0\x9F\x98\x80/emoji"}) {
    EXPECT_TRUE(validTopicName(t)) << t;
  }
  EXPECT_TRUE(validTopicName(std::string(65535, 'x')));
}

TEST(MqttTopicName, Invalid) {
  for (const char* t : {"", "+", "#", "a/+", "a/#", "a+b", "a#", "sport/tennis/#", "\xC3"}) {
    EXPECT_FALSE(validTopicName(t)) << t;
  }
  EXPECT_FALSE(validTopicName(std::string("a\0b", 3)));
  EXPECT_FALSE(validTopicName(std::string(65536, 'x')));  // does not fit the 2-byte length
}

TEST(MqttTopicFilter, Valid) {
  for (const char* f : {"a", "#", "+", "/", "+/+", "/+", "+/", "a/#", "a/+/b", "+/#", "a/+/+/#",
                        "sport/tennis/player1/#", "$SYS/#", "a//b", "//", "//#", "caf\xC3\xA9/+"}) {
    EXPECT_TRUE(validTopicFilter(f)) << f;
  }
  EXPECT_TRUE(validTopicFilter(std::string(65535, 'f')));
}

TEST(MqttTopicFilter, Invalid) {
  for (const char* f : {"", "a#", "#a", "a/b#", "#/a", "a/#/b", "##", "a+", "+a", "a/+b/c", "++",
                        "sport/tennis#", "+#", "#+", "\xFF"}) {
    EXPECT_FALSE(validTopicFilter(f)) << f;
  }
  EXPECT_FALSE(validTopicFilter(std::string("a/\0", 3)));
  EXPECT_FALSE(validTopicFilter(std::string(65536, 'f')));
}

struct Utf8Case {
  std::string name;
  std::string bytes;
  bool valid;
};

void PrintTo(const Utf8Case& c, std::ostream* os) {
  *os << c.name;
}

class Utf8Test : public ::testing::TestWithParam<Utf8Case> {};

TEST_P(Utf8Test, Validates) {
  EXPECT_EQ(validUtf8(GetParam().bytes), GetParam().valid);
}

INSTANTIATE_TEST_SUITE_P(
    Mqtt, Utf8Test,
    ::testing::Values(
        Utf8Case{"Empty", "", true}, Utf8Case{"Ascii", "hello/world", true},
        Utf8Case{"Controls", "\x01\x1F\x7F", true},  // discouraged, but not forbidden
        Utf8Case{"TwoByteMin", "\xC2\x80", true}, Utf8Case{"TwoByteMax", "\xDF\xBF", true},
        Utf8Case{"ThreeByteMin", "\xE0\xA0\x80", true},
        Utf8Case{"BeforeSurrogates", "\xED\x9F\xBF", true},
        Utf8Case{"AfterSurrogates", "\xEE\x80\x80", true},
        Utf8Case{"ThreeByteMax", "\xEF\xBF\xBF", true},  // U+FFFF is a noncharacter, allowed
        Utf8Case{"Bom", "\xEF\xBB\xBF", true}, Utf8Case{"FourByteMin", "\xF0\x90\x80\x80", true},
        Utf8Case{"MaxCodePoint", "\xF4\x8F\xBF\xBF", true},
        Utf8Case{"Mixed", "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z", true},
        Utf8Case{"Nul", std::string("\0", 1), false},
        Utf8Case{"NulInside", std::string("ab\0cd", 5), false},
        Utf8Case{"OverlongNul", "\xC0\x80", false}, Utf8Case{"OverlongSlash", "\xC0\xAF", false},
        Utf8Case{"OverlongC1", "\xC1\xBF", false},
        Utf8Case{"OverlongThreeByte", "\xE0\x9F\xBF", false},
        Utf8Case{"OverlongFourByte", "\xF0\x8F\xBF\xBF", false},
        Utf8Case{"SurrogateLow", "\xED\xA0\x80", false},
        Utf8Case{"SurrogateHigh", "\xED\xBF\xBF", false},
        Utf8Case{"SurrogatePair", "\xED\xA0\xBD\xED\xB8\x80", false},
        Utf8Case{"AboveMax", "\xF4\x90\x80\x80", false},
        Utf8Case{"F5Lead", "\xF5\x80\x80\x80", false}, Utf8Case{"FFByte", "\xFF", false},
        Utf8Case{"FEByte", "\xFE", false}, Utf8Case{"LoneContinuation", "\x80", false},
        Utf8Case{"ContinuationAfterAscii", "a\xBF", false}, Utf8Case{"TruncatedTwo", "\xC3", false},
        Utf8Case{"TruncatedThree", "\xE2\x82", false},
        Utf8Case{"TruncatedFour", "\xF0\x9F\x98", false},
        Utf8Case{"BadSecondByte", "\xC3\x28", false},
        Utf8Case{"BadThirdByte", "\xE2\x82\x28", false},
        Utf8Case{"BadFourthByte", "\xF0\x9F\x98\x28", false},
        Utf8Case{"FiveByteForm", "\xF8\x88\x80\x80\x80", false}),
    [](const ::testing::TestParamInfo<Utf8Case>& param) { return param.param.name; });

}  // namespace
}  // namespace tern::codec::mqtt
