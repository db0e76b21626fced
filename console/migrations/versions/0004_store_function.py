"""PostgreSQL: `scan_root_store_report`, which writes one report's rows in one call.

Revision ID: 0004
Revises: 0003

console/store.py calls it with the rows console/store_rows.py works out: one round trip per
report instead of about twenty-five. Its statements are those of the SQLite writer in
console/store.py, in the same order (images by key, host, task, containers by key, scan), so
that concurrent calls lock rows in one order. A replay (its scan_id stored) writes nothing and
returns the stored report's digest; a racing duplicate fails on the scans' UNIQUE index and the
whole call is undone. A later change to these tables must replace the function in a migration.
SQLite has no server-side functions: it keeps the Core writer (it has no round trips either).
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION scan_root_store_report(
    p_rows jsonb,
    p_checks json,
    p_managers json,
    p_notices json,
    p_stats json,
    p_token_id integer,
    p_now timestamptz
) RETURNS TABLE (scan_id integer, stored_digest text)
LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
DECLARE
    v_scan_id uuid := (p_rows ->> 'scan_id')::uuid;
    v_scan jsonb := p_rows -> 'scan';
    v_images jsonb;
    v_containers jsonb;
    v_host integer;
    v_task integer;
    v_image integer;
    v_container integer;
    v_new integer;
BEGIN
    -- A replay: nothing is written, and the stored report's digest tells it from a conflict.
    SELECT s.report_sha256 INTO stored_digest FROM scans AS s WHERE s.scan_id = v_scan_id;
    IF FOUND THEN
        scan_id := NULL;
        RETURN NEXT;
        RETURN;
    END IF;

    WITH written AS (
        INSERT INTO images AS old (key, digest, config_id, name, first_seen, last_seen)
        SELECT i.key, i.digest, i.config_id, i.name, p_now, p_now
        FROM jsonb_to_recordset(p_rows -> 'images')
            AS i(key text, digest text, config_id text, name text)
        ORDER BY i.key
        ON CONFLICT (key) DO UPDATE SET
            last_seen = excluded.last_seen,
            name = coalesce(excluded.name, old.name),
            config_id = coalesce(excluded.config_id, old.config_id)
        RETURNING old.id, old.key
    )
    SELECT coalesce(jsonb_object_agg(w.key, w.id), '{}'::jsonb) INTO v_images FROM written AS w;

    INSERT INTO image_refs (image_id, is_tag, ref, ref_folded)
    SELECT (v_images ->> r.image_key)::integer, r.is_tag, r.ref, r.ref_folded
    FROM jsonb_to_recordset(p_rows -> 'refs')
        AS r(image_key text, is_tag boolean, ref text, ref_folded text)
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING;

    INSERT INTO hosts AS old (name, name_folded, kind, first_seen, last_seen)
    SELECT h.name, h.name_folded, h.kind, p_now, p_now
    FROM jsonb_to_record(p_rows -> 'host') AS h(name text, name_folded text, kind text)
    ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen, kind = excluded.kind
    RETURNING old.id INTO v_host;

    IF jsonb_typeof(p_rows -> 'task') = 'object' THEN
        INSERT INTO tasks AS old (
            arn, task_id, task_id_folded, cluster, family, family_folded, revision,
            launch_type, availability_zone, host_id, first_seen, last_seen
        )
        SELECT t.arn, t.task_id, t.task_id_folded, t.cluster, t.family, t.family_folded,
            t.revision, t.launch_type, t.availability_zone, v_host, p_now, p_now
        FROM jsonb_to_record(p_rows -> 'task') AS t(
            arn text, task_id text, task_id_folded text, cluster text, family text,
            family_folded text, revision text, launch_type text, availability_zone text
        )
        ON CONFLICT (arn) DO UPDATE SET
            task_id = excluded.task_id,
            task_id_folded = excluded.task_id_folded,
            cluster = excluded.cluster,
            family = excluded.family,
            family_folded = excluded.family_folded,
            revision = excluded.revision,
            launch_type = excluded.launch_type,
            availability_zone = excluded.availability_zone,
            host_id = excluded.host_id,
            last_seen = excluded.last_seen
        RETURNING old.id INTO v_task;
    END IF;

    WITH written AS (
        INSERT INTO containers AS old (
            host_id, key, name, task_id, image_id, first_seen, last_seen
        )
        SELECT v_host, c.key, c.name, v_task, (v_images ->> c.image_key)::integer, p_now, p_now
        FROM jsonb_to_recordset(p_rows -> 'containers')
            AS c(key text, name text, image_key text)
        ORDER BY c.key
        ON CONFLICT (host_id, key) DO UPDATE SET
            name = excluded.name,
            task_id = excluded.task_id,
            image_id = excluded.image_id,
            last_seen = excluded.last_seen
        RETURNING old.id, old.key
    )
    SELECT coalesce(jsonb_object_agg(w.key, w.id), '{}'::jsonb)
    INTO v_containers FROM written AS w;

    v_image := (v_images ->> (p_rows ->> 'image_key'))::integer;
    v_container := (v_containers ->> (p_rows ->> 'container_key'))::integer;

    -- No ON CONFLICT: a duplicate racing this one fails here, and the whole call is undone.
    INSERT INTO scans (
        scan_id, received_at, token_id, host_id, task_id, container_id, image_id,
        target_kind, root, scanner_version, implementation, complete, suppressed,
        critical, high, medium, low, problem_count, checks, managers, notices, stats,
        report_sha256
    )
    SELECT v_scan_id, p_now, p_token_id, v_host, v_task, v_container, v_image,
        s.target_kind, s.root, s.scanner_version, s.implementation, s.complete, s.suppressed,
        s.critical, s.high, s.medium, s.low, s.problem_count,
        p_checks, p_managers, p_notices, p_stats, s.report_sha256
    FROM jsonb_to_record(v_scan) AS s(
        target_kind text, root text, scanner_version text, implementation text,
        complete boolean, suppressed integer, critical integer, high integer,
        medium integer, low integer, problem_count integer, report_sha256 text
    )
    RETURNING id INTO v_new;

    INSERT INTO findings (
        scan_id, "check", title, severity, kind, path, path_hex, rule, effect, baselined,
        detail, package_name, package_version, package_manager
    )
    SELECT v_new, f."check", f.title, f.severity, f.kind, f.path, f.path_hex, f.rule,
        f.effect, f.baselined, f.detail, f.package_name, f.package_version, f.package_manager
    FROM jsonb_to_recordset(p_rows -> 'findings') AS f(
        "check" text, title text, severity text, kind text, path text, path_hex text,
        rule text, effect text, baselined boolean, detail text, package_name text,
        package_version text, package_manager text
    );

    INSERT INTO problems (
        scan_id, kind, message, path, path_hex, "check", errno, package_name,
        package_version, package_manager
    )
    SELECT v_new, p.kind, p.message, p.path, p.path_hex, p."check", p.errno, p.package_name,
        p.package_version, p.package_manager
    FROM jsonb_to_recordset(p_rows -> 'problems') AS p(
        kind text, message text, path text, path_hex text, "check" text, errno integer,
        package_name text, package_version text, package_manager text
    );

    IF v_image IS NOT NULL THEN
        UPDATE images AS i SET latest_scan_id = v_new, last_scanned = p_now
        WHERE i.id = v_image AND (i.last_scanned IS NULL OR i.last_scanned <= p_now);
    END IF;
    IF v_container IS NOT NULL THEN
        UPDATE containers AS c SET latest_scan_id = v_new WHERE c.id = v_container;
    END IF;

    scan_id := v_new;
    stored_digest := NULL;
    RETURN NEXT;
END;
$function$
"""

SIGNATURE = "scan_root_store_report(jsonb, json, json, json, json, integer, timestamptz)"


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        # As the driver's own text: SQLAlchemy's text() would take `:name` for a parameter.
        op.get_bind().exec_driver_sql(FUNCTION)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION {SIGNATURE}")
