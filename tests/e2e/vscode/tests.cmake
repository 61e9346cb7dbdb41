# e2e.vscode: the extension in code-server 4.100.3 driven by Chromium (run.sh).
# Installs what it needs on first run (code-server, chromium, npm packages)
# into GHOSTD_E2E_CACHE, default <build>/e2e-cache; skips without node/npm.
# The tests below share that cache (prepare_extension.sh rewrites its copy of
# the extension): RESOURCE_LOCK keeps them from running at the same time.
set(GHOSTD_E2E_CACHE "${PROJECT_BINARY_DIR}/e2e-cache" CACHE PATH "Download/install cache of the end-to-end tests")
add_test(NAME e2e.vscode
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run.sh ${PROJECT_SOURCE_DIR} $<TARGET_FILE:ghostd> ${CMAKE_CURRENT_BINARY_DIR}/vscode)
set_tests_properties(e2e.vscode PROPERTIES
  LABELS e2e
  TIMEOUT 1500
  SKIP_RETURN_CODE 77
  ENVIRONMENT "GHOSTD_E2E_CACHE=${GHOSTD_E2E_CACHE}"
  RESOURCE_LOCK ghostd_e2e_cache
  ATTACHED_FILES_ON_FAIL "${CMAKE_CURRENT_BINARY_DIR}/vscode/vscode-failure.png"
  ATTACHED_FILES "${CMAKE_CURRENT_BINARY_DIR}/vscode/vscode-ghost-text.png;${CMAKE_CURRENT_BINARY_DIR}/vscode/vscode-accepted.png")

# e2e.vscode.remote: the same, with the extension connected by ghostd.server
# (tls://localhost:PORT, ghostd.caFile) to a shared daemon with a token file;
# the token goes in through "ghostd: Set Server Token", after a wrong one is
# refused (run.sh ... remote). Skips (77) without node/npm or openssl.
add_test(NAME e2e.vscode.remote
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run.sh ${PROJECT_SOURCE_DIR} $<TARGET_FILE:ghostd>
          ${CMAKE_CURRENT_BINARY_DIR}/vscode-remote remote)
set_tests_properties(e2e.vscode.remote PROPERTIES
  LABELS e2e
  TIMEOUT 1500
  SKIP_RETURN_CODE 77
  ENVIRONMENT "GHOSTD_E2E_CACHE=${GHOSTD_E2E_CACHE}"
  RESOURCE_LOCK ghostd_e2e_cache
  ATTACHED_FILES_ON_FAIL "${CMAKE_CURRENT_BINARY_DIR}/vscode-remote/vscode-failure.png"
  ATTACHED_FILES "${CMAKE_CURRENT_BINARY_DIR}/vscode-remote/vscode-remote-refused.png;${CMAKE_CURRENT_BINARY_DIR}/vscode-remote/vscode-ghost-text.png;${CMAKE_CURRENT_BINARY_DIR}/vscode-remote/vscode-accepted.png")

# The extension's own tests (unit + the daemon integration test on vscode-jsonrpc).
add_test(NAME e2e.vscode_extension_npm
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/npm_test.sh ${PROJECT_SOURCE_DIR} $<TARGET_FILE:ghostd>)
set_tests_properties(e2e.vscode_extension_npm PROPERTIES
  LABELS e2e TIMEOUT 600 SKIP_RETURN_CODE 77
  RESOURCE_LOCK ghostd_e2e_cache
  ENVIRONMENT "GHOSTD_E2E_CACHE=${GHOSTD_E2E_CACHE}")
