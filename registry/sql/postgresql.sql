-- The PostgreSQL driver's schema history (sql_pg.c), compiled in by
-- registry/sql/gen-migrations.sh. Each "-- N -> N+1" line starts the
-- migration that brings the schema from version N to N + 1 (table
-- nlb_schema); the driver runs those a database lacks in one transaction
-- with the version bump, under an advisory lock. Never edit one that has
-- shipped: append a new one, and its SQLite twin to sqlite.sql.

-- 0 -> 1
CREATE TABLE nlb_counter (id integer PRIMARY KEY CHECK (id = 1),
  last_seq bigint NOT NULL);
INSERT INTO nlb_counter VALUES (1, 0);
CREATE TABLE services (
  id text COLLATE "C" PRIMARY KEY,
  name text NOT NULL UNIQUE,
  owner text NOT NULL,
  load_balancer text NOT NULL,
  acceptance_required boolean NOT NULL,
  connection_limit bigint NOT NULL,
  created_at bigint NOT NULL);
CREATE INDEX services_page ON services (created_at, id);
CREATE INDEX services_owner ON services (owner, created_at, id);
CREATE TABLE service_principals (
  service_id text NOT NULL REFERENCES services(id) ON DELETE CASCADE,
  principal text NOT NULL,
  PRIMARY KEY (service_id, principal));
CREATE INDEX service_principals_principal
  ON service_principals (principal);
CREATE TABLE endpoints (
  id text COLLATE "C" PRIMARY KEY,
  service_id text NOT NULL REFERENCES services(id) ON DELETE CASCADE,
  consumer text NOT NULL,
  network text NOT NULL,
  address text NOT NULL,
  address_key bytea NOT NULL,
  state text NOT NULL CHECK (state IN ('pendingAcceptance','available',
    'rejected','deleted','expired','failed')),
  reason text NOT NULL DEFAULT '',
  allowed_sources text NOT NULL DEFAULT '',
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL);
CREATE INDEX endpoints_page ON endpoints (created_at, id);
CREATE INDEX endpoints_service ON endpoints (service_id, created_at, id);
CREATE INDEX endpoints_service_state
  ON endpoints (service_id, state, created_at, id);
CREATE INDEX endpoints_consumer ON endpoints (consumer, created_at, id);
CREATE INDEX endpoints_consumer_state
  ON endpoints (consumer, state, created_at, id);
CREATE INDEX endpoints_state ON endpoints (state, created_at, id);
CREATE UNIQUE INDEX endpoints_live_address
  ON endpoints (network, address_key) WHERE state IN ('pendingAcceptance','available');
CREATE TABLE placements (
  endpoint_id text NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
  node text NOT NULL,
  open boolean NOT NULL,
  reason text NOT NULL DEFAULT '',
  updated_at bigint NOT NULL,
  PRIMARY KEY (endpoint_id, node));
CREATE TABLE targets (
  target_group text NOT NULL,
  address text NOT NULL,
  weight bigint NOT NULL,
  created_at bigint NOT NULL,
  PRIMARY KEY (target_group, address));
CREATE TABLE nodes (
  name text PRIMARY KEY,
  version text NOT NULL DEFAULT '',
  started_at bigint NOT NULL,
  last_seen bigint NOT NULL,
  applied_seq bigint NOT NULL DEFAULT 0,
  draining boolean NOT NULL DEFAULT false);
CREATE TABLE network_hints (
  network text PRIMARY KEY,
  next_key bytea NOT NULL);
CREATE TABLE events (
  seq bigint PRIMARY KEY,
  time bigint NOT NULL,
  type text NOT NULL,
  service_id text NOT NULL DEFAULT '',
  endpoint_id text NOT NULL DEFAULT '',
  principal text NOT NULL DEFAULT '',
  owner text NOT NULL DEFAULT '',
  consumer text NOT NULL DEFAULT '',
  state text NOT NULL DEFAULT '',
  reason text NOT NULL DEFAULT '',
  target_group text NOT NULL DEFAULT '',
  target text NOT NULL DEFAULT '',
  node text NOT NULL DEFAULT '');
CREATE INDEX events_time ON events (time);
CREATE INDEX events_owner ON events (owner, seq) WHERE owner <> '';
CREATE INDEX events_consumer ON events (consumer, seq)
  WHERE consumer <> '';
-- 1 -> 2: principals, tokens and networks made through the API; events
-- name them; endpoints in final states are pruned by age.
CREATE TABLE principals (
  name text PRIMARY KEY,
  role text NOT NULL,
  created_at bigint NOT NULL);
CREATE TABLE tokens (
  id text COLLATE "C" PRIMARY KEY,
  principal text NOT NULL REFERENCES principals(name) ON DELETE CASCADE,
  sha256 bytea NOT NULL UNIQUE,
  created_at bigint NOT NULL,
  expires_at bigint NOT NULL DEFAULT 0,
  last_used_at bigint NOT NULL DEFAULT 0);
CREATE INDEX tokens_principal ON tokens (principal, created_at);
CREATE TABLE networks (
  name text PRIMARY KEY,
  range text NOT NULL,
  netns text NOT NULL DEFAULT '',
  principals text NOT NULL DEFAULT '',
  created_at bigint NOT NULL);
ALTER TABLE events ADD COLUMN subject text NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN token_id text NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN networks text NOT NULL DEFAULT '';
CREATE INDEX endpoints_final ON endpoints (updated_at)
  WHERE state IN ('rejected','deleted','expired','failed');
-- 2 -> 3: private DNS names. A service's own host name (lower case,
-- "" = none, unique among services) and each endpoint's opt-in.
ALTER TABLE services ADD COLUMN private_dns_name text NOT NULL
  DEFAULT '';
CREATE UNIQUE INDEX services_private_dns_name
  ON services (private_dns_name) WHERE private_dns_name <> '';
ALTER TABLE endpoints ADD COLUMN private_dns boolean NOT NULL
  DEFAULT false;
-- 3 -> 4: names unique as DNS compares them, ignoring ASCII case
-- (sql_refuse_case_twins runs first); each principal's since_seq, after
-- the events of an earlier principal of its name.
CREATE UNIQUE INDEX services_name_nocase ON services (lower(name));
CREATE UNIQUE INDEX principals_name_nocase ON principals (lower(name));
ALTER TABLE principals ADD COLUMN since_seq bigint NOT NULL DEFAULT 0;
UPDATE principals p SET since_seq = m.seq FROM (SELECT subject,
  max(seq) AS seq FROM events WHERE type = 'principal_create'
  GROUP BY subject) m WHERE m.subject = p.name;
