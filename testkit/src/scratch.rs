//! A PostgreSQL database of its own, for a test or a benchmark: created with a unique name on the server of
//! `DATABASE_URL` (else the local server), and dropped, with everything in it, when the value is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{Connection, PgConnection};

pub struct ScratchDb {
    pub url: String,
    admin_url: String,
    name: String,
}

impl ScratchDb {
    /// Panics when PostgreSQL is unreachable: the callers are tests that need it.
    pub async fn create() -> ScratchDb {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("hoptrace_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = PgConnection::connect(&admin_url).await.expect("PostgreSQL is reachable at DATABASE_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
        let (base, _) = admin_url.rsplit_once('/').expect("DATABASE_URL names a database");
        ScratchDb { url: format!("{base}/{name}"), admin_url, name }
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside a runtime or outside any, so the database goes on a runtime of its own.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await;
                }
            })
        })
        .join()
        .unwrap();
    }
}
