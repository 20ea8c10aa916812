#pragma once
// The shared shape of the API's small in-memory lists (users, API keys, groups): a sort named by
// the client, a keyset cursor that is the last entry of the previous page, and a page size.
#include <algorithm>
#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/problem.h"
#include "api/request_target.h"

namespace tern::api {

// An entry's place in a list's order: a number (a time, an id, a count) and a text (a name),
// which together identify the entry.
// A key as compared: the text is a view of the entry's own, so that sorting copies nothing.
struct ListKeyView {
  std::int64_t number = 0;
  std::string_view text;
};

// A key that owns its text (a decoded cursor).
struct ListKey {
  std::int64_t number = 0;
  std::string text;
  operator ListKeyView() const { return {number, text}; }  // NOLINT(google-explicit-constructor)
};

// A sort a client may name: `-` before the name sorts descending, every part of the key alike.
struct ListSort {
  std::string_view name;
  bool numberFirst = false;  // by number, ties by text; else by text, ties by number
  bool descending = false;
};

// Whether a comes before b under `sort`.
bool listBefore(const ListSort& sort, ListKeyView a, ListKeyView b);

// The `sort`, `limit` and `cursor` parameters against the sorts a list offers (the first is the
// default). A problem names the bad parameter.
struct ListParams {
  ListSort sort;
  std::uint32_t limit = 0;
  std::optional<ListKey> after;  // from the cursor
};
std::optional<Problem> parseListParams(const QueryParams& params,
                                       std::initializer_list<ListSort> sorts,
                                       std::uint32_t defaultLimit, std::uint32_t maxLimit,
                                       ListParams& out);

// The cursor of a page ending at `last`: "<sort>\n<number>\n<text>", base64url-encoded, so it
// only continues the sort it came from.
std::string encodeListCursor(const ListSort& sort, ListKeyView last);

// Turns `all` into the page `list` asks for: drops the entries `keep` refuses and those up to the
// cursor, sorts by `keyOf`, cuts at the limit. Returns the next page's cursor, or nullopt on the
// last page.
template <class T, class KeyOf, class Keep>
std::optional<std::string> pageOf(std::vector<T>& all, const ListParams& list, KeyOf keyOf,
                                  Keep keep) {
  std::erase_if(all, [&](const T& entry) {
    return !keep(entry) || (list.after && !listBefore(list.sort, *list.after, keyOf(entry)));
  });
  std::sort(all.begin(), all.end(),
            [&](const T& a, const T& b) { return listBefore(list.sort, keyOf(a), keyOf(b)); });
  if (all.size() <= list.limit) return std::nullopt;
  all.resize(list.limit);
  return encodeListCursor(list.sort, keyOf(all.back()));
}

// The sorts of a list of objects that each have an integer "id" (creation order).
inline constexpr ListSort kById{"id", true, false};
inline constexpr ListSort kByIdDesc{"-id", true, true};

// Pages a JSON array of objects with an integer "id" (sorts kById, kByIdDesc), keeping the objects
// `keep` accepts. Returns the next page's cursor, or nullopt on the last page.
template <class Keep>
std::optional<std::string> pageObjectsById(boost::json::array& items, const ListParams& list,
                                           Keep keep) {
  std::vector<boost::json::object> objects;
  objects.reserve(items.size());
  for (auto& item : items) {
    if (item.is_object()) objects.push_back(std::move(item.as_object()));
  }
  const auto next = pageOf(
      objects, list,
      [](const boost::json::object& o) {
        return ListKeyView{o.at("id").to_number<std::int64_t>(), {}};
      },
      keep);
  items.clear();
  for (auto& object : objects) items.emplace_back(std::move(object));
  return next;
}

// The `role` filter of the users and API keys lists: absent, or a role's name.
std::optional<Problem> checkRoleParam(const QueryParams& params);

// ASCII case-insensitive substring test, for `search` parameters.
bool containsAsciiCaseless(std::string_view text, std::string_view needle);

}  // namespace tern::api
