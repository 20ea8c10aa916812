# One INTERFACE target that carries the project's warning flags; every module links it.
add_library(tern_warnings INTERFACE)
target_compile_options(tern_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion)
if(TERN_WERROR)
  target_compile_options(tern_warnings INTERFACE -Werror)
endif()
