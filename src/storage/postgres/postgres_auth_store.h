#pragma once
#include <memory>
#include <string>

#include "storage/auth_store.h"

namespace tern::storage::postgres {

// Connects to `url` (the same database as the messages), creating or upgrading the auth tables
// (version in tern_auth_schema_version). Throws std::runtime_error on start-up failure. A lost
// connection is re-established on the next call; calls fail while the database is down.
std::unique_ptr<AuthStore> openPostgresAuthStore(const std::string& url);

int postgresAuthSchemaVersion();

}  // namespace tern::storage::postgres
