-- Argo CD health check for ringleader.dev/LoadBalancingExporter.
--
-- The operator reports kstatus-style status: status.observedGeneration and conditions of type
-- Ready, Progressing and Degraded, each carrying the observedGeneration it was computed for.
-- Until the operator has observed the current spec (status.observedGeneration equals
-- metadata.generation) nothing it says is about this spec, so the resource is Progressing.
--
-- Uses only Lua's base library: Argo CD runs custom checks from argocd-cm without the
-- standard libraries unless useOpenLibs is set for this kind.

local hs = {}
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

local function reason_message(c)
  local text = ""
  if c.reason ~= nil and c.reason ~= "" then
    text = c.reason
  end
  if c.message ~= nil and c.message ~= "" then
    if text ~= "" then
      text = text .. ": "
    end
    text = text .. c.message
  end
  if text == "" then
    text = c.type .. " is " .. c.status
  end
  return text
end

if obj.status == nil or obj.status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the resource"
  return hs
end

local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation .. " (observed " .. observed .. ")"
  return hs
end

local conditions = {}
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type ~= nil then
      conditions[c.type] = c
    end
  end
end

-- A condition computed for an older generation says nothing about the current spec.
for _, name in ipairs({"Degraded", "Progressing", "Ready"}) do
  local c = conditions[name]
  if c ~= nil and c.observedGeneration ~= nil and generation ~= nil and c.observedGeneration ~= generation then
    hs.status = "Progressing"
    hs.message = "Condition " .. name .. " is from generation " .. c.observedGeneration .. ", waiting for " .. generation
    return hs
  end
end

local degraded = conditions["Degraded"]
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = reason_message(degraded)
  return hs
end

local progressing = conditions["Progressing"]
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = reason_message(progressing)
  return hs
end

local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = reason_message(ready)
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = reason_message(ready)
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
