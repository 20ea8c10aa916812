#pragma once
#include <string>

namespace tern::core {

// A random RFC 4122 version 4 UUID in canonical lowercase form.
std::string randomUuid();
// This machine's host name, or "tern" if it cannot be read.
std::string hostName();

}  // namespace tern::core
