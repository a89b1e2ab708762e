/**
 * The one-round-trip script of a Check (sent once, then run by EVALSHA),
 * over a list of ops. Every key is declared in KEYS. On a Redis Cluster one
 * call may only touch one slot: the store sends one call per slot group of
 * ops (script-ops.ts), each with this same script.
 *
 * One call runs one or more Checks, one after the other, as if each had been its own call sent in that order
 * (the store batches the Checks that meet in one event-loop turn: one command instead of one per Check). A
 * Check whose ops fail gets an error reply of its own (what it wrote before the error stays, as in a call of
 * its own); the others are answered.
 * KEYS: every Check's ops' keys, Check by Check, in op order (each op type takes a fixed number, below).
 * ARGV: [1] number of Checks, then per Check:
 *       its nonce (unique per Check, makes sorted-set members unique), its shape (one letter per op, in op
 *       order), then per op its values (a fixed number per type, below). Few, packed values, because every
 *       value costs the client a frame of its own, per Check.
 * Op types (letter; keys; values):
 *   check   (c; block key; none)                is this subject blocked? The first blocked one is answered.
 *   claim   (j; claim key; expiresAt epoch ms, minimum TTL ms)
 *                                               single-use id: set if absent; taken = a replay.
 *   count   (n; counter zset, offense int, block key;
 *            "windowMs threshold memoryMs rule ttls" (the rule's constants; ttls a comma list, ms),
 *            "increment when tag shadow" (when: '-' always, 'f' only without a replay, 'r' only with one; tag:
 *            the member tag, unique in the Check; shadow '1': a shadowed route or stage, whose counter key is
 *            its own, and crossing the threshold returns the would-be record with "shadow":true, blocks
 *            nothing, raises no offense level and starts the window over),
 *            record JSON prefix)
 *   watch   (w; session hash; expected version, idle TTL ms)
 *                                               an oidc session: still there with the version the replica cached?
 *                                               Its idle TTL slides in this same call. Never blocks, counts or claims.
 *   retract (r; counter zset; member tag, increment)
 *                                               removes what a `count` of an earlier call added (see script-ops.ts).
 * Phases run in this order, whatever the op order: checks, claims, counts, retracts, watches.
 * Returns one reply per Check, each [op number of the first blocked check or '', its record JSON or '', '1' when a
 *          claim was replayed else '', one letter per watch in op order (l live, c changed version, g gone),
 *          created record JSON...]
 *
 * Watches (sessions of the oidc capability) make a Check with a cached session
 * cost no second round trip: the session must still exist with the version the
 * replica cached, and its idle TTL slides in the same call.
 *
 * Claims run after the block checks and before the counters: a blocked
 * subject (of this call) burns no id, and a replay is counted in this same
 * call. All claim keys are checked before any is set, so a replayed claim
 * burns none of the others. The TTL is `expiresAt - now` by Redis's clock,
 * never below the minimum (the verifier's clock skew), so a skewed replica
 * cannot make an entry that expires before the proof does, nor a zero TTL.
 *
 * Time is the server's (TIME), so replicas with skewed clocks share one window.
 * Scripts replicate by effects (Redis ≥ 5 default, 7 only), so TIME is fine before writes.
 */
export const EVALUATE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Op letters: each type takes a fixed number of keys and values.
local SHAPE = {c = {1, 0}, j = {1, 2}, n = {3, 3}, r = {1, 2}, w = {1, 2}}
local NAME = {c = 'check', j = 'claim', n = 'count', r = 'retract', w = 'watch'}

-- One Check: its nonce, its shape, its ops from KEYS[k] and ARGV[a] on (op letters checked by the caller's
-- first pass). Returns its reply.
local function run(nonce, shape, k, a)
  local ops = {check = {}, claim = {}, count = {}, retract = {}, watch = {}}
  for i = 1, #shape do
    local ty = string.sub(shape, i, i)
    local size = SHAPE[ty]
    local list = ops[NAME[ty]]
    list[#list + 1] = {i = i, k = k, a = a}
    k = k + size[1]
    a = a + size[2]
  end
  local out = {'', '', '', ''}

  -- check: the first blocked subject of the call.
  for _, op in ipairs(ops.check) do
    local v = redis.call('GET', KEYS[op.k])
    if v then
      out[1] = tostring(op.i)
      out[2] = v
      break
    end
  end

  -- claim: only when nothing here is blocked; all are looked at before any is set.
  local replayed = false
  if #ops.claim > 0 and out[1] == '' then
    for _, op in ipairs(ops.claim) do
      if redis.call('EXISTS', KEYS[op.k]) == 1 then replayed = true break end
    end
    if replayed then
      out[3] = '1'
    else
      for _, op in ipairs(ops.claim) do
        local ttl = math.max(tonumber(ARGV[op.a]) - now, tonumber(ARGV[op.a + 1]))
        redis.call('SET', KEYS[op.k], '1', 'PX', ttl, 'NX')
      end
    end
  end

  -- count: sliding-window log; crossing the threshold blocks (escalating with remembered offenses) and clears.
  for _, op in ipairs(ops.count) do
    local ck, okey, bk = KEYS[op.k], KEYS[op.k + 1], KEYS[op.k + 2]
    local win, thr, mem, rule, ttls = string.match(ARGV[op.a], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
    local inc, when, tag, sh = string.match(ARGV[op.a + 1], '^(%S+) (%S) (%S+) ([01])$')
    if not ttls or not sh then error('malformed count op values') end
    local head = ARGV[op.a + 2]
    win, thr, mem, inc = tonumber(win), tonumber(thr), tonumber(mem), tonumber(inc)
    if when == '-' then when = '' end
    local shadow = sh == '1'
    -- An already blocked subject is not counted: its block stands, and counting would only grow memory.
    if (when == '' or (when == 'r') == replayed) and redis.call('EXISTS', bk) == 0 then
      redis.call('ZREMRANGEBYSCORE', ck, '-inf', now - win)
      for j = 1, inc do
        redis.call('ZADD', ck, now, nonce .. ':' .. tag .. ':' .. j)
      end
      local c = redis.call('ZCARD', ck)
      if c >= thr and shadow then
        out[#out + 1] = head .. '"createdAt":' .. now .. ',"ttlMs":0,"expiresAt":' .. now ..
          ',"rule":' .. cjson.encode(rule) .. ',"level":0,"shadow":true}'
        redis.call('DEL', ck)
      elseif c >= thr then
        local level = redis.call('INCR', okey)
        redis.call('PEXPIRE', okey, mem)
        local list = {}
        for s in string.gmatch(ttls, '[^,]+') do list[#list + 1] = s end
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

  -- retract: drop the entries an earlier count of this Check (same nonce and member tag) added.
  for _, op in ipairs(ops.retract) do
    local tag, inc = ARGV[op.a], tonumber(ARGV[op.a + 1])
    for j = 1, inc do
      redis.call('ZREM', KEYS[op.k], nonce .. ':' .. tag .. ':' .. j)
    end
  end

  -- watch: oidc sessions, checked and touched whatever the other parts found.
  for _, op in ipairs(ops.watch) do
    local v = redis.call('HGET', KEYS[op.k], 'v')
    if not v then
      out[4] = out[4] .. 'g'
    else
      redis.call('PEXPIRE', KEYS[op.k], ARGV[op.a + 1])
      out[4] = out[4] .. (v == ARGV[op.a] and 'l' or 'c')
    end
  end

  return out
end

-- Where each Check's keys and values start, found first: a Check that fails (an error from Redis inside its
-- ops) then gets its own error reply, and the Checks after it still run from the right place.
local starts = {}
local k, a = 1, 2
for c = 1, tonumber(ARGV[1]) do
  local shape = ARGV[a + 1]
  starts[c] = {k, a}
  a = a + 2
  for i = 1, #shape do
    local size = SHAPE[string.sub(shape, i, i)]
    if not size then return redis.error_reply('unknown FDS op letter ' .. string.sub(shape, i, i)) end
    k = k + size[1]
    a = a + size[2]
  end
end

local replies = {}
for c, at in ipairs(starts) do
  local ok, out = pcall(run, ARGV[at[2]], ARGV[at[2] + 1], at[1], at[2] + 2)
  if ok then replies[c] = out
  else replies[c] = {err = 'FDS Check ' .. c .. ' of the call failed: ' .. (type(out) == 'table' and tostring(out.err) or tostring(out))} end
end
return replies
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
