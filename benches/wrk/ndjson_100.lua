-- 100 events per POST as NDJSON (~22 KB): a batch over 16 KiB, parsed,
-- validated and encoded on the server's blocking threads.
--   wrk -t2 -c256 -d5s -s benches/wrk/ndjson_100.lua http://127.0.0.1:7807/v1/events
local lines = {}
for i = 1, 100 do
  lines[i] = string.format('{"actor":{"type":"user","id":"alice"},"action":"document.read",'
    .. '"resource":{"type":"document","id":"doc-42"},"outcome":"success","tenant":"acme",'
    .. '"source":{"ip":"10.1.2.3","user_agent":"bench/1.0"},"request_id":"req-%06d"}', i - 1)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-ndjson"
wrk.body = table.concat(lines, "\n")
