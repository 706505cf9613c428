-- Argo CD health check for DeliveryPipeline (pipelines.delivery-operator.dev/v1alpha1).
-- argocd-cm: resource.customizations.health.pipelines.delivery-operator.dev_DeliveryPipeline
-- Argo CD runs scripts from argocd-cm with only Lua's base, table and package libraries
-- (no string.*), so this uses none of the others. Tested by tests/argocd/test_health.py.
--
-- The operator writes one condition per group of AWS resources, plus Ready (every group is
-- True) and Synced (the last reconcile finished without error; False only for errors, or
-- with reason Paused). A group that is still converging (DependencyNotReady,
-- WaitingForIamPropagation, RolloutInProgress, KeyNotUsable, Deleting, ...) is False or
-- Unknown while Synced stays True.
local hs = {}

local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local generation = obj.metadata and obj.metadata.generation
local annotations = obj.metadata and obj.metadata.annotations or {}
local status = obj.status or {}
local conditions = status.conditions or {}
local ready = condition(conditions, "Ready")
local synced = condition(conditions, "Synced")

-- Suspended: paused by annotation; the operator makes no AWS calls until it is removed.
if annotations["delivery-operator.dev/paused"] == "true"
    or (synced ~= nil and synced.reason == "Paused") then
  hs.status = "Suspended"
  if synced ~= nil and synced.reason == "Paused" and synced.message ~= "" then
    hs.message = synced.message
  else
    hs.message = "paused: annotation delivery-operator.dev/paused is \"true\""
  end
  return hs
end

-- Progressing: the operator has not yet computed a status for this generation.
if obj.status == nil or status.observedGeneration == nil or ready == nil or synced == nil
    or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

-- Degraded: the last reconcile failed. The message is the failing group's condition (the
-- first other condition that is False with Synced's reason), else Synced's own.
if synced.status == "False" then
  hs.status = "Degraded"
  hs.message = synced.message
  if hs.message == nil or hs.message == "" then
    hs.message = synced.reason
  end
  for _, c in ipairs(conditions) do
    if c.type ~= "Ready" and c.type ~= "Synced" and c.status == "False"
        and c.reason == synced.reason then
      hs.message = c.message
      break
    end
  end
  return hs
end

-- Degraded: an ECS deployment the circuit breaker stopped (not an error to the operator,
-- which keeps Synced True and looks again, but the release did not roll out).
for _, c in ipairs(conditions) do
  if c.status == "False" and c.reason == "RolloutFailed" then
    hs.status = "Degraded"
    hs.message = c.message
    return hs
  end
end

-- Healthy: Ready is True for the current generation.
local readyGeneration = ready.observedGeneration or status.observedGeneration
if ready.status == "True" and (generation == nil or readyGeneration == generation) then
  hs.status = "Healthy"
  hs.message = "all AWS resources are in the declared state"
  return hs
end

-- Progressing: some group is still converging (or Ready was computed for an older
-- generation). Ready's message lists them, e.g. "not ready: ServiceReady (RolloutInProgress)".
hs.status = "Progressing"
if ready.status ~= "True" and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
else
  hs.message = "waiting for the operator to reconcile generation " .. tostring(generation)
end
return hs
