#pragma once
// The flat JSON objects the PostgreSQL backend stores fields and latest values in. Same format
// as the SQLite backend's (a copy of its private helpers: integers without '.', doubles always
// with '.' or an exponent, shortest round-trip form), so values come back bit-exact and typed.
// One difference: a NUL character in a key or string becomes U+FFFD, since PostgreSQL's json
// functions cannot handle \u0000.
#include <string>
#include <string_view>
#include <vector>

#include "storage/record.h"

namespace tern::storage::postgres {

// False when the value has no JSON form (NaN, infinities); such values are not stored.
bool representable(const FieldValue& value);

// Appends `text` as a JSON string (quoted and escaped as stored: NUL becomes U+FFFD).
void appendJsonString(std::string& out, std::string_view text);

// Appends `"key":value` (with '{' or ',' before it) unless the value is not representable.
void appendJsonMember(std::string& out, bool& first, std::string_view key, const FieldValue& value);

// Renders fields as one flat object; "{}" when there are none.
void appendJsonObject(std::string& out, const std::vector<Field>& fields);

// Reads a flat object (whitespace allowed, as PostgreSQL's json functions add it). Null values
// are skipped. False on anything else.
bool parseFields(std::string_view text, std::vector<Field>& fields);

}  // namespace tern::storage::postgres
