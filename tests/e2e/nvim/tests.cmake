# e2e.nvim: the Neovim plugin in headless Neovim against the real daemon and
# the bundled model; skipped (77) where nvim is not installed.
add_test(NAME e2e.nvim
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run.sh $<TARGET_FILE:ghostd> ${PROJECT_SOURCE_DIR}
          ${CMAKE_CURRENT_BINARY_DIR}/nvim-work)
set_tests_properties(e2e.nvim PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77)

# e2e.nvim.compat: the plugin's position arithmetic and :help ghostd, in Neovim.
find_program(GHOSTD_NVIM nvim)
if(GHOSTD_NVIM)
  add_test(NAME e2e.nvim.compat
    COMMAND ${GHOSTD_NVIM} -n --headless --clean --cmd "let g:loaded_python3_provider = 0"
            --cmd "set rtp^=${PROJECT_SOURCE_DIR}/editors/nvim" -c "luafile ${CMAKE_CURRENT_LIST_DIR}/compat.lua")
  set_tests_properties(e2e.nvim.compat PROPERTIES LABELS e2e TIMEOUT 60)
endif()

# e2e.nvim.remote: the plugin's `server` option (`ghostd connect` to a TLS
# daemon with tokens on loopback); skipped (77) where nvim is not installed.
add_test(NAME e2e.nvim.remote
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run_remote.sh $<TARGET_FILE:ghostd> ${PROJECT_SOURCE_DIR}
          ${CMAKE_CURRENT_BINARY_DIR}/nvim-remote-work)
set_tests_properties(e2e.nvim.remote PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77)
