-- wrk: each request from another address of a documentation network, as a TLS proxy in front
-- of the portal would report the people behind it (PORTAL_PROXY_HOPS=1). One address for every
-- request would be one person hammering, which the per-network limits are there to stop.
counter = 0
request = function()
  counter = counter + 1
  local a = (counter % 250) + 1
  local b = math.floor(counter / 250) % 250 + 1
  wrk.headers["X-Forwarded-For"] = "198.51." .. b .. "." .. a
  return wrk.format(nil, nil)
end
