#pragma once
// Splits an origin-form request target ("/a/b%2Fc?x=1") into decoded path segments and query
// parameters. Segments are split before decoding, so "%2F" stays inside a device id.
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/problem.h"

namespace tern::api {

struct RequestTarget {
  std::vector<std::string> segments;  // after the leading '/'; "/" gives one empty segment
  std::vector<std::pair<std::string, std::string>> params;  // in request order
};

// A 400 problem for malformed percent-encoding or a target that is not a path.
std::optional<Problem> parseRequestTarget(std::string_view target, RequestTarget& out);

// Query parameters checked against the names an endpoint accepts, so a typo ("limt=5") is an
// error instead of a silently ignored option.
class QueryParams {
 public:
  static std::optional<Problem> make(const std::vector<std::pair<std::string, std::string>>& raw,
                                     std::initializer_list<std::string_view> allowed,
                                     QueryParams& out);
  static std::optional<Problem> make(const std::vector<std::pair<std::string, std::string>>& raw,
                                     std::span<const std::string_view> allowed, QueryParams& out);
  std::optional<std::string_view> get(std::string_view name) const;

 private:
  std::vector<std::pair<std::string, std::string>> values_;
};

}  // namespace tern::api
