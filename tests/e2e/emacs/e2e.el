;;; e2e.el --- eglot + ghostd in batch mode  -*- lexical-binding: t -*-
;; Usage: emacs --batch -l e2e.el CONFIG.el FILE.py
;; Loads CONFIG.el (the documented setup) the way an init file would, opens
;; FILE.py, lets eglot-ensure connect as after a command, checks that ghostd
;; initialized, then asks for textDocument/inlineCompletion through
;; jsonrpc-request (retrying while the model loads) and for completion items
;; through eglot's completion-at-point. Exits 0 on success, 1 on failure.

;; Debian activates its elpa-* packages from site-start (so no -Q); elsewhere
;; eglot may come from package.el.
(unless (locate-library "eglot")
  (require 'package)
  (package-initialize))

(defvar ghostd-e2e-start (float-time))
(defun ghostd-e2e-log (fmt &rest args)
  (princ (format "[%7.0f ms] %s\n" (* 1000 (- (float-time) ghostd-e2e-start)) (apply #'format fmt args))))
(defun ghostd-e2e-fail (fmt &rest args)
  (ghostd-e2e-log "FAIL: %s" (apply #'format fmt args))
  (kill-emacs 1))

(let* ((config (pop command-line-args-left))
       (file (pop command-line-args-left)))
  (load config nil t)
  (ghostd-e2e-log "Emacs %s, eglot from %s, config %s loaded"
                  emacs-version (locate-library "eglot") config)
  (find-file file)
  (goto-char (point-max))
  (ghostd-e2e-log "opened %s in %s" file major-mode)
  ;; eglot-ensure connects from post-command-hook, after the command that
  ;; opened the file; batch mode has no command loop, so run it here.
  (let ((eglot-sync-connect 60))
    (run-hooks 'post-command-hook))
  (let ((deadline (+ (float-time) 60)))
    (while (and (not (eglot-current-server)) (< (float-time) deadline))
      (accept-process-output nil 0.1)))
  (let ((server (eglot-current-server)))
    (unless server (ghostd-e2e-fail "eglot did not connect to ghostd"))
    (let ((info (ignore-errors (eglot--server-info server))))
      (ghostd-e2e-log "connected: %S, serverInfo %S" (eglot-project-nickname server) info)
      (unless (equal (plist-get info :name) "ghostd")
        (ghostd-e2e-fail "serverInfo.name is %S, expected \"ghostd\"" (plist-get info :name))))
    (unless (eglot--server-capable :inlineCompletionProvider)
      (ghostd-e2e-fail "ghostd did not announce inlineCompletionProvider"))
    ;; Inline completions: eglot has no ghost-text UI, so call the method.
    (let ((params (append (eglot--TextDocumentPositionParams) (list :context (list :triggerKind 1))))
          (deadline (+ (float-time) 90))
          (t0 (float-time))
          items)
      (while (and (not items) (< (float-time) deadline))
        (let ((reply (jsonrpc-request server :textDocument/inlineCompletion params :timeout 30)))
          (setq items (append (plist-get reply :items) nil))
          (unless items (sleep-for 0.5))))
      (unless items (ghostd-e2e-fail "no inline completion items within 90 s"))
      (ghostd-e2e-log "inlineCompletion: %d item(s) after %.0f ms, first %S"
                      (length items) (* 1000 (- (float-time) t0)) (plist-get (car items) :insertText)))
    ;; Completion items through eglot's own completion-at-point function.
    (let* ((capf (eglot-completion-at-point))
           (table (nth 2 capf))
           (t0 (float-time))
           (cands (and table (all-completions "" table))))
      (ghostd-e2e-log "completion-at-point: %d candidate(s) after %.0f ms, first %S"
                      (length cands) (* 1000 (- (float-time) t0)) (car cands))
      (unless cands (ghostd-e2e-fail "completion-at-point gave no candidates")))
    (eglot-shutdown server)
    (ghostd-e2e-log "PASS")
    (kill-emacs 0)))
