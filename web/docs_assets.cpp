#include "web/docs_assets.h"

#include <array>

namespace tern::embedded {
extern const std::string_view kDocsIndexHtml;
extern const std::string_view kSwaggerUiCss;
extern const std::string_view kSwaggerUiBundleJs;
extern const std::string_view kSwaggerUiStandalonePresetJs;
extern const std::string_view kSwaggerFavicon32Png;
extern const std::string_view kSwaggerFavicon16Png;
extern const std::string_view kSwaggerUiLicense;
}  // namespace tern::embedded

namespace tern::web {

std::span<const DocsFile> docsFiles() {
  using namespace tern::embedded;
  static const std::array<DocsFile, 7> kFiles = {{
      {"index.html", "text/html; charset=utf-8", kDocsIndexHtml},
      {"swagger-ui.css", "text/css; charset=utf-8", kSwaggerUiCss},
      {"swagger-ui-bundle.js", "application/javascript; charset=utf-8", kSwaggerUiBundleJs},
      {"swagger-ui-standalone-preset.js", "application/javascript; charset=utf-8",
       kSwaggerUiStandalonePresetJs},
      {"favicon-32x32.png", "image/png", kSwaggerFavicon32Png},
      {"favicon-16x16.png", "image/png", kSwaggerFavicon16Png},
      // swagger-ui-dist's Apache-2.0 licence travels with the copy we serve.
      {"LICENSE", "text/plain; charset=utf-8", kSwaggerUiLicense},
  }};
  return kFiles;
}

const DocsFile* findDocsFile(std::string_view name) {
  for (const auto& file : docsFiles()) {
    if (file.name == name) return &file;
  }
  return nullptr;
}

}  // namespace tern::web
