#include "api/request_target.h"

#include <algorithm>

#include "api/encoding.h"

namespace tern::api {

std::optional<Problem> parseRequestTarget(std::string_view target, RequestTarget& out) {
  out = {};
  if (target.empty() || target.front() != '/') {
    return Problem{400,
                   "request target must be a path starting with '/', got " + quoteInput(target)};
  }
  const std::size_t queryStart = target.find('?');
  const std::string_view path = target.substr(
      1, queryStart == std::string_view::npos ? std::string_view::npos : queryStart - 1);
  const std::string_view query =
      queryStart == std::string_view::npos ? std::string_view{} : target.substr(queryStart + 1);

  std::size_t pos = 0;
  while (true) {
    const std::size_t slash = path.find('/', pos);
    const std::string_view raw =
        path.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    auto decoded = percentDecode(raw, false);
    if (!decoded) {
      return Problem{400, "path segment " + quoteInput(raw) + ": malformed percent-encoding"};
    }
    out.segments.push_back(std::move(*decoded));
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }

  pos = 0;
  while (pos < query.size()) {
    const std::size_t amp = query.find('&', pos);
    const std::string_view pair =
        query.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    pos = amp == std::string_view::npos ? query.size() : amp + 1;
    if (pair.empty()) continue;  // "a=1&&b=2"
    const std::size_t eq = pair.find('=');
    const std::string_view rawName = pair.substr(0, eq);
    const std::string_view rawValue =
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    auto name = percentDecode(rawName, true);
    if (!name) {
      return Problem{
          400, "query parameter name " + quoteInput(rawName) + ": malformed percent-encoding"};
    }
    auto value = percentDecode(rawValue, true);
    if (!value) {
      return Problem{400, "parameter " + quoteInput(*name) + ": malformed percent-encoding in " +
                              quoteInput(rawValue)};
    }
    out.params.emplace_back(std::move(*name), std::move(*value));
  }
  return std::nullopt;
}

std::optional<Problem> QueryParams::make(
    const std::vector<std::pair<std::string, std::string>>& raw,
    std::initializer_list<std::string_view> allowed, QueryParams& out) {
  return make(raw, std::span<const std::string_view>(allowed.begin(), allowed.size()), out);
}

std::optional<Problem> QueryParams::make(
    const std::vector<std::pair<std::string, std::string>>& raw,
    std::span<const std::string_view> allowed, QueryParams& out) {
  out.values_.clear();
  for (const auto& [name, value] : raw) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string names;
      for (const auto allowedName : allowed) {
        if (!names.empty()) names += ", ";
        names += allowedName;
      }
      return Problem{400, "parameter " + quoteInput(name) + ": unknown parameter" +
                              (names.empty() ? std::string("; this endpoint takes none")
                                             : "; expected one of: " + names)};
    }
    if (out.get(name)) {
      return Problem{400, "parameter " + quoteInput(name) + ": given more than once"};
    }
    out.values_.emplace_back(name, value);
  }
  return std::nullopt;
}

std::optional<std::string_view> QueryParams::get(std::string_view name) const {
  for (const auto& [key, value] : values_) {
    if (key == name) return std::string_view(value);
  }
  return std::nullopt;
}

}  // namespace tern::api
