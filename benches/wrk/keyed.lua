-- One event per POST, each with a fresh random Idempotency-Key, as the
-- official client sends them: the batch is acknowledged once the key's
-- journal line is synced too.
--   wrk -t2 -c256 -d5s -s benches/wrk/keyed.lua http://127.0.0.1:7807/v1/events
local counter = 0
local id = 0
setup = function(thread)
  thread:set("id", id)
  id = id + 1
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"actor":{"type":"user","id":"alice"},"action":"document.read",'
  .. '"resource":{"type":"document","id":"doc-42"},"outcome":"success","tenant":"acme",'
  .. '"source":{"ip":"10.1.2.3","user_agent":"bench/1.0"},"request_id":"req-000001"}'
request = function()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = string.format("k-%d-%d-%d", id, counter, math.random(1000000000))
  return wrk.format(nil)
end
