-- What waits in each declared subscription of one shard.
-- ARGV: 1 now, 2 group
-- Returns {name, depth, due, since when the oldest due one is due ('' none), ...}.
local now = tonumber(ARGV[1])
local out = {}
for _, name in ipairs(redis.call('HKEYS', key('subs'))) do
  if name ~= '~v' then
    local stream = key('q', name)
    local leases, retries = stream .. ':lease', stream .. ':retry'
    local length, pending, last = redis.call('XLEN', stream), 0, '0-0'
    local groups = redis.pcall('XINFO', 'GROUPS', stream)
    if type(groups) == 'table' and not groups.err then
      for _, g in ipairs(groups) do
        local info = {}
        for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
        if info['name'] == ARGV[2] then pending, last = info['pending'], info['last-delivered-id'] end
      end
    end
    local due = length - pending + redis.call('ZCOUNT', retries, '-inf', ARGV[1])
                + redis.call('ZCOUNT', leases, '-inf', ARGV[1])
    local oldest, since = nil, ''
    if length > pending then
      local first = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', 1)[1]
      if first then
        for i = 1, #first[2], 2 do
          if first[2][i] == 't' then oldest, since = tonumber(first[2][i + 1]), first[2][i + 1] end
        end
      end
    end
    for _, z in ipairs({retries, leases}) do
      local head = redis.call('ZRANGEBYSCORE', z, '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, 1)
      if head[2] and (not oldest or tonumber(head[2]) < oldest) then
        oldest, since = tonumber(head[2]), head[2]
      end
    end
    table.insert(out, name)
    table.insert(out, length + redis.call('ZCARD', retries))
    table.insert(out, due)
    table.insert(out, since)
  end
end
return out
