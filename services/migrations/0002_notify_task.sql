-- The notify payload also names the task of the message (`task_uuid`, when the message has one), so a
-- listener's reception span can carry the correlation key even when its trace context is lost.
CREATE OR REPLACE FUNCTION hoptrace_send_with_notify(
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
        (jsonb_strip_nulls(jsonb_build_object('queue', queue_name, 'msg_id', message_id,
                                              'task_uuid', message -> 'task_uuid'))
         || coalesce(notify_context, '{}'))::text
    );
    RETURN message_id;
END
$$;
