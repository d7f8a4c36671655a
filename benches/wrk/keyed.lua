-- One event per POST, each with a fresh random Idempotency-Key, as the
-- official client sends them: the batch is acknowledged once the key's
-- journal line is synced too.
--   wrk -t2 -c256 -d5s -s benches/wrk/keyed.lua http://127.0.0.1:7807/v1/events
-- `thread` is a global set in each thread's own Lua state by `setup`
-- (a `local` there would stay 0 in every thread); with the thread in the
-- key, no two threads send the same key, so no POST is a replay
-- (`sealog_idempotent_replays_total` stays 0).
local threads = 0
setup = function(t)
  t:set("thread", threads)
  threads = threads + 1
end
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"actor":{"type":"user","id":"alice"},"action":"document.read",'
  .. '"resource":{"type":"document","id":"doc-42"},"outcome":"success","tenant":"acme",'
  .. '"source":{"ip":"10.1.2.3","user_agent":"bench/1.0"},"request_id":"req-000001"}'
request = function()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = string.format("k-%d-%d-%d", thread, counter, math.random(1000000000))
  return wrk.format(nil)
end
