-- Drives the plugin like a user: types into a Python buffer key by key, waits
-- for the ghost-text extmark, accepts a word (<M-Right>), then the rest
-- (<Tab>), and checks the buffer. Exits 0 on success, 1 on failure.
local api = vim.api
local uv = vim.uv or vim.loop
local t0 = uv.hrtime()
local timeout_ms = tonumber(os.getenv('GHOSTD_E2E_TIMEOUT_MS') or '150000')

local function ms()
  return (uv.hrtime() - t0) / 1e6
end

local function log(fmt, ...)
  io.stdout:write(('[%7.0f ms] ' .. fmt .. '\n'):format(ms(), ...))
end

local ghostd = require('ghostd')

local function finish(code, fmt, ...)
  log(fmt, ...)
  for _, line in ipairs(ghostd.status_lines()) do
    log('%s', line)
  end
  vim.lsp.stop_client(vim.lsp.get_active_clients(), true)
  vim.defer_fn(function()
    vim.cmd(code == 0 and 'qall!' or ('cquit ' .. code))
  end, 100)
end

local function termcodes(s)
  return api.nvim_replace_termcodes(s, true, false, true)
end

-- Polls `cond` every 50 ms; calls `next` with its value, or fails after `limit_ms`.
local function wait_for(what, cond, limit_ms, next, on_tick)
  local started = ms()
  local timer = uv.new_timer()
  timer:start(50, 50, vim.schedule_wrap(function()
    if not timer:is_active() then
      return
    end
    local ok, value = pcall(cond)
    if ok and value then
      timer:stop()
      timer:close()
      next(value, ms() - started)
    elseif not ok then
      timer:stop()
      finish(1, 'FAIL: %s: %s', what, tostring(value))
    elseif ms() - started > limit_ms or ms() > timeout_ms then
      timer:stop()
      finish(1, 'FAIL: timed out waiting for %s', what)
    elseif on_tick then
      on_tick(ms() - started)
    end
  end))
end

local function buffer_text()
  return table.concat(api.nvim_buf_get_lines(0, 0, -1, false), '\n')
end

local function ghost_extmark()
  local marks = api.nvim_buf_get_extmarks(0, require('ghostd.suggestion').ns, 0, -1, { details = true })
  return marks[1]
end

-- Types `text` one key every `gap_ms` (as typed keys, so autocommands fire).
local function type_keys(text, gap_ms, done)
  local i = 0
  local timer = uv.new_timer()
  timer:start(0, gap_ms, vim.schedule_wrap(function()
    if not timer:is_active() then
      return
    end
    i = i + 1
    if i > #text then
      timer:stop()
      timer:close()
      done()
      return
    end
    local c = text:sub(i, i)
    api.nvim_feedkeys(c == '\n' and termcodes('<CR>') or c, 'nt', false)
  end))
end

vim.bo.autoindent = false
vim.bo.smartindent = false
vim.bo.indentexpr = ''
if os.getenv('GHOSTD_E2E_SERVER') then
  -- run_remote.sh: a shared TLS server, reached through `ghostd connect`.
  ghostd.setup({
    server = os.getenv('GHOSTD_E2E_SERVER'),
    token_file = os.getenv('GHOSTD_E2E_TOKEN_FILE'),
    ca_file = os.getenv('GHOSTD_E2E_CA_FILE'),
  })
else
  ghostd.setup({}) -- the documented setup: `ghostd` found on PATH
end
log('buffer %s, filetype %s', api.nvim_buf_get_name(0), vim.bo.filetype)

local typed = 'def fib(n):\n    if n < 2:\n        return n\n    return fib('

wait_for('the daemon to initialize', function()
  local s = ghostd.status()
  if s.model == 'failed' or s.model == 'stopped' then
    error('daemon ' .. s.model .. ': ' .. tostring(s.message))
  end
  return s.client_id and s.model ~= 'starting'
end, 30000, function(_, waited)
  log('daemon initialized in %.0f ms; typing', waited)
  api.nvim_feedkeys('G', 'nt', false)
  api.nvim_feedkeys('A', 'nt', false)
  type_keys(typed, 20, function()
    log('typed %d keys', #typed)
    local typed_at = ms()
    -- While the model still loads the daemon answers with no items: ask
    -- again with the manual trigger (<M-\>) every 2 s.
    local last_trigger = 0
    wait_for('the ghost-text extmark', function()
      local mark = ghost_extmark()
      return mark and ghostd.current() and ghostd.current().rest and mark
    end, 120000, function(mark)
      local cur = ghostd.current()
      log('ghost text after %.0f ms: %q (extmark row %d col %d)', ms() - typed_at, cur.rest, mark[2], mark[3])
      local before = buffer_text()
      local rest = cur.rest
      api.nvim_feedkeys(termcodes('<M-Right>'), 'mt', false)
      wait_for('accept-word', function()
        return buffer_text() ~= before and buffer_text()
      end, 5000, function(after_word)
        local word = after_word:sub(#before + 1)
        if before .. word ~= after_word or rest:sub(1, #word) ~= word then
          return finish(1, 'FAIL: accept-word inserted something else: %q', after_word)
        end
        log('accept-word inserted %q', word)
        local left = ghostd.current() and ghostd.current().rest
        if #word < #rest and left ~= rest:sub(#word + 1) then
          return finish(1, 'FAIL: after accept-word the ghost text is %q, expected %q', tostring(left), rest:sub(#word + 1))
        end
        if #word == #rest then
          return finish(0, 'PASS (the suggestion was one word): buffer ends with %q', after_word:sub(-40))
        end
        api.nvim_feedkeys(termcodes('<Tab>'), 'mt', false)
        wait_for('accept (Tab)', function()
          return buffer_text() ~= after_word and buffer_text()
        end, 5000, function(final)
          if final ~= before .. rest then
            return finish(1, 'FAIL: after Tab the buffer is %q, expected %q', final, before .. rest)
          end
          if ghost_extmark() then
            return finish(1, 'FAIL: the ghost text is still shown after accepting')
          end
          if api.nvim_get_mode().mode ~= 'i' then
            return finish(1, 'FAIL: left insert mode (mode %s)', api.nvim_get_mode().mode)
          end
          finish(0, 'PASS: accepted %q; buffer:\n%s', rest, final)
        end)
      end)
    end, function(waited)
      if waited - last_trigger > 2000 then
        last_trigger = waited
        api.nvim_feedkeys(termcodes('<M-\\>'), 'mt', false)
      end
    end)
  end)
end)
