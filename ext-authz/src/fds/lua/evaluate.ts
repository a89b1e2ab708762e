/**
 * The one-round-trip script of a Check (sent once, then run by EVALSHA).
 * Every key carries the same hash tag, so the script is legal on Redis
 * Cluster (all keys in one slot) and is declared in KEYS.
 *
 * KEYS: [1..nb]            block keys of the request's subjects (checked in order)
 *       then per counter op 3 keys: counter (sorted set), offense (int), block (string)
 *       then one key per claim (single-use proof jti)
 * ARGV: [1] nonce (unique per call, makes sorted-set members unique)
 *       [2] nb  [3] number of ops  [4] number of claims
 *       then per op 8 values: increment, windowMs, threshold, ttls (comma list, ms),
 *       memoryMs, rule name, record JSON prefix ('{"kind":...,"reason":...,' without the time fields),
 *       when ('' always, 'f' only when no claim was replayed, 'r' only when one was)
 *       then per claim 2 values: expiresAt (epoch ms), minimum TTL (ms)
 *       then (optional) the number of watches, and per watch 2 values: expected version, idle TTL (ms)
 * Returns: [blocked record JSON or '', '1' when a claim was replayed else '', created record JSON...]
 *          and, when the call has watches, a last element: one letter per watch
 *          (l live, c changed version, g gone)
 *
 * Watches (sessions of the oidc capability, KEYS after the claims, one hash
 * each): the session must still exist with the version the replica cached;
 * its idle TTL slides in this same call, so a Check with a session costs no
 * second round trip. A watch never blocks, counts or claims anything.
 *
 * Claims run after the block checks and before the counters: a blocked
 * subject burns no jti, and a replay is counted in this same call. All claim
 * keys are checked before any is set, so a replayed claim burns none of the
 * others. The TTL is `expiresAt - now` by Redis's clock, never below the
 * minimum (the verifier's clock skew), so a skewed replica cannot make an
 * entry that expires before the proof does, nor a zero/negative TTL.
 *
 * Time is the server's (TIME), so replicas with skewed clocks share one window.
 * Scripts replicate by effects (Redis ≥ 5 default, 7 only), so TIME is fine before writes.
 */
export const EVALUATE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nb = tonumber(ARGV[2])
local nops = tonumber(ARGV[3])
local nclaims = tonumber(ARGV[4])
local out = {'', ''}
for i = 1, nb do
  local v = redis.call('GET', KEYS[i])
  if v then out[1] = v break end
end
local replayed = false
if nclaims > 0 and out[1] == '' then
  local k0 = nb + 3 * nops
  for c = 1, nclaims do
    if redis.call('EXISTS', KEYS[k0 + c]) == 1 then replayed = true break end
  end
  if replayed then
    out[2] = '1'
  else
    local ca = 5 + 8 * nops
    for c = 1, nclaims do
      local ttl = math.max(tonumber(ARGV[ca]) - now, tonumber(ARGV[ca + 1]))
      redis.call('SET', KEYS[k0 + c], '1', 'PX', ttl, 'NX')
      ca = ca + 2
    end
  end
end
local a = 5
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
  local when = ARGV[a + 7]
  a = a + 8
  -- An already blocked subject is not counted: its block stands, and counting would only grow memory.
  if (when == '' or (when == 'r') == replayed) and redis.call('EXISTS', bk) == 0 then
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
-- Watches (oidc sessions): checked and touched whatever the other parts found.
local wa = 5 + 8 * nops + 2 * nclaims
local nw = tonumber(ARGV[wa] or '0')
if nw > 0 then
  local k0 = nb + 3 * nops + nclaims
  local states = ''
  for w = 1, nw do
    local key = KEYS[k0 + w]
    local v = redis.call('HGET', key, 'v')
    if not v then
      states = states .. 'g'
    else
      redis.call('PEXPIRE', key, ARGV[wa + 2 * w])
      states = states .. (v == ARGV[wa + 2 * w - 1] and 'l' or 'c')
    end
  end
  out[#out + 1] = states
end
return out
`;

/** Compare-and-rewrite of a session (a refresh): KEYS[1] session; ARGV version expected, new version, sealed, absolute expiry, TTL ms. */
export const SESSION_REPLACE_LUA = `
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3], 'a', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`;

/** Reads a session and slides its idle TTL: KEYS[1] session; ARGV TTL ms. Returns {version, sealed, absolute} or nil. */
export const SESSION_READ_LUA = `
local r = redis.call('HMGET', KEYS[1], 'v', 'd', 'a')
if not r[1] then return nil end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return r
`;

/** Lock holder operations: KEYS[1] lock; ARGV token [, TTL ms]. Renew extends, release deletes, only for the holder. */
export const LOCK_RENEW_LUA = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`;
export const LOCK_RELEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`;
