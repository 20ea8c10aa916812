#pragma once
// Swagger UI's files (npm swagger-ui-dist) and Tern's /docs page, compiled into the binary so a
// single `tern` serves them wherever it is installed.
#include <span>
#include <string_view>

namespace tern::web {

struct DocsFile {
  std::string_view name;  // under /docs/
  std::string_view contentType;
  std::string_view body;
};

std::span<const DocsFile> docsFiles();
// nullptr when there is no such file.
const DocsFile* findDocsFile(std::string_view name);

}  // namespace tern::web
