-- GET /v1/jobs/{id} for ids picked at random from $IDS_FILE (one a line), with $KEY.
dofile(os.getenv("WRK_SCRIPTS") .. "/report.lua")
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")

request = function()
  return wrk.format("GET", "/v1/jobs/" .. ids[math.random(#ids)])
end

done = function(summary, latency, requests) report(summary, latency) end
