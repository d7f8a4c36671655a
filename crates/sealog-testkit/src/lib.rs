//! What sealog's tests and benchmarks share, written once:
//!
//! - [`client`]: an HTTP/1.1 client of the server's API;
//! - [`server`]: a server started in the test's process on a free loopback
//!   port, with its tokens and store options;
//! - [`process`]: the `sealog` binary as a test runs it (`sealog serve` as a
//!   child process up to its `listening on` line, `init`, `token create`).
//!
//! Not part of the product: nothing here is published.

pub mod client;
pub mod process;
pub mod server;

/// A multi-threaded runtime of two workers, for a test that drives
/// clients from synchronous code.
pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot start a runtime: {e}"),
    }
}
