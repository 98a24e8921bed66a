-- The reference workflow system: tasks, their steps with dependencies, and every state transition.

CREATE TABLE tasks (
    task_uuid     uuid PRIMARY KEY,
    template      text        NOT NULL,
    context       jsonb       NOT NULL,
    status        text        NOT NULL CHECK (status IN ('pending', 'in_progress', 'complete', 'error')),
    run_id        text,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at  timestamptz
);

CREATE TABLE workflow_steps (
    task_uuid     uuid   NOT NULL REFERENCES tasks ON DELETE CASCADE,
    step_name     text   NOT NULL,
    handler       text   NOT NULL,
    depends_on    text[] NOT NULL DEFAULT '{}',
    status        text   NOT NULL CHECK (status IN ('pending', 'enqueued', 'complete', 'error')),
    attempts      integer NOT NULL DEFAULT 0,
    result        jsonb,
    completed_at  timestamptz,
    PRIMARY KEY (task_uuid, step_name)
);

CREATE TABLE step_transitions (
    id            bigserial   PRIMARY KEY,
    task_uuid     uuid        NOT NULL REFERENCES tasks ON DELETE CASCADE,
    step_name     text,                 -- NULL for a transition of the task itself
    from_status   text,
    to_status     text        NOT NULL,
    at            timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX step_transitions_task ON step_transitions (task_uuid);

-- Sends a message with headers on a PGMQ queue and announces it on a pg_notify channel, in one call.
-- The payload carries the message id and the publisher's trace context (traceparent, tracestate, baggage),
-- so the listener's reception joins the trace. It is delivered when the calling transaction commits.
CREATE FUNCTION hoptrace_send_with_notify(
    queue_name     text,
    message        jsonb,
    headers        jsonb,
    channel        text,
    notify_context jsonb
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    message_id bigint;
BEGIN
    SELECT pgmq.send(queue_name, message, headers) INTO message_id;
    PERFORM pg_notify(
        channel,
        (jsonb_build_object('queue', queue_name, 'msg_id', message_id) || coalesce(notify_context, '{}'))::text
    );
    RETURN message_id;
END
$$;
