#include "web/app_assets.h"

namespace tern::web {

const AppFile* findAppFile(std::string_view name) {
  for (const auto& file : appFiles()) {
    if (file.name == name) return &file;
  }
  return nullptr;
}

}  // namespace tern::web
