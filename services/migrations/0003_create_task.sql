-- Creating a task in one call: the task and its transitions, its steps, and the steps that have no
-- dependencies marked enqueued and sent with notify. The API pays one round trip for this instead of
-- one per statement; on a busy machine every round trip is a chance to lose the CPU.
--
-- `messages` are the first steps' messages (built by the caller, who also opened their send spans:
-- `headers` and `notify_contexts` carry those spans' contexts, one per message, in the same order).
-- Returns the message ids in that order.
CREATE FUNCTION hoptrace_create_task(
    task_uuid       uuid,
    template        text,
    context         jsonb,
    run_id          text,
    step_names      text[],
    handlers        text[],
    depends_on      jsonb[],   -- one JSON array of step names per step (text[][] cannot be ragged)
    queue_name      text,
    channel         text,
    messages        jsonb[],
    headers         jsonb[],
    notify_contexts jsonb[]
) RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    first_steps text[] := ARRAY(SELECT m ->> 'step_name' FROM unnest(messages) AS m);
    message_ids bigint[] := '{}';
BEGIN
    INSERT INTO tasks (task_uuid, template, context, status, run_id)
    VALUES (task_uuid, template, context, 'in_progress', run_id);
    INSERT INTO step_transitions (task_uuid, from_status, to_status)
    VALUES (task_uuid, NULL, 'pending'), (task_uuid, 'pending', 'in_progress');
    INSERT INTO workflow_steps (task_uuid, step_name, handler, depends_on, status)
    SELECT task_uuid, s.name, s.handler, ARRAY(SELECT jsonb_array_elements_text(s.deps)),
           CASE WHEN s.name = ANY (first_steps) THEN 'enqueued' ELSE 'pending' END
    FROM unnest(step_names, handlers, depends_on) AS s(name, handler, deps);
    INSERT INTO step_transitions (task_uuid, step_name, from_status, to_status)
    SELECT task_uuid, s, 'pending', 'enqueued' FROM unnest(first_steps) AS s;
    FOR i IN 1 .. coalesce(array_length(messages, 1), 0) LOOP
        message_ids := message_ids
            || hoptrace_send_with_notify(queue_name, messages[i], headers[i], channel, notify_contexts[i]);
    END LOOP;
    RETURN message_ids;
END
$$;
