// The API's byte-level helpers and target parsing, without a server.
#include "api/encoding.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <cmath>
#include <limits>

#include "api/json_out.h"
#include "api/problem.h"
#include "api/request_target.h"

namespace tern::api {
namespace {

TEST(Base64Test, MatchesRfc4648Vectors) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64Encode(std::string_view("\xfb\xff\xbf", 3)), "+/+/");
  EXPECT_EQ(base64UrlEncode(std::string_view("\xfb\xff\xbf", 3)), "-_-_");
  EXPECT_EQ(base64UrlEncode("f"), "Zg");
}

TEST(Base64Test, UrlDecodingIsStrictAndRoundTrips) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (std::size_t n = 0; n < 40; ++n) {
    const std::string bytes = all.substr(200 - n, n);
    EXPECT_EQ(base64UrlDecode(base64UrlEncode(bytes)), bytes);
  }
  EXPECT_FALSE(base64UrlDecode("Zg=="));  // padding
  EXPECT_FALSE(base64UrlDecode("Z"));     // impossible length
  EXPECT_FALSE(base64UrlDecode("Zh"));    // non-zero trailing bits
  EXPECT_FALSE(base64UrlDecode("+/+/"));  // standard alphabet
  EXPECT_FALSE(base64UrlDecode("Zm 9"));
}

TEST(CursorTest, RoundTripsAndRejectsForgeries) {
  for (const Cursor c : {Cursor{0, 0}, Cursor{1'767'225'600'000'000, 42},
                         Cursor{-5, std::numeric_limits<std::int64_t>::max()},
                         Cursor{std::numeric_limits<std::int64_t>::min(), 7}}) {
    const std::string text = encodeCursor(c);
    const auto back = decodeCursor(text);
    ASSERT_TRUE(back) << text;
    EXPECT_EQ(back->timeUs, c.timeUs);
    EXPECT_EQ(back->id, c.id);
  }
  EXPECT_FALSE(decodeCursor(""));
  EXPECT_FALSE(decodeCursor("abc"));
  std::string text = encodeCursor({1, 2});
  text[0] = text[0] == 'A' ? 'B' : 'A';  // another version byte
  EXPECT_FALSE(decodeCursor(text));
  EXPECT_FALSE(decodeCursor(encodeCursor({1, 2}) + "AAAA"));
  EXPECT_FALSE(decodeCursor(encodeCursor({1, -1})));  // ids are never negative
}

TEST(Utf8Test, ValidatesAndRepairs) {
  EXPECT_TRUE(isValidUtf8(""));
  EXPECT_TRUE(isValidUtf8("plain ascii"));
  EXPECT_TRUE(isValidUtf8("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_TRUE(isValidUtf8(std::string_view("\0", 1)));
  EXPECT_FALSE(isValidUtf8("\xC3"));              // truncated
  EXPECT_FALSE(isValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(isValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(isValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(isValidUtf8("\xFF"));
  EXPECT_EQ(toValidUtf8("a\xFF"
                        "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(toValidUtf8("\xC3\xA9"), "\xC3\xA9");
}

TEST(PercentDecodeTest, DecodesAndRejectsMalformedEscapes) {
  EXPECT_EQ(percentDecode("a%2Fb%20c", false), "a/b c");
  EXPECT_EQ(percentDecode("a+b", false), "a+b");
  EXPECT_EQ(percentDecode("a+b", true), "a b");
  EXPECT_EQ(percentDecode("%c3%A9", false), "\xC3\xA9");
  EXPECT_FALSE(percentDecode("%", false));
  EXPECT_FALSE(percentDecode("%2", false));
  EXPECT_FALSE(percentDecode("%zz", false));
}

TEST(QuoteInputTest, TruncatesOnCharacterBoundaries) {
  EXPECT_EQ(quoteInput("abc"), "'abc'");
  EXPECT_EQ(quoteInput("abcdef", 3), "'abc...'");
  EXPECT_EQ(quoteInput("\xC3\xA9\xC3\xA9\xC3\xA9", 2), "'\xC3\xA9\xC3\xA9...'");
  EXPECT_EQ(quoteInput("\xFF"), "'\xEF\xBF\xBD'");
}

TEST(RequestTargetTest, SplitsBeforeDecoding) {
  RequestTarget t;
  ASSERT_FALSE(parseRequestTarget("/api/v1/devices/a%2Fb/messages?limit=5&x=a+b&&flag", t));
  EXPECT_EQ(t.segments, (std::vector<std::string>{"api", "v1", "devices", "a/b", "messages"}));
  ASSERT_EQ(t.params.size(), 3u);
  EXPECT_EQ(t.params[0], (std::pair<std::string, std::string>{"limit", "5"}));
  EXPECT_EQ(t.params[1], (std::pair<std::string, std::string>{"x", "a b"}));
  EXPECT_EQ(t.params[2], (std::pair<std::string, std::string>{"flag", ""}));

  ASSERT_FALSE(parseRequestTarget("/", t));
  EXPECT_EQ(t.segments, (std::vector<std::string>{""}));
  EXPECT_TRUE(parseRequestTarget("*", t));
  EXPECT_TRUE(parseRequestTarget("http://host/api", t));
  EXPECT_TRUE(parseRequestTarget("/a%zz", t));
  const auto problem = parseRequestTarget("/a?limit=%zz", t);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->status, 400u);
  EXPECT_NE(problem->detail.find("'limit'"), std::string::npos);
}

TEST(QueryParamsTest, RejectsUnknownAndRepeatedNames) {
  QueryParams params;
  EXPECT_FALSE(QueryParams::make({{"from", "1"}, {"to", "2"}}, {"from", "to"}, params));
  EXPECT_EQ(params.get("from"), "1");
  EXPECT_FALSE(params.get("limit"));
  auto problem = QueryParams::make({{"form", "1"}}, {"from", "to"}, params);
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->detail.find("'form'"), std::string::npos);
  EXPECT_NE(problem->detail.find("from, to"), std::string::npos);
  problem = QueryParams::make({{"from", "1"}, {"from", "2"}}, {"from"}, params);
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->detail.find("more than once"), std::string::npos);
}

TEST(ProblemTest, BuildsProblemJson) {
  const ApiResponse r = problemResponse(404, "no device with id 'x'");
  EXPECT_EQ(r.status, 404u);
  EXPECT_EQ(r.contentType, "application/problem+json");
  EXPECT_EQ(r.body,
            "{\"type\":\"about:blank\",\"title\":\"Not Found\",\"status\":404,"
            "\"detail\":\"no device with id 'x'\"}");
}

TEST(JsonTextTest, WritesReadableTypedNumbers) {
  boost::json::object o;
  o["half"] = 2499.5;
  o["whole"] = 60.0;
  o["tenth"] = 0.1;
  o["tiny"] = 1e-7;
  o["huge"] = 1e300;
  o["neg"] = -0.0;
  o["int"] = std::int64_t{-42};
  o["big"] = std::numeric_limits<std::uint64_t>::max();
  o["nan"] = std::nan("");
  EXPECT_EQ(toJsonText(o),
            "{\"half\":2499.5,\"whole\":60.0,\"tenth\":0.1,\"tiny\":1e-07,\"huge\":1e+300,"
            "\"neg\":-0.0,\"int\":-42,\"big\":18446744073709551615,\"nan\":null}");
  const auto back = boost::json::parse(toJsonText(o));
  EXPECT_TRUE(back.at("whole").is_double());
  EXPECT_TRUE(back.at("tiny").is_double());
  EXPECT_EQ(back.at("tenth").as_double(), 0.1);
}

TEST(JsonTextTest, EscapesStringsAndKeepsThemValid) {
  boost::json::array a{"q\"b\\s/", std::string("nul\0ctl\x01\n\t\r", 11),
                       "\xC3\xA9", "bad\xFF",
                       nullptr,    true,
                       false,      boost::json::object{{"k", boost::json::array{}}}};
  const std::string text = toJsonText(a);
  EXPECT_EQ(text,
            "[\"q\\\"b\\\\s/\",\"nul\\u0000ctl\\u0001\\n\\t\\r\",\"\xC3\xA9\",\"bad\xEF\xBF\xBD\","
            "null,true,false,{\"k\":[]}]");
  const auto back = boost::json::parse(text);
  EXPECT_EQ(back.at(0), "q\"b\\s/");
  EXPECT_EQ(back.at(1).as_string().size(), 11u);
}

}  // namespace
}  // namespace tern::api
