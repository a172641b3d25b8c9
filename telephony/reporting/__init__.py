"""The reporting context: every ticket event in SQL (SQLite embedded by default, PostgreSQL for production), one
schema with numbered migrations, idempotent ingest that catches up after the database was away, the documented
read-only views of the shared intermediate database (中间数据库, docs/reporting.md) and `linkage report`."""
