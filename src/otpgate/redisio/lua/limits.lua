-- The limiter's batch (otpgate/ratelimit/cells.py, whose `plan` this is in Lua): ARGV[1]
-- is msgpack {now, {{kind, cell, ...}, ...}}; every cell lives under the limits tag
-- (KEYS[1]) as "<tag>:c:<cell>" = "<value> <until>": empty once the domain clock passes
-- `until`, and dropped by Redis some time after (a relative expiry, PX, so that the
-- domain clock and the server's need not agree). Nothing is written when an enforced
-- operation refuses. Answers one {allowed, retry_after, value} per operation, numbers as
-- strings (Lua would truncate them to integers).
local args = cmsgpack.unpack(ARGV[1])
local now, ops = tonumber(args[1]), args[2]
local seen, out, order, writes, refused = {}, {}, {}, {}, false

-- every cell the batch names, in one MGET
local cells, names = {}, {}
for _, op in ipairs(ops) do
  if seen[op[2]] == nil then
    seen[op[2]] = false
    cells[#cells + 1] = op[2]
    names[#names + 1] = key('c', op[2])
  end
end
for i, raw in ipairs(redis.call('MGET', unpack(names))) do
  if raw then
    local value, untill = string.match(raw, '^(%S+) (%S+)$')
    if value and tonumber(untill) > now then seen[cells[i]] = tonumber(value) end
  end
end

local function read(cell)
  return seen[cell]
end

local function write(cell, value, untill)
  seen[cell] = value
  if writes[cell] == nil then order[#order + 1] = cell end
  writes[cell] = {value, untill}
end

local function num(x)
  return string.format('%.17g', x)
end

for i, op in ipairs(ops) do
  local kind, cell = op[1], op[2]
  local old = read(cell)
  if kind == 'rate' then
    local limit, window, enforce = tonumber(op[3]), tonumber(op[4]), op[5] == 1
    local base = old or now
    if base < now then base = now end
    local tat = base + window / limit
    local allow_at = tat - window
    if now < allow_at then
      out[i] = {0, num(allow_at - now), '0'}
      if enforce then refused = true end
    else
      write(cell, tat, tat)
      out[i] = {1, '0', '0'}
    end
  elseif kind == 'count' then
    local value = (old or 0) + tonumber(op[4])
    write(cell, value, now + tonumber(op[3]))
    out[i] = {1, '0', num(value)}
  elseif kind == 'peek' then
    out[i] = {1, '0', num(old or 0)}
  elseif kind == 'spend' then
    local cost, cap, ttl, enforce = tonumber(op[3]), tonumber(op[4]), tonumber(op[5]), op[6] == 1
    local total = (old or 0) + cost
    if total > cap and enforce then
      out[i] = {0, num(ttl), num(old or 0)}
      refused = true
    else
      write(cell, total, now + ttl)
      out[i] = {total > cap and 0 or 1, total > cap and num(ttl) or '0', num(total)}
    end
  elseif kind == 'put' then
    write(cell, tonumber(op[3]), now + tonumber(op[4]))
    out[i] = {1, '0', num(tonumber(op[3]))}
  else -- flag
    local untill, enforce = old or 0, op[3] == 1
    if untill > now then
      out[i] = {0, num(untill - now), num(untill)}
      if enforce then refused = true end
    else
      out[i] = {1, '0', num(untill)}
    end
  end
end

if not refused then
  for _, cell in ipairs(order) do
    local w = writes[cell]
    local ms = math.ceil((w[2] - now) * 1000)
    if ms > 0 then
      redis.call('SET', key('c', cell), num(w[1]) .. ' ' .. num(w[2]), 'PX', ms)
    else
      redis.call('DEL', key('c', cell))
    end
  end
end
return out
