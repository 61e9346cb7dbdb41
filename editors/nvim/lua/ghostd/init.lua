-- ghostd for Neovim: starts the ghostd language server through vim.lsp and
-- shows its inline completions as ghost text. See :help ghostd.
local compat = require('ghostd.compat')
local suggestion = require('ghostd.suggestion')
local api = vim.api

local M = {}

local defaults = {
  cmd = { 'ghostd' },
  -- A shared server ('tls://host:port', or 'tcp://127.0.0.1:port'): the
  -- plugin then runs `ghostd connect` (the first word of cmd is the ghostd
  -- executable), with the token from token_file or $GHOSTD_TOKEN.
  server = nil,
  token_file = nil,
  ca_file = nil, -- a private CA or self-signed certificate (PEM)
  -- Sent as initializationOptions (see docs/configuration.md): model,
  -- useDraft, maxTokens, contextBudget, deadlineMs, maxLines, ...
  init_options = {},
  root_dir = nil, -- a path or function(bufnr) -> path; the working directory by default
  filetypes = nil, -- nil: every file buffer; or a list such as { 'python', 'lua' }
  disabled_filetypes = { 'help', 'gitcommit', 'gitrebase', 'TelescopePrompt' },
  debounce_ms = 75,
  highlight = 'GhostdSuggestion',
  show_count = true,
  -- On 0.12 and later use vim.lsp.inline_completion (accept, dismiss, cycle;
  -- accept-word and accept-line need the plugin's renderer: native = false).
  native = nil,
  keymaps = {
    accept = '<Tab>',
    accept_word = '<M-Right>',
    accept_line = '<M-Down>',
    dismiss = '<C-]>',
    next = '<M-]>',
    prev = '<M-[>',
    trigger = '<M-\\>',
  },
}

local config = vim.deepcopy(defaults)
local client_id = nil
local enabled = true
local augroup = nil

local stats = {
  model = 'not started', -- not started | starting | running | loading | ready | failed | stopped
  progress = nil,
  message = nil,
  requests = 0,
  shown = 0,
  accepted = 0,
  errors = 0,
  last_error = nil,
  last_items = nil,
  last_latency_ms = nil,
}

local function use_native()
  if config.native == nil then
    return compat.nvim_0_12 and vim.lsp.inline_completion ~= nil
  end
  return config.native and vim.lsp.inline_completion ~= nil
end

local function get_client()
  if not client_id then
    return nil
  end
  local client = vim.lsp.get_client_by_id(client_id)
  if not client or compat.is_stopped(client) then
    return nil
  end
  return client
end

local function filetype_enabled(bufnr)
  local ft = api.nvim_buf_get_option(bufnr, 'filetype')
  for _, d in ipairs(config.disabled_filetypes or {}) do
    if d == ft then
      return false
    end
  end
  if config.filetypes == nil then
    return true
  end
  for _, f in ipairs(config.filetypes) do
    if f == ft then
      return true
    end
  end
  return false
end

local function attachable(bufnr)
  return api.nvim_buf_is_valid(bufnr)
    and api.nvim_buf_get_option(bufnr, 'buftype') == ''
    and api.nvim_buf_get_name(bufnr) ~= ''
    and filetype_enabled(bufnr)
end

local function buffer_enabled(bufnr)
  return enabled and attachable(bufnr) and vim.lsp.buf_is_attached(bufnr, client_id or -1)
end

local function client_for(bufnr)
  local client = get_client()
  if client and vim.lsp.buf_is_attached(bufnr, client.id) then
    return client
  end
  return nil
end

suggestion.bind({
  config = setmetatable({}, {
    __index = function(_, k)
      return config[k]
    end,
  }),
  client_for = client_for,
  enabled = buffer_enabled,
  stats = stats,
})

-- Handlers that record the daemon's model state for :GhostdStatus and then
-- do what Neovim does by default.
local function wrap(method, fn)
  local default = vim.lsp.handlers[method]
  return function(err, result, ctx, cfg)
    fn(err, result, ctx)
    if default then
      return default(err, result, ctx, cfg)
    end
  end
end

local handlers = {
  ['$/progress'] = wrap('$/progress', function(_, result)
    if type(result) ~= 'table' or result.token ~= 'ghostd/model-load' or type(result.value) ~= 'table' then
      return
    end
    local v = result.value
    if v.kind == 'end' then
      if v.message == 'model ready' then
        stats.model = 'ready'
      else
        stats.model = 'failed'
      end
      stats.progress = nil
      stats.message = v.message
    else
      stats.model = 'loading'
      stats.progress = v.percentage or stats.progress
      stats.message = v.message or stats.message
    end
  end),
  ['window/logMessage'] = wrap('window/logMessage', function(_, result)
    if type(result) ~= 'table' or type(result.message) ~= 'string' then
      return
    end
    if result.type == 1 and result.message:find('model', 1, true) then
      stats.model = 'failed'
      stats.message = result.message
    end
  end),
}

local function capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  caps.textDocument = caps.textDocument or {}
  caps.textDocument.inlineCompletion = caps.textDocument.inlineCompletion or { dynamicRegistration = false }
  caps.window = caps.window or {}
  caps.window.workDoneProgress = true
  return caps
end

local function root_dir(bufnr)
  if type(config.root_dir) == 'function' then
    return config.root_dir(bufnr)
  end
  return config.root_dir or vim.fn.getcwd()
end

-- The command the client starts: the daemon, or the bridge to a server.
local function command()
  if not config.server then
    return config.cmd
  end
  local cmd = { config.cmd[1], 'connect', config.server }
  if config.token_file then
    vim.list_extend(cmd, { '--token-file', vim.fn.expand(config.token_file) })
  end
  if config.ca_file then
    vim.list_extend(cmd, { '--ca-file', vim.fn.expand(config.ca_file) })
  end
  return cmd
end

local function client_config(bufnr)
  return {
    name = 'ghostd',
    cmd = command(),
    root_dir = root_dir(bufnr),
    init_options = config.init_options,
    capabilities = capabilities(),
    handlers = handlers,
    on_init = function()
      -- The daemon reports loading through $/progress only while it loads;
      -- a model that is already there shows up as the first completion.
      if stats.model == 'starting' then
        stats.model = 'running'
      end
    end,
    on_exit = function(code)
      stats.model = 'stopped'
      stats.message = 'ghostd exited with code ' .. tostring(code)
      client_id = nil
    end,
  }
end

-- Starts the daemon (once) and attaches it to `bufnr`.
function M.attach(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  if not attachable(bufnr) then
    return nil
  end
  if not get_client() then
    stats.model = 'starting'
    if compat.nvim_0_8 then
      client_id = vim.lsp.start(client_config(bufnr), {
        bufnr = bufnr,
        reuse_client = function(client)
          return client.name == 'ghostd'
        end,
      })
    else
      client_id = vim.lsp.start_client(client_config(bufnr))
    end
    if not client_id then
      stats.model = 'failed'
      stats.message = 'could not start ' .. table.concat(command(), ' ')
      return nil
    end
  end
  if not vim.lsp.buf_is_attached(bufnr, client_id) then
    vim.lsp.buf_attach_client(bufnr, client_id)
  end
  if use_native() then
    vim.lsp.inline_completion.enable(enabled, { bufnr = bufnr })
  end
  return client_id
end

-- Public actions (also what the keymaps call). Each returns true when it did
-- something, so a mapping can fall back to its key otherwise.
function M.accept()
  if use_native() then
    return vim.lsp.inline_completion.get() == true
  end
  return suggestion.accept('all')
end

function M.accept_word()
  return not use_native() and suggestion.accept('word')
end

function M.accept_line()
  return not use_native() and suggestion.accept('line')
end

function M.dismiss()
  if use_native() then
    return false
  end
  return suggestion.dismiss()
end

function M.next()
  if use_native() then
    local ic = vim.lsp.inline_completion
    ;(ic.select or ic.jump)({ count = 1 })
  else
    suggestion.cycle(1)
  end
  return true
end

function M.prev()
  if use_native() then
    local ic = vim.lsp.inline_completion
    ;(ic.select or ic.jump)({ count = -1 })
  else
    suggestion.cycle(-1)
  end
  return true
end

function M.trigger()
  if use_native() then
    vim.lsp.inline_completion.get()
  else
    suggestion.trigger()
  end
  return true
end

function M.visible()
  return not use_native() and suggestion.visible()
end

-- The suggestion on screen ({ text, rest, index, count }) or nil.
function M.current()
  return suggestion.current()
end

function M.enable(on)
  enabled = on ~= false
  if not enabled then
    suggestion.on_leave()
  end
  if use_native() then
    vim.lsp.inline_completion.enable(enabled)
  end
end

function M.toggle()
  M.enable(not enabled)
end

function M.restart()
  suggestion.on_leave()
  local client = get_client()
  local bufs = {}
  for _, b in ipairs(api.nvim_list_bufs()) do
    if client and vim.lsp.buf_is_attached(b, client.id) then
      bufs[#bufs + 1] = b
    end
  end
  if client then
    compat.stop(client, true)
  end
  client_id = nil
  vim.defer_fn(function()
    for _, b in ipairs(bufs) do
      M.attach(b)
    end
    if #bufs == 0 then
      M.attach(api.nvim_get_current_buf())
    end
  end, 200)
end

-- A copy of the state :GhostdStatus prints.
function M.status()
  local s = vim.deepcopy(stats)
  s.client_id = get_client() and client_id or nil
  s.enabled = enabled
  s.native = use_native()
  s.cmd = command()
  return s
end

local function status_lines()
  local s = M.status()
  local model = s.model
  if s.model == 'loading' and s.progress then
    model = ('loading (%d%%)'):format(s.progress)
  end
  local lines = {
    ('ghostd: %s, completions %s%s'):format(
      s.client_id and ('client %d'):format(s.client_id) or 'not running',
      s.enabled and 'on' or 'off',
      s.native and ' (native vim.lsp.inline_completion)' or ''
    ),
    ('  command: %s'):format(table.concat(s.cmd, ' ')),
    ('  model: %s%s'):format(model, s.message and (' - ' .. s.message) or ''),
    ('  requests: %d, shown: %d, accepted: %d, errors: %d'):format(s.requests, s.shown, s.accepted, s.errors),
  }
  if s.last_latency_ms then
    lines[#lines + 1] = ('  last completion: %.1f ms, %d item(s)'):format(s.last_latency_ms, s.last_items or 0)
  end
  if s.last_error then
    lines[#lines + 1] = '  last error: ' .. s.last_error
  end
  return lines
end

M.status_lines = status_lines

local function map(lhs, fn, key_fallback)
  if not lhs or lhs == '' then
    return
  end
  vim.keymap.set('i', lhs, function()
    if not fn() and key_fallback then
      api.nvim_feedkeys(api.nvim_replace_termcodes(lhs, true, false, true), 'n', false)
    end
  end, { silent = true, desc = 'ghostd' })
end

local function set_keymaps()
  local k = config.keymaps or {}
  map(k.accept, M.accept, true)
  map(k.accept_word, M.accept_word, true)
  map(k.accept_line, M.accept_line, true)
  map(k.dismiss, M.dismiss, true)
  map(k.next, M.next, false)
  map(k.prev, M.prev, false)
  map(k.trigger, M.trigger, false)
end

local function set_autocmds()
  augroup = api.nvim_create_augroup('ghostd', { clear = true })
  api.nvim_create_autocmd({ 'FileType', 'BufEnter' }, {
    group = augroup,
    callback = function(ev)
      M.attach(ev.buf)
    end,
  })
  if use_native() then
    return
  end
  api.nvim_create_autocmd({ 'TextChangedI', 'CursorMovedI' }, {
    group = augroup,
    callback = function()
      suggestion.on_edit()
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = augroup,
    callback = function()
      suggestion.on_leave()
    end,
  })
end

local function set_commands()
  api.nvim_create_user_command('GhostdStatus', function()
    print(table.concat(status_lines(), '\n'))
  end, { desc = 'ghostd: daemon, model and completion status' })
  api.nvim_create_user_command('GhostdEnable', function()
    M.enable(true)
  end, {})
  api.nvim_create_user_command('GhostdDisable', function()
    M.enable(false)
  end, {})
  api.nvim_create_user_command('GhostdToggle', M.toggle, {})
  api.nvim_create_user_command('GhostdRestart', M.restart, {})
end

function M.setup(opts)
  config = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  if type(config.cmd) == 'string' then
    config.cmd = { config.cmd }
  end
  vim.cmd('highlight default link GhostdSuggestion Comment')
  set_commands()
  set_autocmds()
  set_keymaps()
  for _, b in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(b) then
      M.attach(b)
    end
  end
end

return M
