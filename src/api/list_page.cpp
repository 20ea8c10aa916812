#include "api/list_page.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "api/encoding.h"
#include "auth/auth_service.h"

namespace tern::api {

bool listBefore(const ListSort& sort, ListKeyView a, ListKeyView b) {
  const auto less = [&](ListKeyView x, ListKeyView y) {
    if (sort.numberFirst) {
      if (x.number != y.number) return x.number < y.number;
      return x.text < y.text;
    }
    if (x.text != y.text) return x.text < y.text;
    return x.number < y.number;
  };
  return sort.descending ? less(b, a) : less(a, b);
}

std::string encodeListCursor(const ListSort& sort, ListKeyView last) {
  std::string text(sort.name);
  text += '\n';
  text += std::to_string(last.number);
  text += '\n';
  text += last.text;
  return base64UrlEncode(text);
}

namespace {

std::optional<ListKey> decodeListCursor(std::string_view text, std::string_view sortName) {
  const auto decoded = base64UrlDecode(text);
  if (!decoded) return std::nullopt;
  const auto first = decoded->find('\n');
  if (first == std::string::npos || decoded->substr(0, first) != sortName) return std::nullopt;
  const auto second = decoded->find('\n', first + 1);
  if (second == std::string::npos) return std::nullopt;
  ListKey key;
  const char* begin = decoded->data() + first + 1;
  const char* end = decoded->data() + second;
  const auto [ptr, ec] = std::from_chars(begin, end, key.number);
  if (ec != std::errc{} || ptr != end) return std::nullopt;
  key.text = decoded->substr(second + 1);
  return key;
}

}  // namespace

std::optional<Problem> checkRoleParam(const QueryParams& params) {
  const auto role = params.get("role");
  if (!role || auth::parseRole(*role)) return std::nullopt;
  return Problem{400, "parameter 'role': expected admin, operator, viewer or service, got " +
                          quoteInput(*role)};
}

std::optional<Problem> parseListParams(const QueryParams& params,
                                       std::initializer_list<ListSort> sorts,
                                       std::uint32_t defaultLimit, std::uint32_t maxLimit,
                                       ListParams& out) {
  out.sort = *sorts.begin();
  if (const auto text = params.get("sort")) {
    bool known = false;
    std::string names;
    for (const ListSort& sort : sorts) {
      if (*text == sort.name) {
        out.sort = sort;
        known = true;
      }
      names += names.empty() ? "" : ", ";
      names += sort.name;
    }
    if (!known) {
      return Problem{400,
                     "parameter 'sort': expected one of " + names + ", got " + quoteInput(*text)};
    }
  }
  out.limit = defaultLimit;
  if (const auto text = params.get("limit")) {
    std::uint32_t value = 0;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc{} || end != text->data() + text->size() || value < 1 || value > maxLimit) {
      return Problem{400, "parameter 'limit': expected an integer between 1 and " +
                              std::to_string(maxLimit) + ", got " + quoteInput(*text)};
    }
    out.limit = value;
  }
  if (const auto text = params.get("cursor")) {
    out.after = decodeListCursor(*text, out.sort.name);
    if (!out.after) {
      return Problem{400,
                     "parameter 'cursor': expected a next_cursor value from a previous response "
                     "with the same sort, got " +
                         quoteInput(*text)};
    }
  }
  return std::nullopt;
}

bool containsAsciiCaseless(std::string_view text, std::string_view needle) {
  const auto lower = [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  };
  return std::search(text.begin(), text.end(), needle.begin(), needle.end(),
                     [&](char a, char b) { return lower(a) == lower(b); }) != text.end();
}

}  // namespace tern::api
