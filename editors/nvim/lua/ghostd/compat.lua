-- Shims over the Neovim versions the plugin supports (0.7 and later), and the
-- position arithmetic LSP needs (UTF-16/UTF-32 code units <-> bytes), written
-- here once because vim.str_utfindex changed its signature in 0.11.
local M = {}

M.uv = vim.uv or vim.loop

local function has(feature)
  return vim.fn.has(feature) == 1
end

M.nvim_0_8 = has('nvim-0.8')
M.nvim_0_10 = has('nvim-0.10')
M.nvim_0_11 = has('nvim-0.11')
M.nvim_0_12 = has('nvim-0.12')

-- Client methods became colon-called in 0.11 (the dot form is deprecated there).
function M.request(client, method, params, handler, bufnr)
  if M.nvim_0_11 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

function M.cancel_request(client, id)
  if M.nvim_0_11 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

function M.notify(client, method, params)
  if M.nvim_0_11 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.stop(client, force)
  if M.nvim_0_11 then
    return client:stop(force)
  end
  return client.stop(force)
end

function M.is_stopped(client)
  if M.nvim_0_11 then
    return client:is_stopped()
  end
  return client.is_stopped()
end

-- Length in code units of one UTF-8 sequence starting with byte b.
local function seq_len(b)
  if b < 0x80 then
    return 1
  elseif b >= 0xF0 then
    return 4
  elseif b >= 0xE0 then
    return 3
  elseif b >= 0xC0 then
    return 2
  end
  return 1 -- a stray continuation byte counts as one unit
end

local function units(nbytes, encoding)
  if encoding == 'utf-16' and nbytes == 4 then
    return 2
  end
  return 1
end

-- Byte offset (0-based) in `line` -> LSP character offset in `encoding`.
function M.char_from_byte(line, byte, encoding)
  if encoding == 'utf-8' then
    return byte
  end
  local i, n = 1, 0
  while i <= byte and i <= #line do
    local len = seq_len(line:byte(i))
    n = n + units(len, encoding)
    i = i + len
  end
  return n
end

-- LSP character offset in `encoding` -> byte offset (0-based), clamped to the line.
function M.byte_from_char(line, char, encoding)
  if encoding == 'utf-8' then
    return math.min(char, #line)
  end
  local i, n = 1, 0
  while n < char and i <= #line do
    local len = seq_len(line:byte(i))
    n = n + units(len, encoding)
    i = i + len
  end
  return math.min(i - 1, #line)
end

return M
