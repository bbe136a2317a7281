-- The SQLite driver's schema history (sql_sqlite.c), compiled in by
-- registry/sql/gen-migrations.sh. Each "-- N -> N+1" line starts the
-- migration that brings the schema from version N to N + 1 (PRAGMA
-- user_version); the driver runs those a database lacks in one
-- transaction with the version bump. Never edit one that has shipped:
-- append a new one, and its PostgreSQL twin to postgresql.sql.

-- 0 -> 1
CREATE TABLE services (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  owner TEXT NOT NULL,
  load_balancer TEXT NOT NULL,
  acceptance_required INTEGER NOT NULL,
  connection_limit INTEGER NOT NULL,
  created_at INTEGER NOT NULL);
CREATE INDEX services_owner ON services(owner, created_at);
CREATE TABLE service_principals (
  service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
  principal TEXT NOT NULL,
  PRIMARY KEY (service_id, principal)) WITHOUT ROWID;
CREATE INDEX service_principals_principal
  ON service_principals(principal);
CREATE TABLE endpoints (
  id TEXT PRIMARY KEY,
  service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
  consumer TEXT NOT NULL,
  network TEXT NOT NULL,
  address TEXT NOT NULL,
  address_key BLOB NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pendingAcceptance','available',
    'rejected','deleted','expired','failed')),
  reason TEXT NOT NULL DEFAULT '',
  allowed_sources TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL);
CREATE INDEX endpoints_service ON endpoints(service_id, created_at);
CREATE INDEX endpoints_consumer ON endpoints(consumer, created_at);
CREATE INDEX endpoints_state ON endpoints(state, created_at);
-- One live endpoint per address per network, whatever the code does.
CREATE UNIQUE INDEX endpoints_live_address
  ON endpoints(network, address_key) WHERE state IN ('pendingAcceptance','available');
CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  time INTEGER NOT NULL,
  type TEXT NOT NULL,
  service_id TEXT NOT NULL,
  endpoint_id TEXT NOT NULL,
  principal TEXT NOT NULL,
  owner TEXT NOT NULL,
  consumer TEXT NOT NULL,
  state TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '');
-- 1 -> 2: events are pruned by age (registry.event_retention).
CREATE INDEX events_time ON events(time);
-- 2 -> 3: the change feed carries targets and nodes; placements, run-time
-- targets, nodes and address hints; lists page by (created_at, id) and
-- filter by state through an index; streams read a principal's events
-- through an index.
ALTER TABLE events ADD COLUMN target_group TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN target TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN node TEXT NOT NULL DEFAULT '';
CREATE INDEX events_owner ON events(owner, seq) WHERE owner != '';
CREATE INDEX events_consumer ON events(consumer, seq)
  WHERE consumer != '';
CREATE TABLE placements (
  endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
  node TEXT NOT NULL,
  open INTEGER NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (endpoint_id, node)) WITHOUT ROWID;
CREATE TABLE targets (
  target_group TEXT NOT NULL,
  address TEXT NOT NULL,
  weight INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (target_group, address)) WITHOUT ROWID;
CREATE TABLE nodes (
  name TEXT PRIMARY KEY,
  version TEXT NOT NULL DEFAULT '',
  started_at INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  applied_seq INTEGER NOT NULL DEFAULT 0,
  draining INTEGER NOT NULL DEFAULT 0);
CREATE TABLE network_hints (
  network TEXT PRIMARY KEY,
  next_key BLOB NOT NULL);
DROP INDEX endpoints_service;
DROP INDEX endpoints_consumer;
DROP INDEX endpoints_state;
DROP INDEX services_owner;
CREATE INDEX services_page ON services(created_at, id);
CREATE INDEX services_owner ON services(owner, created_at, id);
CREATE INDEX endpoints_page ON endpoints(created_at, id);
CREATE INDEX endpoints_service ON endpoints(service_id, created_at, id);
CREATE INDEX endpoints_service_state
  ON endpoints(service_id, state, created_at, id);
CREATE INDEX endpoints_consumer ON endpoints(consumer, created_at, id);
CREATE INDEX endpoints_consumer_state
  ON endpoints(consumer, state, created_at, id);
CREATE INDEX endpoints_state ON endpoints(state, created_at, id);
-- 3 -> 4: principals, tokens and networks made through the API; events
-- name them; endpoints in final states are pruned by age.
CREATE TABLE principals (
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  created_at INTEGER NOT NULL);
CREATE TABLE tokens (
  id TEXT PRIMARY KEY,
  principal TEXT NOT NULL REFERENCES principals(name) ON DELETE CASCADE,
  sha256 BLOB NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL DEFAULT 0,
  last_used_at INTEGER NOT NULL DEFAULT 0);
CREATE INDEX tokens_principal ON tokens(principal, created_at);
CREATE TABLE networks (
  name TEXT PRIMARY KEY,
  range TEXT NOT NULL,
  netns TEXT NOT NULL DEFAULT '',
  principals TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL);
ALTER TABLE events ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN token_id TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN networks TEXT NOT NULL DEFAULT '';
CREATE INDEX endpoints_final ON endpoints(updated_at)
  WHERE state IN ('rejected','deleted','expired','failed');
-- 4 -> 5: private DNS names. A service's own host name (lower case,
-- "" = none, unique among services) and each endpoint's opt-in.
ALTER TABLE services ADD COLUMN private_dns_name TEXT NOT NULL
  DEFAULT '';
CREATE UNIQUE INDEX services_private_dns_name
  ON services(private_dns_name) WHERE private_dns_name != '';
ALTER TABLE endpoints ADD COLUMN private_dns INTEGER NOT NULL
  DEFAULT 0;
-- 5 -> 6: names unique as DNS compares them, ignoring ASCII case
-- (sql_refuse_case_twins runs first); each principal's since_seq, after
-- the events of an earlier principal of its name.
CREATE UNIQUE INDEX services_name_nocase ON services(lower(name));
CREATE UNIQUE INDEX principals_name_nocase ON principals(lower(name));
ALTER TABLE principals ADD COLUMN since_seq INTEGER NOT NULL DEFAULT 0;
-- One pass over the events, not one per principal.
CREATE INDEX events_made ON events(subject, seq)
  WHERE type = 'principal_create';
UPDATE principals SET since_seq = coalesce((SELECT max(seq) FROM events
  WHERE type = 'principal_create' AND subject = principals.name), 0);
DROP INDEX events_made;
