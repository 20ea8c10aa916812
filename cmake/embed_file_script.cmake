# cmake -DIN=file -DOUT=file.cpp -DSYMBOL=name -P embed_file_script.cmake
# Writes the bytes of IN as one string literal of \x escapes (every byte escaped, so no escape
# can swallow a following hex digit and line endings stay as they are).
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" hexLength)
math(EXPR size "${hexLength} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" escaped "${hex}")
file(WRITE "${OUT}.tmp"
  "// Generated from ${IN} by cmake/embed_file_script.cmake; do not edit.\n"
  "#include <string_view>\n"
  "namespace tern::embedded {\n"
  "extern const std::string_view ${SYMBOL};\n"
  "const std::string_view ${SYMBOL}{\"${escaped}\", ${size}};\n"
  "}  // namespace tern::embedded\n")
file(RENAME "${OUT}.tmp" "${OUT}")
