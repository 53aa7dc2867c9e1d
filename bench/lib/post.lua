-- wrk script for bench/modules.sh: POSTs one body, again and again, and
-- checks every answer.
--
--   wrk -t T -c C -d D -s post.lua URL -- WALKFILE T [lua|light]
--
-- WALKFILE has the format walk.lua reads; only its first path is used, and
-- that path's size is both the request body's length and the expected
-- response body's length (an echo). The body is bytes i % 251. Check "lua"
-- counts answers whose status is outside 200-299 or whose body length
-- differs; "light" leaves only wrk's own counters (see walk.lua). The
-- request is built once in init() (wrk.method, wrk.path, wrk.body) and
-- there is no request() function, so wrk sends the same prepared bytes
-- every time without calling into Lua (a 1 MiB string per request would
-- otherwise cost the client more than the server).
-- done() prints the same WALK line as walk.lua, which
-- bench/lib/measure.py parses.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

local want_len = -1
non2xx = 0
badlen = 0
first_bad = ""

function init(args)
   local file = args[1]
   local check = args[3] or "lua"
   assert(check == "lua" or check == "light", "post.lua: check must be lua or light")
   if check == "light" then
      response = nil
   end
   assert(file, "post.lua: missing WALKFILE argument")
   local f = assert(io.open(file, "r"))
   local n, m = f:read("*n", "*n")
   assert(n and m and n > 0, "post.lua: bad header in " .. file)
   f:read("*l")
   local line = f:read("*l")
   f:close()
   local path, size = line:match("^(%S+) (%d+)$")
   assert(path, "post.lua: bad path line in " .. file)
   want_len = tonumber(size)
   local period = {}
   for i = 0, 250 do period[#period + 1] = string.char(i) end
   period = table.concat(period)
   local whole = math.floor(want_len / 251)
   local body = string.rep(period, whole) .. period:sub(1, want_len - whole * 251)
   wrk.method = "POST"
   wrk.path = path
   wrk.headers["Content-Type"] = "application/octet-stream"
   wrk.body = body
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if first_bad == "" then first_bad = "status:" .. status end
   elseif #body ~= want_len then
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
