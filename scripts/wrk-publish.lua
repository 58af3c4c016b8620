-- wrk script: durable single-event publishes to the topics API.
--   KEY=adm_… wrk -t2 -c128 -d10s --latency -s scripts/wrk-publish.lua http://127.0.0.1:8080
-- Each connection publishes to its own topic (bench/<n>) so ids interleave across topics.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = os.getenv("KEY")
  wrk.body = '{"type":"bench","data":{"payload":"' .. string.rep("x", 160) .. '"}}'
  wrk.path = "/api/v1/topics/bench%2F" .. id .. "/events"
end
function response(status, headers, body)
  if status ~= 201 then
    io.stderr:write("unexpected status " .. status .. "\n")
  end
end
