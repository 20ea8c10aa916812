#pragma once
#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace tern::core {

enum class LogFormat { kText, kJson };

// Installs the process-wide logger. Text is for people, JSON (one object per line) for machines.
// Throws ConfigError for an unknown level.
void initLogging(LogFormat format, const std::string& level);

// The formatter initLogging installs for `format` (exposed so tests can aim it at a string).
std::unique_ptr<spdlog::formatter> makeLogFormatter(LogFormat format);

// "trace", "debug", "info", "warn", "error", "off" → spdlog level. Throws ConfigError otherwise.
spdlog::level::level_enum parseLogLevel(const std::string& level);
// The name used in JSON lines: trace, debug, info, warn, error, critical, off.
std::string_view logLevelName(spdlog::level::level_enum level);

// One JSON log line without the trailing newline:
// {"ts":"2026-11-22T07:33:47.123Z","level":"info","logger":"tern","msg":"..."}.
std::string formatJsonLogLine(std::int64_t micros, spdlog::level::level_enum level,
                              std::string_view logger, std::string_view msg);
// Appends `text` as the contents of a JSON string (without quotes), escaping quotes,
// backslashes and control characters.
void appendJsonEscaped(std::string& out, std::string_view text);

// A named logger sharing the default logger's sinks and level, created on first use, so module
// loggers ("broker", "ingest") follow whatever initLogging installed.
std::shared_ptr<spdlog::logger> logger(const std::string& name);

}  // namespace tern::core
