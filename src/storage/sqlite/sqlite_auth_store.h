#pragma once
#include <memory>
#include <string>

#include "storage/auth_store.h"

namespace tern::storage::sqlite {

// Opens the auth tables in the database file at `path` (normally the same tern.db as the
// messages), creating or upgrading them. Throws std::runtime_error on start-up failure.
std::unique_ptr<AuthStore> openSqliteAuthStore(const std::string& path);

// The auth schema version this build writes (kept apart from the message schema's version).
int sqliteAuthSchemaVersion();

}  // namespace tern::storage::sqlite
