-- The built-in categories' hops as DuckDB SQL over the store's Parquet segments: the peer the analyzer
-- is measured against (scripts/bench-report). `{store}` is replaced by the data directory.
-- Variants follow the analyzer's rule closely enough for the reference system's spans: a span's own
-- attribute, else its parent's, else the trace root's.
SET threads = 2;
CREATE TEMP TABLE s AS
SELECT trace_id, span_id, parent_span_id, name, kind,
       start_time_unix_nano::BIGINT AS st, end_time_unix_nano::BIGINT AS en,
       attribute_values[list_position(attribute_keys, 'task.template')] AS template,
       attribute_values[list_position(attribute_keys, 'step.handler')] AS handler,
       attribute_values[list_position(attribute_keys, 'messaging.system')] AS msys,
       attribute_values[list_position(attribute_keys, 'messaging.destination.name')] AS dest
FROM read_parquet('{store}/spans/*/*.parquet');
CREATE TEMP TABLE root AS SELECT trace_id, template FROM s WHERE parent_span_id IS NULL;
CREATE TEMP TABLE kids AS
SELECT c.trace_id, c.parent_span_id AS span_id, sum(c.en - c.st) AS busy
FROM s c WHERE c.parent_span_id IS NOT NULL GROUP BY 1, 2;
CREATE TEMP TABLE samples AS
-- task_initialization
SELECT 'task_initialization' AS category, r.template AS variant, 'request' AS hop, p.en - p.st AS v
  FROM s p JOIN root r USING (trace_id) WHERE p.name = 'POST /v1/tasks' AND p.kind = 2
UNION ALL
SELECT 'task_initialization', r.template, 'create task', c.en - c.st
  FROM s c JOIN s p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id JOIN root r ON r.trace_id = c.trace_id
  WHERE p.name = 'POST /v1/tasks' AND c.name = 'SELECT hoptrace_create_task'
UNION ALL
SELECT 'task_initialization', r.template, 'request self time', p.en - p.st - coalesce(k.busy, 0)
  FROM s p JOIN root r USING (trace_id) LEFT JOIN kids k ON k.trace_id = p.trace_id AND k.span_id = p.span_id
  WHERE p.name = 'POST /v1/tasks' AND p.kind = 2
-- step_enqueueing
UNION ALL
SELECT 'step_enqueueing', r.template, 'result processing', p.en - p.st
  FROM s p JOIN root r USING (trace_id) WHERE p.name = 'process result_queue' AND p.kind = 5
UNION ALL
SELECT 'step_enqueueing', r.template, 'discover and enqueue', e.en - e.st
  FROM s e JOIN s p ON p.trace_id = e.trace_id AND p.span_id = e.parent_span_id JOIN root r ON r.trace_id = e.trace_id
  WHERE e.name = 'enqueue ready steps' AND p.name = 'process result_queue'
UNION ALL
SELECT 'step_enqueueing', r.template, 'send with notify', x.en - x.st
  FROM s x JOIN s e ON e.trace_id = x.trace_id AND e.span_id = x.parent_span_id
           JOIN s p ON p.trace_id = e.trace_id AND p.span_id = e.parent_span_id JOIN root r ON r.trace_id = x.trace_id
  WHERE x.name = 'send step_queue' AND x.kind = 4 AND e.name = 'enqueue ready steps' AND p.name = 'process result_queue'
-- worker_execution
UNION ALL
SELECT 'worker_execution', c.handler, 'queue wait', c.st - p.en
  FROM s c JOIN s p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
  WHERE c.name = 'receive step_queue' AND p.name = 'send step_queue' AND p.kind = 4
UNION ALL
SELECT 'worker_execution', c.handler, 'claim', c.en - c.st FROM s c WHERE c.name = 'receive step_queue'
UNION ALL
SELECT 'worker_execution', x.handler, 'execute', x.en - x.st
  FROM s x JOIN s p ON p.trace_id = x.trace_id AND p.span_id = x.parent_span_id
  WHERE x.name LIKE 'execute %' AND p.name = 'process step_queue'
UNION ALL
SELECT 'worker_execution', p.handler, 'submit', x.en - x.st
  FROM s x JOIN s p ON p.trace_id = x.trace_id AND p.span_id = x.parent_span_id
  WHERE x.name = 'send result_queue' AND x.kind = 4
UNION ALL
SELECT 'worker_execution', p.handler, 'overhead', p.en - p.st - x.en + x.st
  FROM s x JOIN s p ON p.trace_id = x.trace_id AND p.span_id = x.parent_span_id
  WHERE x.name LIKE 'execute %' AND p.name = 'process step_queue' AND p.kind = 5
-- event_propagation
UNION ALL
SELECT 'event_propagation', c.dest, 'publish to reception', c.st - p.st
  FROM s c JOIN s p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
  WHERE c.kind = 5 AND c.msys = 'pg_notify' AND p.kind = 4 AND p.msys = 'pg_notify'
-- e2e_latency
UNION ALL
SELECT 'e2e_latency', r.template, 'end to end', max(c.en) - min(p.st)
  FROM s p JOIN s c ON c.trace_id = p.trace_id AND c.name = 'complete task' JOIN root r ON r.trace_id = p.trace_id
  WHERE p.name = 'POST /v1/tasks' AND p.kind = 2 GROUP BY p.trace_id, r.template
-- handler_overhead
UNION ALL
SELECT 'handler_overhead', p.handler, 'framework', p.en - p.st - coalesce(k.busy, 0)
  FROM s p LEFT JOIN kids k ON k.trace_id = p.trace_id AND k.span_id = p.span_id
  WHERE p.name = 'process step_queue' AND p.kind = 5
UNION ALL
SELECT 'handler_overhead', x.handler, 'handler', x.en - x.st
  FROM s x JOIN s p ON p.trace_id = x.trace_id AND p.span_id = x.parent_span_id
  WHERE x.name LIKE 'execute %' AND p.name = 'process step_queue';
SELECT category, variant, hop, count(*) AS count,
       quantile_disc(v, 0.5) AS p50, quantile_disc(v, 0.95) AS p95, quantile_disc(v, 0.99) AS p99,
       max(v) AS max, round(avg(v)) AS mean
FROM samples GROUP BY ALL ORDER BY ALL;
