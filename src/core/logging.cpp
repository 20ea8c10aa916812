#include "core/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <chrono>
#include <mutex>

#include "core/config.h"
#include "core/time.h"

namespace tern::core {

namespace {

constexpr const char* kTextPattern = "%Y-%m-%dT%H:%M:%S.%eZ %l [%n] %v";
constexpr const char* kDefaultLoggerName = "tern";

// Length of the well-formed UTF-8 sequence starting at text[i], or 0 if it is not one
// (overlong forms, surrogates and code points above U+10FFFF count as malformed).
std::size_t utf8SequenceLength(std::string_view text, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  std::size_t len = 0;
  std::uint32_t cp = 0;
  if (b0 < 0x80) {
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2;
    cp = b0 & 0x1Fu;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    cp = b0 & 0x0Fu;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4;
    cp = b0 & 0x07u;
  } else {
    return 0;
  }
  if (i + len > text.size()) {
    return 0;
  }
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(text[i + k]);
    if ((b & 0xC0) != 0x80) {
      return 0;
    }
    cp = (cp << 6) | (b & 0x3Fu);
  }
  static constexpr std::uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return len;
}

// Formats each record as one JSON object; installed on the sink in place of a pattern.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(msg.time.time_since_epoch()).count();
    const std::string line = formatJsonLogLine(
        micros, msg.level, std::string_view(msg.logger_name.data(), msg.logger_name.size()),
        std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(line.data(), line.data() + line.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

std::mutex& loggerMutex() {
  static std::mutex m;
  return m;
}

}  // namespace

spdlog::level::level_enum parseLogLevel(const std::string& level) {
  using spdlog::level::level_enum;
  if (level == "trace") return level_enum::trace;
  if (level == "debug") return level_enum::debug;
  if (level == "info") return level_enum::info;
  if (level == "warn") return level_enum::warn;
  if (level == "error") return level_enum::err;
  if (level == "off") return level_enum::off;
  throw ConfigError(
      "config: server.log_level: expected one of trace|debug|info|warn|error|off, got \"" + level +
      "\"");
}

std::string_view logLevelName(spdlog::level::level_enum level) {
  using spdlog::level::level_enum;
  switch (level) {
    case level_enum::trace:
      return "trace";
    case level_enum::debug:
      return "debug";
    case level_enum::info:
      return "info";
    case level_enum::warn:
      return "warn";
    case level_enum::err:
      return "error";
    case level_enum::critical:
      return "critical";
    default:
      return "off";
  }
}

void appendJsonEscaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < text.size();) {
    const char c = text[i];
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80) {
      // JSON must be valid UTF-8; a stray byte (e.g. from a binary payload) becomes U+FFFD.
      const std::size_t len = utf8SequenceLength(text, i);
      if (len == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(text.substr(i, len));
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u < 0x20 || u == 0x7F) {
          out += "\\u00";
          out.push_back(kHex[u >> 4]);
          out.push_back(kHex[u & 0x0F]);
        } else {
          out.push_back(c);
        }
    }
    ++i;
  }
}

std::string formatJsonLogLine(std::int64_t micros, spdlog::level::level_enum level,
                              std::string_view logger, std::string_view msg) {
  std::string out;
  out.reserve(64 + logger.size() + msg.size());
  out += "{\"ts\":\"";
  out += formatRfc3339Millis(micros);
  out += "\",\"level\":\"";
  out += logLevelName(level);
  out += "\",\"logger\":\"";
  appendJsonEscaped(out, logger);
  out += "\",\"msg\":\"";
  appendJsonEscaped(out, msg);
  out += "\"}";
  return out;
}

std::unique_ptr<spdlog::formatter> makeLogFormatter(LogFormat format) {
  if (format == LogFormat::kJson) {
    return std::make_unique<JsonFormatter>();
  }
  return std::make_unique<spdlog::pattern_formatter>(kTextPattern, spdlog::pattern_time_type::utc);
}

void initLogging(LogFormat format, const std::string& level) {
  const auto lvl = parseLogLevel(level);  // throws before anything is replaced
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  sink->set_formatter(makeLogFormatter(format));
  std::lock_guard lock(loggerMutex());
  // Loggers created before initLogging (module statics) switch to the new sink as well.
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& existing) {
    existing->sinks().assign(1, sink);
    existing->set_level(lvl);
  });
  auto root = std::make_shared<spdlog::logger>(kDefaultLoggerName, sink);
  root->set_level(lvl);
  spdlog::set_default_logger(root);
  spdlog::flush_on(spdlog::level::warn);
}

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  std::lock_guard lock(loggerMutex());
  if (auto existing = spdlog::get(name)) {
    return existing;
  }
  auto root = spdlog::default_logger();
  auto created = std::make_shared<spdlog::logger>(name, root->sinks().begin(), root->sinks().end());
  created->set_level(root->level());
  spdlog::register_logger(created);
  return created;
}

}  // namespace tern::core
