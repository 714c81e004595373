"""`conveyor_enqueue(tenant, kind, input, options)`: a job created inside the caller's own
transaction, so it exists exactly when the app's own writes do (the outbox problem).

The row is the one `service.ledger.create_jobs` writes for the API: queue and tries from
the kind as its workers published it (`kinds`, 0008) unless `options` say otherwise,
priority low/normal/high as `service.queue.PRIORITIES`. `pg_notify` tells the workers'
listeners (pipelines/maintenance/listener.py) the job's id; PostgreSQL delivers it only
when the transaction commits, so a rolled-back job is never seen by anyone. The input is
not checked against the kind's schema here: the worker that runs the job does that.

SECURITY DEFINER, with its search_path pinned, so an app connecting as another role
needs only `GRANT EXECUTE` on the function, not rights on the ledger's tables.

Revision ID: 0009_enqueue_function
Revises: 0008_kinds
Create Date: 2026-12-07
"""

from alembic import op

revision = "0009_enqueue_function"
down_revision = "0008_kinds"
branch_labels = None
depends_on = None

SIGNATURE = "conveyor_enqueue(text, text, jsonb, jsonb)"

FUNCTION = """
CREATE FUNCTION conveyor_enqueue(tenant text, kind text, input jsonb DEFAULT '{}', options jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
AS $function$
DECLARE
    allowed constant text[] := ARRAY['priority', 'run_at', 'max_tries', 'timeout', 'callback_url',
                                     'metadata', 'concurrency_key'];
    opts jsonb := coalesce(conveyor_enqueue.options, '{}');
    unknown text;
    tenant_id uuid;
    spec record;
    priority smallint := 1;
    run_at timestamptz;
    max_tries integer;
    timeout double precision;
    callback_url text;
    metadata jsonb := '{}';
    concurrency_key text;
    job_id uuid := gen_random_uuid();
BEGIN
    SELECT t.id INTO tenant_id FROM tenants t WHERE t.name = conveyor_enqueue.tenant;
    IF tenant_id IS NULL THEN
        RAISE EXCEPTION 'conveyor_enqueue: unknown tenant %', quote_nullable(conveyor_enqueue.tenant)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT k.name, k.tries, k.queue, k.endpoint INTO spec FROM kinds k WHERE k.name = conveyor_enqueue.kind;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conveyor_enqueue: unknown kind %; the known kinds are: %',
            quote_nullable(conveyor_enqueue.kind),
            coalesce((SELECT string_agg(k.name, ', ' ORDER BY k.name) FROM kinds k WHERE k.endpoint IS NULL), 'none')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'a kind is known once a worker running it has started';
    END IF;
    IF spec.endpoint IS NOT NULL THEN
        RAISE EXCEPTION 'conveyor_enqueue: kind % cannot be enqueued here; its jobs are created by %',
            quote_literal(spec.name), spec.endpoint
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF conveyor_enqueue.input IS NULL OR jsonb_typeof(conveyor_enqueue.input) <> 'object' THEN
        RAISE EXCEPTION 'conveyor_enqueue: input must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(opts) <> 'object' THEN
        RAISE EXCEPTION 'conveyor_enqueue: options must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT string_agg(key, ', ' ORDER BY key) INTO unknown FROM jsonb_object_keys(opts) AS key
    WHERE key <> ALL (allowed);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'conveyor_enqueue: unknown option(s) %; the options are %',
            unknown, array_to_string(allowed, ', ')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF opts ? 'priority' THEN
        priority := CASE opts->>'priority' WHEN 'low' THEN 0 WHEN 'normal' THEN 1 WHEN 'high' THEN 2 END;
        IF priority IS NULL OR jsonb_typeof(opts->'priority') <> 'string' THEN
            RAISE EXCEPTION 'conveyor_enqueue: options.priority must be "low", "normal" or "high", not %',
                opts->'priority'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;

    IF opts ? 'run_at' THEN
        IF jsonb_typeof(opts->'run_at') <> 'string'
           OR opts->>'run_at' !~ '^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?(Z|z|[+-]\\d{2}(:?\\d{2})?)$' THEN
            RAISE EXCEPTION 'conveyor_enqueue: options.run_at must be an ISO 8601 date and time with an offset (2026-05-03T12:00:00+02:00), not %',
                opts->'run_at'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        BEGIN
            run_at := (opts->>'run_at')::timestamptz;
        EXCEPTION WHEN data_exception THEN
            RAISE EXCEPTION 'conveyor_enqueue: options.run_at is not a valid moment: %', opts->'run_at'
                USING ERRCODE = 'invalid_parameter_value';
        END;
        IF run_at <= clock_timestamp() THEN
            run_at := NULL;  -- due now, as any job without a run_at
        END IF;
    END IF;

    max_tries := spec.tries;
    IF opts ? 'max_tries' THEN
        IF jsonb_typeof(opts->'max_tries') <> 'number' OR (opts->>'max_tries')::numeric NOT BETWEEN 1 AND 1000
           OR (opts->>'max_tries')::numeric <> trunc((opts->>'max_tries')::numeric) THEN
            RAISE EXCEPTION 'conveyor_enqueue: options.max_tries must be a whole number from 1 to 1000, not %',
                opts->'max_tries'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        max_tries := (opts->>'max_tries')::integer;
    END IF;

    IF opts ? 'timeout' THEN
        IF jsonb_typeof(opts->'timeout') <> 'number' OR (opts->>'timeout')::numeric <= 0 THEN
            RAISE EXCEPTION 'conveyor_enqueue: options.timeout must be a number of seconds above 0, not %',
                opts->'timeout'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        timeout := (opts->>'timeout')::double precision;
    END IF;

    IF opts ? 'callback_url' AND opts->'callback_url' <> 'null' THEN
        IF jsonb_typeof(opts->'callback_url') <> 'string' OR length(opts->>'callback_url') > 2048
           OR opts->>'callback_url' !~* '^https?://[^/?#\\s]+' THEN
            RAISE EXCEPTION 'conveyor_enqueue: options.callback_url must be an absolute http:// or https:// URL of at most 2048 characters'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        callback_url := opts->>'callback_url';
    END IF;

    IF opts ? 'metadata' THEN
        IF jsonb_typeof(opts->'metadata') <> 'object' THEN
            RAISE EXCEPTION 'conveyor_enqueue: options.metadata must be a JSON object'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF octet_length((opts->'metadata')::text) > 16384 THEN
            RAISE EXCEPTION 'conveyor_enqueue: options.metadata is larger than 16384 bytes'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        metadata := opts->'metadata';
    END IF;

    IF opts ? 'concurrency_key' AND opts->'concurrency_key' <> 'null' THEN
        IF jsonb_typeof(opts->'concurrency_key') <> 'string' OR opts->>'concurrency_key' = '' THEN
            RAISE EXCEPTION 'conveyor_enqueue: options.concurrency_key must be a non-empty string'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        concurrency_key := opts->>'concurrency_key';
    END IF;

    INSERT INTO jobs (id, tenant_id, kind, queue, priority, max_tries, payload, metadata,
                      callback_url, run_at, timeout, concurrency_key)
    VALUES (job_id, tenant_id, spec.name, spec.queue, priority, max_tries, conveyor_enqueue.input, metadata,
            callback_url, run_at, timeout, concurrency_key);
    PERFORM pg_notify('conveyor_jobs', job_id::text);
    RETURN job_id;
END
$function$
"""


def upgrade() -> None:
    op.execute(FUNCTION)
    # Pinned to the schema the ledger lives in, temporary tables last (SECURITY DEFINER).
    op.execute(
        "DO $$ BEGIN EXECUTE format("
        f"'ALTER FUNCTION {SIGNATURE} SET search_path = %I, pg_temp', current_schema()); END $$"
    )
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
