//! Connecting, and bringing a database up to date: the PGMQ SQL when absent, our migrations, the queues.

use std::time::Duration;

use anyhow::Context as _;
use hoptrace_instrumentation::Hop;
use opentelemetry::Context;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Postgres;

use crate::queue::{RESULT_QUEUE, STEP_QUEUE};

/// Where the services find PostgreSQL when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // No ping before handing out an idle connection: that is a round trip before every query and
        // transaction, about a tenth of a task's creation. A connection that died is reported by the query
        // that uses it, which the callers already handle (a 500, or a retried claim).
        .test_before_acquire(false)
        .connect(url)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))
}

/// A connection from the pool for work in `parent`'s trace, the wait for it an `acquire connection`
/// span: under load a pool that runs dry is seen there, growing, not hidden in the next query's time.
pub async fn acquire(pool: &PgPool, parent: &Context) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    Hop::connection_wait(parent).run(pool.acquire()).await
}

/// Installs the PGMQ SQL if absent, applies the migrations and creates the queues. Idempotent, and safe
/// when several processes start at once: they take turns under an advisory lock.
pub async fn prepare(pool: &PgPool) -> anyhow::Result<()> {
    let mut lock = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock(hashtext('hoptrace-services'))").execute(&mut *lock).await?;
    let prepared = async {
        pgmq::install::install_sql_from_embedded(pool).await.context("installing the PGMQ SQL")?;
        sqlx::migrate!("./migrations").run(pool).await.context("applying the migrations")?;
        for queue in [STEP_QUEUE.name, RESULT_QUEUE.name] {
            sqlx::query("SELECT pgmq.create($1)").bind(queue).execute(pool).await?;
        }
        anyhow::Ok(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock(hashtext('hoptrace-services'))").execute(&mut *lock).await?;
    prepared
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
