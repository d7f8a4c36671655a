-- One ~234-byte event per POST, no Idempotency-Key: the `post_one_event`
-- row of `sealog bench --http`, driven by wrk.
--   wrk -t2 -c64 -d5s -s benches/wrk/post_one.lua http://127.0.0.1:7807/v1/events
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"actor":{"type":"user","id":"alice"},"action":"document.read",'
  .. '"resource":{"type":"document","id":"doc-42"},"outcome":"success","tenant":"acme",'
  .. '"source":{"ip":"10.1.2.3","user_agent":"bench/1.0"},"request_id":"req-000001"}'
