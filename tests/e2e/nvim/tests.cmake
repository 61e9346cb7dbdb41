# e2e.nvim: the Neovim plugin in headless Neovim against the real daemon and
# the bundled model; skipped (77) where nvim is not installed.
add_test(NAME e2e.nvim
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run.sh $<TARGET_FILE:ghostd> ${PROJECT_SOURCE_DIR}
          ${CMAKE_CURRENT_BINARY_DIR}/nvim-work)
set_tests_properties(e2e.nvim PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77)
