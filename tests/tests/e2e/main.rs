//! End-to-end tests: one binary, one module per concern. Tests that touch storage run against
//! both Postgres and SQLite through the `both_backends!` macro.

mod area_sync;
mod auth;
mod bad_input;
mod cluster;
mod convergence;
mod device;
mod field;
mod hardening_http;
mod hardening_sync;
mod interop;
mod limits;
mod memory;
mod metrics;
mod people;
mod personal_data;
mod read_model;
mod storage;
mod sync;
mod validation;

/// Runs `async fn $name(backend: Backend)` as two tests, `$name::postgres` and
/// `$name::sqlite`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(lianxin_tests::Backend::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(lianxin_tests::Backend::Sqlite).await
            }
        }
    )*};
}
