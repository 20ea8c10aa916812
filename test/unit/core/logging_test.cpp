#include "core/logging.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

#include "core/config.h"

namespace tern::core {
namespace {

TEST(LoggingTest, JsonLineHasAllFields) {
  EXPECT_EQ(formatJsonLogLine(1'795'332'827'123'456, spdlog::level::info, "broker", "hello"),
            R"({"ts":"2026-11-22T07:33:47.123Z","level":"info","logger":"broker","msg":"hello"})");
  EXPECT_EQ(formatJsonLogLine(0, spdlog::level::warn, "tern", ""),
            R"({"ts":"1970-01-01T00:00:00.000Z","level":"warn","logger":"tern","msg":""})");
}

TEST(LoggingTest, JsonEscapesQuotesBackslashesAndControls) {
  std::string out;
  appendJsonEscaped(out, std::string("a\"b\\c\nd\re\tf\x01g\x1fh\x7f", 16));
  EXPECT_EQ(out, R"(a\"b\\c\nd\re\tf\u0001g\u001fh\u007f)");
  out.clear();
  appendJsonEscaped(out, std::string("nul\0end", 7));
  EXPECT_EQ(out, R"(nul\u0000end)");
}

TEST(LoggingTest, JsonKeepsUtf8AndReplacesInvalidBytes) {
  std::string out;
  appendJsonEscaped(out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  out.clear();
  // Stray continuation byte, truncated sequence, overlong '/', UTF-16 surrogate.
  appendJsonEscaped(out,
                    "a\x80"
                    "b\xc3"
                    "c\xc0\xaf"
                    "d\xed\xa0\x80");
  EXPECT_EQ(out, R"(a\ufffdb\ufffdc\ufffd\ufffdd\ufffd\ufffd\ufffd)");
}

TEST(LoggingTest, LevelNames) {
  EXPECT_EQ(parseLogLevel("trace"), spdlog::level::trace);
  EXPECT_EQ(parseLogLevel("debug"), spdlog::level::debug);
  EXPECT_EQ(parseLogLevel("info"), spdlog::level::info);
  EXPECT_EQ(parseLogLevel("warn"), spdlog::level::warn);
  EXPECT_EQ(parseLogLevel("error"), spdlog::level::err);
  EXPECT_EQ(parseLogLevel("off"), spdlog::level::off);
  EXPECT_THROW(parseLogLevel("verbose"), ConfigError);
  EXPECT_THROW(parseLogLevel("INFO"), ConfigError);
  EXPECT_THROW(initLogging(LogFormat::kText, "loud"), ConfigError);
}

TEST(LoggingTest, JsonFormatterWritesOneObjectPerLine) {
  std::ostringstream os;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(os);
  sink->set_formatter(makeLogFormatter(LogFormat::kJson));
  spdlog::logger log("unit", sink);
  log.info("say \"hi\"\n{}", "\\path");
  const std::string line = os.str();
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // the newline in the message is escaped
  EXPECT_EQ(line.rfind("{\"ts\":\"", 0), 0u);
  EXPECT_NE(line.find(R"("level":"info","logger":"unit","msg":"say \"hi\"\n\\path"})"),
            std::string::npos)
      << line;
}

TEST(LoggingTest, TextFormatterUsesUtcPattern) {
  std::ostringstream os;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(os);
  sink->set_formatter(makeLogFormatter(LogFormat::kText));
  spdlog::logger log("unit", sink);
  log.warn("disk {}", "full");
  const std::string line = os.str();
  // 2026-11-22T07:33:47.123Z warning [unit] disk full
  ASSERT_GT(line.size(), 25u);
  EXPECT_EQ(line[10], 'T');
  EXPECT_EQ(line[23], 'Z');
  EXPECT_NE(line.find(" [unit] disk full"), std::string::npos) << line;
}

TEST(LoggingTest, ModuleLoggersFollowInit) {
  initLogging(LogFormat::kJson, "debug");
  auto mod = logger("test-module");
  EXPECT_EQ(mod, logger("test-module"));
  EXPECT_EQ(mod->level(), spdlog::level::debug);
  ASSERT_EQ(mod->sinks().size(), 1u);
  EXPECT_EQ(mod->sinks()[0], spdlog::default_logger()->sinks()[0]);
  // Re-initialising moves existing module loggers to the new sink and level.
  initLogging(LogFormat::kText, "warn");
  EXPECT_EQ(mod->level(), spdlog::level::warn);
  EXPECT_EQ(mod->sinks()[0], spdlog::default_logger()->sinks()[0]);
  EXPECT_EQ(spdlog::default_logger()->name(), "tern");
}

}  // namespace
}  // namespace tern::core
