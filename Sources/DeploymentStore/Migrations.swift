/// One schema change, applied once and recorded in `schema_migrations`. Never edit a released migration:
/// add a new one.
struct Migration: Sendable {
    var version: Int
    var name: String
    var sqlite: [String]
    var postgres: [String]
}

extension Migration {
    /// Every migration, in order.
    static let all: [Migration] = [initialSchema, eventHashChain, canaryInFlight, eventNotify]

    static let initialSchema = Migration(
        version: 1, name: "initial ledger schema",
        sqlite: [
            """
            CREATE TABLE ml_deployments (
                deployment_id TEXT NOT NULL PRIMARY KEY,
                model_name TEXT NOT NULL,
                model_version TEXT NOT NULL,
                environment TEXT NOT NULL,
                bento_tag TEXT,
                endpoint_url TEXT,
                deployment_strategy TEXT NOT NULL,
                status TEXT NOT NULL,
                previous_version TEXT,
                slot TEXT,
                plan TEXT NOT NULL DEFAULT '{}',
                plan_hash TEXT NOT NULL DEFAULT '',
                health_check_passed INTEGER,
                metrics_baseline TEXT,
                requested_by TEXT NOT NULL,
                approved_by TEXT,
                approved_at INTEGER,
                started_at INTEGER,
                finished_at INTEGER,
                error TEXT,
                rollback_of TEXT,
                idempotency_key TEXT,
                owner TEXT,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                last_seq INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX ml_deployments_created ON ml_deployments (created_at, deployment_id)",
            "CREATE INDEX ml_deployments_model_env_created ON ml_deployments (model_name, environment, created_at, deployment_id)",
            "CREATE INDEX ml_deployments_status_created ON ml_deployments (status, created_at, deployment_id)",
            "CREATE UNIQUE INDEX ml_deployments_in_flight_uniq ON ml_deployments (model_name, environment) WHERE status IN (\(Ledger.inFlightSQLListV1))",
            "CREATE UNIQUE INDEX ml_deployments_idempotency_key_uniq ON ml_deployments (idempotency_key) WHERE idempotency_key IS NOT NULL",
            """
            CREATE TABLE ml_deployment_events (
                deployment_id TEXT NOT NULL REFERENCES ml_deployments (deployment_id),
                seq INTEGER NOT NULL,
                at INTEGER NOT NULL,
                from_status TEXT,
                to_status TEXT,
                step TEXT NOT NULL,
                actor TEXT NOT NULL,
                message TEXT NOT NULL,
                data TEXT NOT NULL DEFAULT '{}',
                PRIMARY KEY (deployment_id, seq)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE ml_model_registry (
                model_name TEXT NOT NULL,
                environment TEXT NOT NULL,
                model_version TEXT NOT NULL,
                deployment_id TEXT NOT NULL,
                endpoint_url TEXT NOT NULL,
                slot TEXT NOT NULL,
                bento_tag TEXT,
                previous_version TEXT,
                previous_deployment_id TEXT,
                previous_slot TEXT,
                previous_bento_tag TEXT,
                updated_at INTEGER NOT NULL,
                PRIMARY KEY (model_name, environment)
            )
            """,
            """
            CREATE TABLE ml_live_intervals (
                model_name TEXT NOT NULL,
                environment TEXT NOT NULL,
                live_from INTEGER NOT NULL,
                live_until INTEGER,
                deployment_id TEXT NOT NULL,
                PRIMARY KEY (model_name, environment, live_from)
            )
            """,
            "CREATE INDEX ml_live_intervals_deployment ON ml_live_intervals (deployment_id)",
        ],
        postgres: [
            """
            CREATE TABLE ml_deployments (
                deployment_id text COLLATE "C" NOT NULL PRIMARY KEY,
                model_name text NOT NULL,
                model_version text NOT NULL,
                environment text NOT NULL,
                bento_tag text,
                endpoint_url text,
                deployment_strategy text NOT NULL,
                status text NOT NULL,
                previous_version text,
                slot text,
                plan jsonb NOT NULL DEFAULT '{}',
                plan_hash text NOT NULL DEFAULT '',
                health_check_passed boolean,
                metrics_baseline jsonb,
                requested_by text NOT NULL,
                approved_by text,
                approved_at timestamptz,
                started_at timestamptz,
                finished_at timestamptz,
                error jsonb,
                rollback_of text,
                idempotency_key text,
                owner text,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                last_seq bigint NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX ml_deployments_created ON ml_deployments (created_at, deployment_id)",
            "CREATE INDEX ml_deployments_model_env_created ON ml_deployments (model_name, environment, created_at, deployment_id)",
            "CREATE INDEX ml_deployments_status_created ON ml_deployments (status, created_at, deployment_id)",
            "CREATE UNIQUE INDEX ml_deployments_in_flight_uniq ON ml_deployments (model_name, environment) WHERE status IN (\(Ledger.inFlightSQLListV1))",
            "CREATE UNIQUE INDEX ml_deployments_idempotency_key_uniq ON ml_deployments (idempotency_key) WHERE idempotency_key IS NOT NULL",
            """
            CREATE TABLE ml_deployment_events (
                deployment_id text COLLATE "C" NOT NULL REFERENCES ml_deployments (deployment_id),
                seq bigint NOT NULL,
                at timestamptz NOT NULL,
                from_status text,
                to_status text,
                step text NOT NULL,
                actor text NOT NULL,
                message text NOT NULL,
                data jsonb NOT NULL DEFAULT '{}',
                PRIMARY KEY (deployment_id, seq)
            )
            """,
            """
            CREATE TABLE ml_model_registry (
                model_name text NOT NULL,
                environment text NOT NULL,
                model_version text NOT NULL,
                deployment_id text NOT NULL,
                endpoint_url text NOT NULL,
                slot text NOT NULL,
                bento_tag text,
                previous_version text,
                previous_deployment_id text,
                previous_slot text,
                previous_bento_tag text,
                updated_at timestamptz NOT NULL,
                PRIMARY KEY (model_name, environment)
            )
            """,
            """
            CREATE TABLE ml_live_intervals (
                model_name text NOT NULL,
                environment text NOT NULL,
                live_from timestamptz NOT NULL,
                live_until timestamptz,
                deployment_id text COLLATE "C" NOT NULL,
                PRIMARY KEY (model_name, environment, live_from)
            )
            """,
            "CREATE INDEX ml_live_intervals_deployment ON ml_live_intervals (deployment_id)",
        ]
    )
}

extension Migration {
    /// Every event from here on carries `hash = sha256(prev_hash || canonical event)` (``EventChain``).
    /// Rows written before keep NULL: a deployment's chain starts at its first event after this migration,
    /// and the chain report says which events it does not cover.
    static let eventHashChain = Migration(
        version: 2, name: "hash-chained events",
        sqlite: [
            "ALTER TABLE ml_deployment_events ADD COLUMN prev_hash TEXT",
            "ALTER TABLE ml_deployment_events ADD COLUMN hash TEXT",
        ],
        postgres: [
            "ALTER TABLE ml_deployment_events ADD COLUMN prev_hash text",
            "ALTER TABLE ml_deployment_events ADD COLUMN hash text",
        ]
    )
}

extension Migration {
    /// A canary (`canary`, `awaiting_step`) holds the (model, environment) rollout lock like every other
    /// in-flight status: the partial unique index is rebuilt with them.
    static let canaryInFlight = Migration(
        version: 3, name: "canary statuses hold the rollout lock",
        sqlite: [
            "DROP INDEX ml_deployments_in_flight_uniq",
            "CREATE UNIQUE INDEX ml_deployments_in_flight_uniq ON ml_deployments (model_name, environment) WHERE status IN (\(Ledger.inFlightSQLList))",
        ],
        postgres: [
            "DROP INDEX ml_deployments_in_flight_uniq",
            "CREATE UNIQUE INDEX ml_deployments_in_flight_uniq ON ml_deployments (model_name, environment) WHERE status IN (\(Ledger.inFlightSQLList))",
        ]
    )
}

extension Migration {
    /// Postgres announces every appended event on ``PostgresStore/eventChannel`` (payload
    /// `<deployment_id>:<seq>`), so a follower in another process is woken at commit instead of polling.
    ///
    /// A trigger rather than a `NOTIFY` next to each insert in the Swift code: every path that adds an
    /// event row (insert, transition, appendEvent, bulk load, and an older agent binary sharing the ledger
    /// once any newer agent has migrated it) announces it, and the SQL shared with SQLite stays one text.
    /// Like any `NOTIFY`, it is delivered when the transaction commits and never for one rolled back.
    /// SQLite has no equivalent: its followers poll.
    ///
    /// Cost, measured here (Postgres 15): ~13 us per single-row insert, nothing beside a ledger append's
    /// milliseconds; a 200k-row `INSERT ... SELECT` (the bulk loader's shape) took 1.2 s instead of 0.25 s.
    /// A statement-level trigger over a transition table halved the bulk case (0.58 s) but cost ~22 us per
    /// single insert, the case that matters.
    static let eventNotify = Migration(
        version: 4, name: "notify appended events",
        sqlite: [],
        postgres: [
            """
            CREATE FUNCTION ml_deployment_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('\(PostgresStore.eventChannel)', NEW.deployment_id || ':' || NEW.seq);
                RETURN NULL;
            END
            $$
            """,
            """
            CREATE TRIGGER ml_deployment_events_notify AFTER INSERT ON ml_deployment_events
                FOR EACH ROW EXECUTE FUNCTION ml_deployment_events_notify()
            """,
        ]
    )
}
