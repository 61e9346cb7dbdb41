-- Position arithmetic of lua/ghostd/compat.lua (bytes <-> UTF-16/UTF-32
-- code units) and that :help ghostd resolves. Exits 0 on success.
local c = require('ghostd.compat')
local failed = 0
local function check(got, want, what)
  if got ~= want then
    io.stdout:write(('FAIL %s: got %s, want %s\n'):format(what, tostring(got), tostring(want)))
    failed = failed + 1
  end
end
local s = 'a\195\169\240\159\152\128b' -- a, e-acute (2 bytes), an emoji (4 bytes), b
local cases = {
  -- byte offset, utf-16, utf-32
  { 0, 0, 0 }, { 1, 1, 1 }, { 3, 2, 2 }, { 7, 4, 3 }, { 8, 5, 4 },
}
for _, k in ipairs(cases) do
  check(c.char_from_byte(s, k[1], 'utf-16'), k[2], 'utf-16 of byte ' .. k[1])
  check(c.char_from_byte(s, k[1], 'utf-32'), k[3], 'utf-32 of byte ' .. k[1])
  check(c.char_from_byte(s, k[1], 'utf-8'), k[1], 'utf-8 of byte ' .. k[1])
  check(c.byte_from_char(s, k[2], 'utf-16'), k[1], 'byte of utf-16 ' .. k[2])
  check(c.byte_from_char(s, k[3], 'utf-32'), k[1], 'byte of utf-32 ' .. k[3])
end
check(c.byte_from_char(s, 99, 'utf-16'), #s, 'clamped to the line')
local ok = pcall(vim.cmd, 'help ghostd-keys')
check(ok and vim.fn.expand('%:t'), 'ghostd.txt', ':help ghostd-keys')
io.stdout:write(failed == 0 and 'PASS\n' or ('%d failure(s)\n'):format(failed))
vim.cmd(failed == 0 and 'qall!' or 'cquit 1')
