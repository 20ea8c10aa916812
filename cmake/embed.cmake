# tern_embed_file(TARGET FILE SYMBOL): compiles FILE into TARGET as
# `extern const std::string_view tern::embedded::SYMBOL` (the bytes as they are), regenerated
# whenever FILE changes. Extra DEPENDS (e.g. an npm stamp) may follow.
set(TERN_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/embed_file_script.cmake)

function(tern_embed_file target file symbol)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/embedded/${symbol}.cpp)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DIN=${file} -DOUT=${out} -DSYMBOL=${symbol} -P ${TERN_EMBED_SCRIPT}
    DEPENDS ${file} ${TERN_EMBED_SCRIPT} ${ARGN}
    COMMENT "Embedding ${symbol}"
    VERBATIM)
  # A long string literal is fine for GCC and Clang; -Wpedantic would flag it all the same.
  set_source_files_properties(${out} PROPERTIES COMPILE_OPTIONS -Wno-overlength-strings)
  target_sources(${target} PRIVATE ${out})
endfunction()
