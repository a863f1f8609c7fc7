-- Every task, subtask and credential event, written in the transaction of the change it
-- reports (engine::outbox), then published to rotor.events and posted to the webhooks
-- (engine::events and engine::webhooks), their bodies rendered when sent. A row is done
-- when published and every matching webhook has it.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    event_id       uuid NOT NULL DEFAULT gen_random_uuid(),
    routing_key    text NOT NULL,
    task_id        uuid,
    credential_id  uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz,
    hooks_done_at  timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_hooks_pending ON outbox (id) WHERE hooks_done_at IS NULL;
CREATE INDEX outbox_done ON outbox (created_at) WHERE published_at IS NOT NULL AND hooks_done_at IS NOT NULL;

-- Which webhook (by URL) has which event, so a retry after one webhook failed does not
-- post to the others again.
CREATE TABLE outbox_webhook_deliveries (
    outbox_id     bigint NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    url           text NOT NULL,
    delivered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (outbox_id, url)
);
