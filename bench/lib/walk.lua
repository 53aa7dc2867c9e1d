-- wrk script for bench/static.sh: walks a request list and checks every
-- response.
--
--   wrk -t T -c C -d D -s walk.lua URL -- WALKFILE T [lua|light] [close | PART PARTS]
--
-- "close" asks for `Connection: close` on every request: each request is
-- then a new connection (and, over HTTPS, a new handshake). PART PARTS
-- (numbers) start this wrk at its share of the walk when several wrk
-- processes split one walk (bench/cluster.sh).
--
-- WALKFILE (written by bench/lib/corpus.py): a first line "N M", N lines
-- "path size", then M lines with the 1-based index of the path to request
-- next. Thread i (0-based) of T starts its walk at entry floor(i*M/T)+1 and
-- wraps around, so the threads never request in lock-step; all connections of
-- a thread share that thread's cursor. With PART and PARTS (several wrk
-- processes walking the same file, bench/cluster.sh: process PART, 0-based,
-- of PARTS), thread i starts at floor((PART*T+i)*M/(T*PARTS))+1 instead.
--
-- Check "lua" (the default): every response is checked here: a status outside
-- 200-299 or a body whose length is not the size of one of the walk's files
-- counts as bad. wrk hands response() the whole body as a Lua string, which
-- costs the client a copy or two of every body (a few ms per 4 MiB response).
-- Check "light" drops response() so wrk never buffers bodies: then only wrk's
-- own counter of statuses above 399 remains, and measure.py adds a bound on
-- bytes read per response. done() prints one
-- machine-readable line that bench/lib/measure.py parses:
--   WALK requests=.. bytes=.. duration_us=.. non2xx=.. badlen=.. connect=..
--        read=.. write=.. timeout=.. status_gt399=.. first_bad=..
-- (wrk's own error counters are included: its status counter only sees
-- statuses above 399, which is why this script counts non-2xx itself.)

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("thread_id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state).
local reqs = {}      -- path index -> formatted request
local seq = {}       -- walk: path indexes
local seq_len = 0
local cursor = 1
local valid_len = {} -- body length -> true
non2xx = 0
badlen = 0
first_bad = ""

function init(args)
   local file = args[1]
   local nthreads = tonumber(args[2]) or 1
   local check = args[3] or "lua"
   local close = args[4] == "close"
   assert(check == "lua" or check == "light", "walk.lua: check must be lua or light")
   if check == "light" then
      -- wrk decides after init() whether to parse headers and bodies for Lua.
      response = nil
   end
   assert(file, "walk.lua: missing WALKFILE argument")
   local f = assert(io.open(file, "r"))
   local n, m = f:read("*n", "*n")
   assert(n and m and n > 0 and m > 0, "walk.lua: bad header in " .. file)
   f:read("*l")
   for i = 1, n do
      local line = f:read("*l")
      local path, size = line:match("^(%S+) (%d+)$")
      assert(path, "walk.lua: bad path line " .. i .. " in " .. file)
      if close then
         reqs[i] = wrk.format("GET", path, { ["Connection"] = "close" })
      else
         reqs[i] = wrk.format("GET", path)
      end
      valid_len[tonumber(size)] = true
   end
   for i = 1, m do
      local k = f:read("*n")
      assert(k and k >= 1 and k <= n, "walk.lua: bad index at " .. i)
      seq[i] = k
   end
   f:close()
   seq_len = m
   local part = tonumber(args[4]) or 0
   local parts = tonumber(args[5]) or 1
   cursor = math.floor((part * nthreads + (thread_id or 0)) * m / (nthreads * parts)) % m + 1
end

function request()
   local r = reqs[seq[cursor]]
   cursor = cursor + 1
   if cursor > seq_len then cursor = 1 end
   return r
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if first_bad == "" then first_bad = "status:" .. status end
   elseif not valid_len[#body] then
      badlen = badlen + 1
      if first_bad == "" then first_bad = "bodylen:" .. #body end
   end
end

function done(summary, latency, requests)
   local bad, blen, first = 0, 0, ""
   for _, t in ipairs(threads) do
      bad = bad + (t:get("non2xx") or 0)
      blen = blen + (t:get("badlen") or 0)
      local fb = t:get("first_bad") or ""
      if first == "" and fb ~= "" then first = fb end
   end
   if first == "" then first = "-" end
   local e = summary.errors
   io.write(string.format(
      "WALK requests=%d bytes=%d duration_us=%d non2xx=%d badlen=%d " ..
      "connect=%d read=%d write=%d timeout=%d status_gt399=%d " ..
      "p50_us=%d p99_us=%d first_bad=%s\n",
      summary.requests, summary.bytes, summary.duration, bad, blen,
      e.connect, e.read, e.write, e.timeout, e.status,
      latency:percentile(50), latency:percentile(99), first))
end
