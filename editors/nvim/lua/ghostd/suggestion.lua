-- Ghost text for Neovim 0.7 to 0.11: asks the server for
-- textDocument/inlineCompletion, draws the answer as extmarks (virt_text for
-- the rest of the cursor line, virt_lines below) and applies it on accept.
--
-- One suggestion is shown at a time, in the current window. It stays valid
-- while the text typed since its anchor is a prefix of the suggestion, so
-- typing through it (or accepting a word or a line) keeps the rest on screen
-- without a new request.
local compat = require('ghostd.compat')
local api = vim.api

local M = {}

M.ns = api.nvim_create_namespace('ghostd')

local kTriggerInvoked = 1
local kTriggerAutomatic = 2

-- The shown suggestion: bufnr, anchor row/col (0-based bytes), items, index,
-- tail (bytes after the request cursor that the item replaces), extmark id.
local shown = nil
-- The request in flight: client, id, bufnr, tick, row, col, started (hrtime).
local inflight = nil
local timer = nil
-- Set by init.lua: config, the function that returns the attached client for a
-- buffer, and the stats table that :GhostdStatus prints.
local host = nil

function M.bind(h)
  host = h
end

local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

local function clear_extmark()
  if shown and shown.extmark and api.nvim_buf_is_valid(shown.bufnr) then
    pcall(api.nvim_buf_del_extmark, shown.bufnr, M.ns, shown.extmark)
  end
  if shown then
    shown.extmark = nil
  end
end

function M.clear()
  clear_extmark()
  shown = nil
end

function M.cancel()
  if timer then
    timer:stop()
  end
  if inflight then
    pcall(compat.cancel_request, inflight.client, inflight.id)
    inflight = nil
  end
end

-- Buffer text from (srow, scol) to (erow, ecol), lines joined by "\n"; nil when
-- the end lies before the start.
local function text_between(bufnr, srow, scol, erow, ecol)
  if erow < srow or (erow == srow and ecol < scol) then
    return nil
  end
  local lines = api.nvim_buf_get_lines(bufnr, srow, erow + 1, false)
  if #lines == 0 then
    return nil
  end
  if #lines == 1 then
    return lines[1]:sub(scol + 1, ecol)
  end
  lines[1] = lines[1]:sub(scol + 1)
  lines[#lines] = lines[#lines]:sub(1, ecol)
  return table.concat(lines, '\n')
end

-- What is left to show of the current item at the cursor, or nil when the
-- text typed since the anchor no longer matches it.
local function remainder()
  if not shown or shown.bufnr ~= api.nvim_get_current_buf() then
    return nil
  end
  local item = shown.items[shown.index]
  local row, col = cursor()
  local typed = text_between(shown.bufnr, shown.row, shown.col, row, col)
  if typed == nil or item.text:sub(1, #typed) ~= typed then
    return nil
  end
  local rest = item.text:sub(#typed + 1)
  if rest == '' then
    return nil
  end
  return rest, row, col
end

local function split_lines(text)
  return vim.split(text, '\n', { plain = true })
end

local function render()
  clear_extmark()
  local rest, row, col = remainder()
  if not rest then
    shown = nil
    return false
  end
  local hl = host.config.highlight
  local lines = split_lines(rest)
  local line = api.nvim_buf_get_lines(shown.bufnr, row, row + 1, false)[1] or ''
  local opts = { hl_mode = 'combine' }
  if lines[1] ~= '' then
    if compat.nvim_0_10 then
      opts.virt_text = { { lines[1], hl } }
      opts.virt_text_pos = 'inline'
    else
      -- Before 0.10 there is no inline virtual text: draw the suggestion over
      -- the rest of the line and redraw that rest after it.
      local after = line:sub(col + 1)
      if row == shown.row then
        after = line:sub(col + 1 + shown.tail)
      end
      opts.virt_text = { { lines[1], hl }, { after, 'Normal' } }
      opts.virt_text_win_col = vim.fn.virtcol('.') - 1
    end
  end
  if #lines > 1 then
    local virt_lines = {}
    for i = 2, #lines do
      virt_lines[#virt_lines + 1] = { { lines[i], hl } }
    end
    opts.virt_lines = virt_lines
  end
  if #shown.items > 1 and host.config.show_count then
    opts.virt_text = opts.virt_text or {}
    table.insert(opts.virt_text, { (' (%d/%d)'):format(shown.index, #shown.items), 'Comment' })
  end
  local ok, id = pcall(api.nvim_buf_set_extmark, shown.bufnr, M.ns, row, col, opts)
  shown.extmark = ok and id or nil
  return ok
end

function M.visible()
  return shown ~= nil and shown.extmark ~= nil and remainder() ~= nil
end

-- The current suggestion, for tests and statuslines: { text, rest, index, count }.
function M.current()
  if not shown then
    return nil
  end
  local rest = remainder()
  return { text = shown.items[shown.index].text, rest = rest, index = shown.index, count = #shown.items }
end

local function normalize(result, client, bufnr, row, col)
  local raw = result
  if type(result) == 'table' and result.items then
    raw = result.items
  end
  if type(raw) ~= 'table' then
    return {}
  end
  local enc = client.offset_encoding or 'utf-16'
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local items = {}
  for _, it in ipairs(raw) do
    local text = it.insertText
    if type(text) == 'table' then
      text = text.value -- a snippet: shown and inserted as plain text
    end
    if type(text) == 'string' and text ~= '' then
      local srow, scol, tail = row, col, 0
      local r = it.range
      if type(r) == 'table' and r.start and r['end'] and r.start.line == row and r['end'].line == row then
        scol = compat.byte_from_char(line, r.start.character, enc)
        local ecol = compat.byte_from_char(line, r['end'].character, enc)
        tail = math.max(0, ecol - col)
        if scol > col then
          scol = col
        end
      end
      -- The item replaces [scol, col + tail); text before the cursor in that
      -- range must already match, as typed-through text does.
      local prefix = line:sub(scol + 1, col)
      if text:sub(1, #prefix) == prefix then
        items[#items + 1] = { text = text, row = srow, col = scol, tail = tail }
      end
    end
  end
  return items
end

local function show(bufnr, items, index)
  M.clear()
  local first = items[index]
  shown = { bufnr = bufnr, row = first.row, col = first.col, tail = first.tail, items = items, index = index }
  if render() then
    host.stats.shown = host.stats.shown + 1
    return true
  end
  return false
end

local function in_insert_mode()
  return api.nvim_get_mode().mode:sub(1, 1) == 'i'
end

-- Sends one inlineCompletion request for the cursor; `merge` keeps the items
-- shown now and adds the new ones (cycling asks for more).
function M.request(trigger_kind, merge)
  M.cancel()
  local bufnr = api.nvim_get_current_buf()
  local client = host.client_for(bufnr)
  if not client then
    return
  end
  local row, col = cursor()
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = row, character = compat.char_from_byte(line, col, client.offset_encoding or 'utf-16') },
    context = { triggerKind = trigger_kind or kTriggerAutomatic },
  }
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local started = compat.uv.hrtime()
  local req = { client = client, bufnr = bufnr, tick = tick, row = row, col = col, started = started }
  local ok, id = compat.request(client, 'textDocument/inlineCompletion', params, function(err, result)
    if inflight ~= req then
      return -- superseded or cancelled
    end
    inflight = nil
    local ms = (compat.uv.hrtime() - started) / 1e6
    host.stats.last_latency_ms = ms
    if err then
      host.stats.errors = host.stats.errors + 1
      host.stats.last_error = err.message or vim.inspect(err)
      return
    end
    if api.nvim_get_current_buf() ~= bufnr or api.nvim_buf_get_changedtick(bufnr) ~= tick or not in_insert_mode() then
      return
    end
    local r, c = cursor()
    if r ~= row or c ~= col then
      return
    end
    local items = normalize(result, client, bufnr, row, col)
    host.stats.last_items = #items
    if #items > 0 and (host.stats.model == 'running' or host.stats.model == 'loading') then
      host.stats.model = 'ready'
    end
    if merge and shown and shown.bufnr == bufnr then
      local have, merged = {}, {}
      for _, it in ipairs(shown.items) do
        have[it.text] = true
        merged[#merged + 1] = it
      end
      local first_new = nil
      for _, it in ipairs(items) do
        if not have[it.text] then
          have[it.text] = true
          merged[#merged + 1] = it
          first_new = first_new or #merged
        end
      end
      show(bufnr, merged, first_new or (shown.index % #merged) + 1)
    elseif #items > 0 then
      show(bufnr, items, 1)
    end
  end, bufnr)
  if ok and id then
    req.id = id
    inflight = req
    host.stats.requests = host.stats.requests + 1
  end
end

-- Debounced automatic trigger, called on TextChangedI and CursorMovedI.
local last_seen = nil
function M.on_edit()
  local bufnr = api.nvim_get_current_buf()
  local row, col = cursor()
  local key = table.concat({ bufnr, api.nvim_buf_get_changedtick(bufnr), row, col }, ':')
  if key == last_seen then
    return -- CursorMovedI after TextChangedI for the same keystroke
  end
  last_seen = key
  if shown and render() then
    return -- typed through the suggestion: keep showing the rest
  end
  M.clear()
  M.cancel()
  if not host.enabled(bufnr) then
    return
  end
  timer = timer or compat.uv.new_timer()
  timer:stop()
  timer:start(
    host.config.debounce_ms,
    0,
    vim.schedule_wrap(function()
      if api.nvim_get_current_buf() == bufnr and in_insert_mode() then
        M.request(kTriggerAutomatic, false)
      end
    end)
  )
end

function M.on_leave()
  last_seen = nil
  M.cancel()
  M.clear()
end

-- The part of `rest` that one accept-word takes: leading blanks plus a word,
-- or a run of punctuation, or a line break with the next line's indentation.
local function first_word(rest)
  return rest:match('^\n[ \t]*') or rest:match('^[ \t]*[%w_]+') or rest:match('^[ \t]*[^%w_%s]+') or rest:match('^%s+')
    or rest
end

local function first_line(rest)
  if rest:sub(1, 1) == '\n' then
    return '\n' .. (rest:sub(2):match('^[^\n]*'))
  end
  return rest:match('^[^\n]*')
end

-- Inserts all, a word or a line of the suggestion at the cursor. Returns false
-- when no suggestion is shown (the keymap then falls back to its key).
function M.accept(kind)
  local rest, row, col = remainder()
  if not rest or not shown.extmark then
    return false
  end
  local part = rest
  if kind == 'word' then
    part = first_word(rest)
  elseif kind == 'line' then
    part = first_line(rest)
  end
  local whole = part == rest
  local bufnr = shown.bufnr
  local del = 0
  if whole and row == shown.row then
    local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
    del = math.min(shown.tail, #line - col)
  end
  local lines = split_lines(part)
  clear_extmark()
  api.nvim_buf_set_text(bufnr, row, col, row, col + del, lines)
  local end_row = row + #lines - 1
  local end_col = (#lines == 1 and col or 0) + #lines[#lines]
  api.nvim_win_set_cursor(0, { end_row + 1, end_col })
  if whole then
    M.clear()
    host.stats.accepted = host.stats.accepted + 1
  else
    render() -- the rest stays; on_edit sees the change and keeps it
  end
  return true
end

function M.dismiss()
  M.cancel()
  local had = shown ~= nil
  M.clear()
  return had
end

-- Shows the next (or previous) item; with one item, asks the server for more.
function M.cycle(step)
  if shown and #shown.items > 1 and remainder() then
    shown.index = (shown.index - 1 + step) % #shown.items + 1
    render()
  else
    M.request(kTriggerInvoked, true)
  end
end

function M.trigger()
  M.request(kTriggerInvoked, false)
end

return M
