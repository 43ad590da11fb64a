-- statusAllowed(cur, new): the one rule for outbound status changes, mirroring statusAllowed
-- in src/model/message.ts (and mirrored in sql/outbound-status-by-provider-id.sql). Delivery
-- states only advance (sent < delivered < read < played); `failed` is recorded unless the
-- message was already delivered; pending/sending (the outbox's own states, and replay) only
-- apply before delivery.
local DELIVERY_RANK = { sent = 2, delivered = 3, read = 4, played = 5 }
local function statusAllowed(cur, new)
  if new == cur then return true end
  if new == 'pending' or new == 'sending' then return DELIVERY_RANK[cur] == nil end
  if DELIVERY_RANK[new] then
    -- a late `sent` does not hide a failure; a delivered or read report replaces it
    if DELIVERY_RANK[cur] == nil then return cur ~= 'failed' or new ~= 'sent' end
    return DELIVERY_RANK[new] > DELIVERY_RANK[cur]
  end
  if new == 'failed' then return cur ~= 'delivered' and cur ~= 'read' and cur ~= 'played' end
  return false
end
