/**
 * The one-round-trip script of a Check (sent once, then run by EVALSHA).
 * Every key carries the same hash tag, so the script is legal on Redis
 * Cluster (all keys in one slot) and is declared in KEYS.
 *
 * KEYS: [1..nb]            block keys of the request's subjects (checked in order)
 *       then per counter op 3 keys: counter (sorted set), offense (int), block (string)
 * ARGV: [1] nonce (unique per call, makes sorted-set members unique)
 *       [2] nb  [3] number of ops
 *       then per op 7 values: increment, windowMs, threshold, ttls (comma list, ms),
 *       memoryMs, rule name, record JSON prefix ('{"kind":...,"reason":...,' without the time fields)
 * Returns: [blocked record JSON or '', created record JSON...]
 *
 * Time is the server's (TIME), so replicas with skewed clocks share one window.
 * Scripts replicate by effects (Redis ≥ 5 default, 7 only), so TIME is fine before writes.
 */
export const EVALUATE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nb = tonumber(ARGV[2])
local nops = tonumber(ARGV[3])
local out = {''}
for i = 1, nb do
  local v = redis.call('GET', KEYS[i])
  if v then out[1] = v break end
end
local a = 4
for o = 0, nops - 1 do
  local k = nb + 3 * o
  local ck, okey, bk = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local inc = tonumber(ARGV[a])
  local win = tonumber(ARGV[a + 1])
  local thr = tonumber(ARGV[a + 2])
  local ttls = ARGV[a + 3]
  local mem = tonumber(ARGV[a + 4])
  local rule = ARGV[a + 5]
  local head = ARGV[a + 6]
  a = a + 7
  -- An already blocked subject is not counted: its block stands, and counting would only grow memory.
  if redis.call('EXISTS', bk) == 0 then
    redis.call('ZREMRANGEBYSCORE', ck, '-inf', now - win)
    for j = 1, inc do
      redis.call('ZADD', ck, now, ARGV[1] .. ':' .. o .. ':' .. j)
    end
    local c = redis.call('ZCARD', ck)
    if c >= thr then
      local level = redis.call('INCR', okey)
      redis.call('PEXPIRE', okey, mem)
      local list = {}
      for x in string.gmatch(ttls, '[^,]+') do list[#list + 1] = x end
      local ttl = tonumber(list[math.min(level, #list)])
      local rec = head .. '"createdAt":' .. now .. ',"ttlMs":' .. ttl .. ',"expiresAt":' .. (now + ttl) ..
        ',"rule":' .. cjson.encode(rule) .. ',"level":' .. level .. '}'
      redis.call('SET', bk, rec, 'PX', ttl)
      redis.call('DEL', ck)
      out[#out + 1] = rec
    else
      -- The log never holds more than threshold-1 entries: crossing it blocks and clears.
      redis.call('PEXPIRE', ck, win)
    end
  end
end
return out
`;
