-- An sqlite3 workload for the LD_PRELOAD test: 100k rows inserted in one transaction, an index,
-- aggregates with known answers (see sqlite3.expected: sums of arithmetic series), a join, a sort.
.bail on
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, s TEXT, f REAL);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
INSERT INTO t SELECT x, x % 1000, printf('row-%06d-%s', x, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26)), x / 4.0 FROM c;
COMMIT;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_s ON t(s);
SELECT count(*), sum(k), sum(id), min(s), max(s), sum(f) FROM t;
SELECT k, count(*), sum(id) FROM t WHERE k IN (0, 1, 999) GROUP BY k ORDER BY k;
CREATE TABLE u AS SELECT k, count(*) AS n, group_concat(id) AS ids FROM t GROUP BY k;
SELECT count(*), sum(n), sum(length(ids)) FROM u;
SELECT count(*) FROM t JOIN u USING (k) WHERE t.id % 1000 = 7;
SELECT id FROM t ORDER BY s DESC LIMIT 3;
