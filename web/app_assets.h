#pragma once
// The operator web app (web/app) and the npm library files it loads, compiled into the binary
// and served at / and /app/ by src/api/web_routes.cpp.
#include <span>
#include <string_view>

namespace tern::web {

struct AppFile {
  std::string_view name;  // under /app/
  std::string_view contentType;
  std::string_view body;
  bool library = false;  // an npm file (changes only with its version), not the app's own
};

std::span<const AppFile> appFiles();
// nullptr when there is no such file.
const AppFile* findAppFile(std::string_view name);

}  // namespace tern::web
