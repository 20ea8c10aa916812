#pragma once
#include <spdlog/spdlog.h>

#include <string>

namespace tern::core {

enum class LogFormat { kText, kJson };

// Installs the process-wide logger. Text is for people, JSON (one object per line) for machines.
void initLogging(LogFormat format, const std::string& level);

}  // namespace tern::core
