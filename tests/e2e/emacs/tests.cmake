# e2e.emacs: the eglot setup documented in docs/editors.md, in Emacs batch
# mode against the real daemon; skipped (77) where emacs is not installed.
add_test(NAME e2e.emacs
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run.sh $<TARGET_FILE:ghostd> ${PROJECT_SOURCE_DIR}
          ${CMAKE_CURRENT_BINARY_DIR}/emacs-work)
set_tests_properties(e2e.emacs PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77)
