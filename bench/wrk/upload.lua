-- POST the multipart body in $BODY_FILE (its boundary in $BOUNDARY) with $KEY, again and again.
dofile(os.getenv("WRK_SCRIPTS") .. "/report.lua")
local file = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = file:read("*a")
file:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. os.getenv("BOUNDARY")
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")

done = function(summary, latency, requests) report(summary, latency) end
